"""Prediction on live sources (a camera, an rtsp:// or http:// stream): results while it runs,
an annotated window where a display exists, and a clean stop on Ctrl-C.

    WindowLines(file)      each window as one JSON line as soon as it is predicted (flushed)
    LiveDisplay(classes)   each processed frame with its faces' boxes and their tracks' latest
                           labels, in an OpenCV window (`cv2.imshow`); where OpenCV has no GUI
                           (opencv-python-headless) or there is no display, it says so once and
                           shows nothing
    stop_on_signals()      the first Ctrl-C (SIGINT) or SIGTERM sets an Event that stops
                           `predict_video` after the current frame: the tracks so far are
                           finished and written; a second one interrupts at once
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from typing import Iterator, Sequence, TextIO

import cv2
import numpy as np
import pandas as pd

from keras_emotion.inference.predictor import PredictionObserver
from keras_emotion.inference.results import BOX_COLUMNS, annotate_frame

WINDOW_TITLE = "keras_emotion"


class WindowLines(PredictionObserver):
    """Writes every window (`PredictionObserver.on_window`) as a JSON line to `file`, flushed."""

    def __init__(self, file: TextIO):
        self.file = file

    def on_window(self, window: dict) -> None:
        self.file.write(json.dumps(window) + "\n")
        self.file.flush()


class LiveDisplay(PredictionObserver):
    """Shows each processed frame annotated with its tracks' latest window labels."""

    def __init__(self, class_names: Sequence[str], warn: TextIO = sys.stderr):
        self.class_names = list(class_names)
        self.latest = {}  # track id -> its latest window
        self.enabled = True
        self.warn = warn

    def on_window(self, window: dict) -> None:
        self.latest[window["track"]] = window

    def on_frame(self, frame_index: int, frame: np.ndarray, boxes: dict) -> None:
        if not self.enabled:
            return
        rows = [
            {"track": track, **dict(zip(BOX_COLUMNS, box)), "label": self.latest[track]["label"],
             **self.latest[track]["probabilities"]}
            for track, box in boxes.items()
            if track in self.latest
        ]
        image = annotate_frame(frame, pd.DataFrame(rows, columns=["track", *BOX_COLUMNS, "label", *self.class_names]),
                               self.class_names)
        try:
            cv2.imshow(WINDOW_TITLE, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            cv2.waitKey(1)
        except cv2.error as error:
            self.enabled = False
            reason = str(error).strip().splitlines()[-1]
            self.warn.write(f"--display: cannot open a window here ({reason}); predicting without it\n")


class Observers(PredictionObserver):
    """Several observers as one."""

    def __init__(self, *observers: PredictionObserver):
        self.observers = observers

    def on_frame(self, frame_index, frame, boxes):
        for observer in self.observers:
            observer.on_frame(frame_index, frame, boxes)

    def on_window(self, window):
        for observer in self.observers:
            observer.on_window(window)


@contextlib.contextmanager
def stop_on_signals(message: str, file: TextIO = sys.stderr) -> Iterator[threading.Event]:
    """Within the block, the first SIGINT or SIGTERM sets the yielded Event (and writes
    `message`); a second one raises KeyboardInterrupt. The handlers before are restored after."""
    stop = threading.Event()
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}

    def handle(number, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        file.write(message + "\n")
        file.flush()

    for number in previous:
        signal.signal(number, handle)
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
