"""Emotion prediction for every video of a folder tree: a result folder per video, one summary table.

    <input_dir>/<path>.mp4  ->  <output_dir>/<path>.mp4/frames.csv, tracks.csv, windows.csv,
                                prediction.json (written last: a video whose prediction.json
                                exists is done and skipped when the command runs again)
    <output_dir>/summary.csv    one row per face track of every video (video, status "done",
                                track, first/last time, frames, label, one probability column
                                per class, label_share); a video without faces: one row with
                                status "done: no face"; a video that could not be read: one
                                row with status "failed: <reason>" (it is tried again next time)

Videos are the files with a `datasets.VIDEO_EXTENSIONS` extension, found recursively and taken in
sorted order, one at a time: memory is bounded by one video's prediction (`predictor`).
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Optional

import keras
import pandas as pd

from keras_emotion.data.datasets import VIDEO_EXTENSIONS
from keras_emotion.data.faces import AlignmentConfig
from keras_emotion.data.video import InputError, claimed_frame_count
from keras_emotion.files import atomic_write, read_json
from keras_emotion.inference.clip_model import ClipModel
from keras_emotion.inference.predictor import PredictConfig, PredictionObserver, predict_video
from keras_emotion.inference.results import VideoPrediction

PREDICTION_FILE = "prediction.json"
SUMMARY_FILE = "summary.csv"


def list_videos(folder: str) -> list:
    """The video files under `folder` (recursively), as sorted paths relative to it."""
    videos = []
    for root, _, names in os.walk(folder):
        for name in names:
            if os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS and not name.startswith("."):
                videos.append(os.path.relpath(os.path.join(root, name), folder))
    return sorted(videos)


def predict_folder(
    input_dir: str,
    output_dir: str,
    model: ClipModel,
    config: PredictConfig = PredictConfig(),
    alignment: Optional[AlignmentConfig] = None,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Predicts every video under `input_dir` into `output_dir` (see the module doc).

    Returns:
        The summary table (also written to `<output_dir>/summary.csv`).

    Raises:
        InputError: `input_dir` holds no video.
    """
    videos = list_videos(input_dir)
    if not videos:
        raise InputError(input_dir, f"no video files (extensions {', '.join(sorted(VIDEO_EXTENSIONS))})")
    rows = []
    for number, video in enumerate(videos, 1):
        result_dir = os.path.join(output_dir, video)
        prediction_path = os.path.join(result_dir, PREDICTION_FILE)
        if os.path.isfile(prediction_path):
            log(f"[{number}/{len(videos)}] {video}: done before, skipped")
            result = VideoPrediction(read_json(prediction_path))
        else:
            log(f"[{number}/{len(videos)}] {video}")
            try:
                result = _predict_one(os.path.join(input_dir, video), model, config, alignment)
            except InputError as error:
                log(f"  failed: {error.reason}")
                rows.append({"video": video, "status": f"failed: {error.reason}"})
                continue
            result.to_csv(result_dir)
            result.to_json(prediction_path)
            log(f"  {len(result.tracks)} face track(s): {', '.join(result.tracks['label']) or '-'}")
        tracks = result.tracks.drop(columns=["first_frame", "last_frame", "detected_frames", "missed_frames", "windows"])
        rows += [{"video": video, "status": "done", **track} for track in tracks.to_dict("records")]
        if tracks.empty:
            rows.append({"video": video, "status": "done: no face"})
    summary = pd.DataFrame(rows)
    with atomic_write(os.path.join(output_dir, SUMMARY_FILE), keep_suffix=".csv") as temp:
        summary.to_csv(temp, index=False)
    return summary


class _FrameProgress(PredictionObserver):
    """A progress bar over the frames of one video."""

    def __init__(self, path: str):
        self.bar = keras.utils.Progbar(
            claimed_frame_count(path) or None, unit_name="frame", verbose=1 if sys.stdout.isatty() else 2
        )

    def on_frame(self, frame_index, frame, boxes):
        self.bar.update(frame_index + 1)


def _predict_one(path: str, model: ClipModel, config: PredictConfig, alignment: Optional[AlignmentConfig]):
    """`predict_video` of one file with a progress bar over its frames."""
    progress = _FrameProgress(path)
    prediction = predict_video(path, model, config, alignment, observer=progress)
    progress.bar.update(prediction["stats"]["frames_read"], finalize=True)
    return VideoPrediction(prediction)
