"""A video prediction as tables, a timeline picture and an annotated video.

`VideoPrediction` wraps the JSON of `predictor.predict_video` (kept as it is, `.prediction`) and
derives from it:

    .frames    one row per face per processed frame:
               frame, time (s), track, left, top, right, bottom (pixels of the frame as
               predicted, after `max_side` downscaling), source ("detected", "followed" between
               detections, or "missed": no box, the face aligned with its last landmarks),
               one probability column per class, label, importance
    .tracks    one row per face track (a face that left and came back, re-identified, is
               one track): track, first_frame, last_frame, first_time, last_time, num_frames,
               detected_frames, missed_frames, windows, reidentified (times it came back),
               label, one probability column per class, label_share
    .windows   one row per window of a track: track, segment (0, then 1 after the face
               came back, ...), window, first_frame, last_frame, first_time, last_time, label,
               one probability column per class

A frame's probabilities are the mean of those of the track's windows holding the frame (the
windows overlap by half by default, so this is a moving average of the window predictions); its
label is their argmax, its importance the track's `frame_importance` (summing to 1 over the
track's stretch). A track's probabilities are the mean of its windows'; `label_share`
is the share of its frames whose label is the track's. Times are frame / fps (NaN when the
source has no frame rate: folders of images, arrays).

    result.to_csv("out")                 out/frames.csv, out/tracks.csv, out/windows.csv
    result.to_json("prediction.json")
    result.plot_timeline("timeline.png") per track: probabilities over time, importance below
    result.write_annotated_video("annotated.mp4")   every frame of the source, each face's
                                         box, track id, label and probability bars

Every file is written atomically (a temporary name, then a rename).
"""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence

import cv2
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_emotion.data.video import InputError, iter_frames, video_fps
from keras_emotion.files import atomic_write
from keras_emotion.inference.predictor import write_prediction

CSV_FILES = ("frames.csv", "tracks.csv", "windows.csv")
VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v", ".mov": "mp4v"}
TRACK_COLOURS = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240))
"""RGB colour of track k: TRACK_COLOURS[k % 6]."""
BOX_COLUMNS = ("left", "top", "right", "bottom")


class VideoPrediction:
    """The result of `keras_emotion.predict` (see the module doc).

    Args:
        prediction: a `predictor.predict_video` result (or its JSON, read back).
    """

    def __init__(self, prediction: dict):
        self.prediction = prediction
        self.class_names = list(prediction["model"]["class_names"])
        self._frames = self._tracks = self._windows = None

    def __repr__(self) -> str:
        tracks = ", ".join(f"track {t}: {label}" for t, label in zip(self.tracks["track"], self.tracks["label"]))
        tracks = tracks or "no face"
        return f"VideoPrediction({self.prediction['source']!r}: {tracks})"

    @property
    def fps(self) -> float:
        return float(self.prediction.get("fps") or 0.0)

    def _time(self, frames) -> np.ndarray:
        frames = np.asarray(frames, np.float64)
        return frames / self.fps if self.fps > 0 else np.full(frames.shape, np.nan)

    @property
    def windows(self) -> pd.DataFrame:
        """One row per window of each track (see the module doc)."""
        if self._windows is None:
            rows = [
                {
                    "track": track["track"],
                    "segment": track["segment"],
                    "window": index,
                    "first_frame": window["first_frame"],
                    "last_frame": window["last_frame"],
                    "label": window["label"],
                    **window["probabilities"],
                }
                for track in self.prediction["tracks"]
                for index, window in enumerate(track["windows"])
            ]
            columns = ["track", "segment", "window", "first_frame", "last_frame", "label", *self.class_names]
            table = pd.DataFrame(rows, columns=columns)
            table.insert(5, "first_time", self._time(table["first_frame"]))
            table.insert(6, "last_time", self._time(table["last_frame"]))
            self._windows = table
        return self._windows

    @property
    def frames(self) -> pd.DataFrame:
        """One row per face per processed frame (see the module doc)."""
        if self._frames is None:
            records = {record["frame"]: record for record in self.prediction["frames"]}
            self._frames = pd.concat(
                [self._track_frames(track, records) for track in self.prediction["tracks"]] or [self._empty_frames()],
                ignore_index=True,
            )
        return self._frames

    def _empty_frames(self) -> pd.DataFrame:
        columns = ["frame", "time", "track", *BOX_COLUMNS, "source", *self.class_names, "label", "importance"]
        return pd.DataFrame({column: [] for column in columns})

    def _track_frames(self, track: dict, records: dict) -> pd.DataFrame:
        """The rows of one track's stretch (`records`: the prediction's frame records by frame)."""
        step = self.prediction["frame_step"]
        frames = track["first_frame"] + step * np.arange(track["num_frames"])
        probabilities = np.zeros((len(frames), len(self.class_names)))
        covering = np.zeros(len(frames))
        for window in track["windows"]:
            inside = (frames >= window["first_frame"]) & (frames <= window["last_frame"])
            probabilities[inside] += [window["probabilities"][name] for name in self.class_names]
            covering[inside] += 1
        probabilities /= np.maximum(covering, 1)[:, np.newaxis]
        key = str(track["track"])
        boxes = np.full((len(frames), 4), np.nan)
        sources = []
        missed = set(track["missed_frames"])
        for position, frame in enumerate(frames):
            record = records.get(int(frame), {"tracks": {}, "detector": False})
            if int(frame) in missed or key not in record["tracks"]:
                sources.append("missed")
                continue
            boxes[position] = record["tracks"][key]
            sources.append("detected" if record["detector"] else "followed")
        table = pd.DataFrame({"frame": frames, "time": self._time(frames), "track": track["track"]})
        for index, column in enumerate(BOX_COLUMNS):
            table[column] = boxes[:, index]
        table["source"] = sources
        for index, name in enumerate(self.class_names):
            table[name] = probabilities[:, index]
        table["label"] = [self.class_names[index] for index in probabilities.argmax(axis=1)]
        table["importance"] = track["frame_importance"]
        return table

    @property
    def tracks(self) -> pd.DataFrame:
        """One row per face track, its re-identified stretches together (see the module doc)."""
        if self._tracks is None:
            frames, windows = self.frames, self.windows
            rows = []
            for track_id in sorted({track["track"] for track in self.prediction["tracks"]}):
                segments = [track for track in self.prediction["tracks"] if track["track"] == track_id]
                probabilities = windows.loc[windows["track"] == track_id, self.class_names].mean()
                label = self.class_names[int(np.argmax(probabilities.to_numpy()))]
                labels = frames.loc[frames["track"] == track_id, "label"]
                rows.append(
                    {
                        "track": track_id,
                        "first_frame": segments[0]["first_frame"],
                        "last_frame": segments[-1]["last_frame"],
                        **{key: sum(segment[key] for segment in segments) for key in ("num_frames", "detected_frames")},
                        "missed_frames": sum(len(segment["missed_frames"]) for segment in segments),
                        "windows": sum(len(segment["windows"]) for segment in segments),
                        "reidentified": len(segments) - 1,
                        "label": label,
                        **probabilities.to_dict(),
                        "label_share": float(np.mean(labels == label)),
                    }
                )
            columns = ["track", "first_frame", "last_frame", "num_frames", "detected_frames", "missed_frames",
                       "windows", "reidentified", "label", *self.class_names, "label_share"]
            table = pd.DataFrame(rows, columns=columns)
            table.insert(3, "first_time", self._time(table["first_frame"]))
            table.insert(4, "last_time", self._time(table["last_frame"]))
            self._tracks = table
        return self._tracks

    def to_json(self, path: Optional[str] = None) -> str:
        """The prediction as JSON text; with `path`, written there (atomically) and `path` returned."""
        if path is None:
            return json.dumps(self.prediction, indent=2)
        return write_prediction(self.prediction, path)

    def to_csv(self, folder: str) -> list:
        """Writes frames.csv, tracks.csv and windows.csv into `folder` (created); returns their paths."""
        paths = []
        for name, table in zip(CSV_FILES, (self.frames, self.tracks, self.windows)):
            path = os.path.join(folder, name)
            with atomic_write(path, keep_suffix=".csv") as temp:
                table.to_csv(temp, index=False)
            paths.append(path)
        return paths

    def plot_timeline(self, path: str) -> str:
        """A PNG with, per track, its frames' class probabilities over time and their importance
        under them, titled with the track's label; returns `path`."""
        tracks = self.tracks.to_dict("records")
        figure = Figure(figsize=(10, 3.4 * max(1, len(tracks))), dpi=100, layout="constrained")
        if not tracks:
            figure.text(0.5, 0.5, f"no face tracked in {self.prediction['source']}", ha="center")
        frames = self.frames
        axis_name = "time (s)" if self.fps > 0 else "frame"
        grid = figure.add_gridspec(2 * len(tracks), 1, height_ratios=[3, 1] * len(tracks)) if tracks else None
        for index, track in enumerate(tracks):
            rows = frames[frames["track"] == track["track"]]
            x = rows["time"] if self.fps > 0 else rows["frame"]
            scores = figure.add_subplot(grid[2 * index])
            for name in self.class_names:
                scores.plot(x, rows[name], label=name, linewidth=2.5 if name == track["label"] else 1.0)
            scores.set_ylim(0, 1)
            scores.set_ylabel("probability")
            comebacks = f"; came back {track['reidentified']}x" if track["reidentified"] else ""
            scores.set_title(
                f"track {track['track']}: {track['label']} ({track[track['label']]:.0%}; "
                f"label of {track['label_share']:.0%} of its frames{comebacks})"
            )
            scores.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
            importance = figure.add_subplot(grid[2 * index + 1], sharex=scores)
            importance.fill_between(x, rows["importance"], step="mid", alpha=0.6)
            importance.set_ylabel("importance")
            importance.set_xlabel(axis_name)
        with atomic_write(path, keep_suffix=".png") as temp:
            FigureCanvasAgg(figure).print_png(temp)
        return path

    def write_annotated_video(self, path: str, source: Optional[str] = None) -> str:
        """Writes every frame of the source video (re-read from `source`, default the
        prediction's) with each face's box, track id, label and probability bars, at the
        source's frame rate (10 when it has none); frames between processed ones (frame_step
        > 1) show the last processed frame's faces. Returns `path`.

        Raises:
            InputError: the source cannot be read, or `path` has no known video extension
                (VIDEO_CODECS) or cannot be written.
        """
        source = os.fspath(source or self.prediction["source"])
        codec = VIDEO_CODECS.get(os.path.splitext(path)[1].lower())
        if codec is None:
            raise InputError(path, f"unknown video extension; expected one of {sorted(VIDEO_CODECS)}")
        faces_by_frame = {frame: rows for frame, rows in self.frames.groupby("frame")}
        max_side = self.prediction.get("max_side", 1280)
        fps = video_fps(source) or 10.0
        writer, current = None, None
        with atomic_write(path, keep_suffix=os.path.splitext(path)[1]) as temp:
            try:
                for index, frame in enumerate(iter_frames(source, max_side)):
                    if writer is None:
                        size = (frame.shape[1], frame.shape[0])
                        writer = cv2.VideoWriter(temp, cv2.VideoWriter_fourcc(*codec), fps, size)
                        if not writer.isOpened():
                            raise InputError(path, f"cannot write a {codec} video")
                    if index in faces_by_frame or index % self.prediction["frame_step"] == 0:
                        current = faces_by_frame.get(index)
                    annotated = frame if current is None else annotate_frame(frame, current, self.class_names)
                    writer.write(cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR))
            finally:
                if writer is not None:
                    writer.release()
        return path


def annotate_frame(frame: np.ndarray, faces: pd.DataFrame, class_names: Sequence[str]) -> np.ndarray:
    """A copy of uint8 (H, W, 3) RGB `frame` with, for each row of `faces` (rows of
    `VideoPrediction.frames` with a box), the box in its track's colour, "track: label" above it
    and under it (beside or inside it where the frame ends) one bar per class whose length is
    the class's probability; sizes follow the box's."""
    image = frame.copy()
    height, width = image.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    for _, face in faces.dropna(subset=list(BOX_COLUMNS)).iterrows():
        colour = TRACK_COLOURS[int(face["track"]) % len(TRACK_COLOURS)]
        left, top, right, bottom = (int(round(face[column])) for column in BOX_COLUMNS)
        scale = float(np.clip((bottom - top) / 160, 0.35, 1.2))
        thickness = max(1, round(2 * scale))
        cv2.rectangle(image, (left, top), (right, bottom), colour, thickness)
        cv2.putText(image, f"{int(face['track'])}: {face['label']}", (left, max(10, top - 5)), font, 0.6 * scale,
                    colour, thickness, cv2.LINE_AA)
        name_width, bar_length, bar_height = round(34 * scale), round(90 * scale), max(5, round(12 * scale))
        panel_width, panel_height = name_width + bar_length, len(class_names) * (bar_height + 2)
        if bottom + 4 + panel_height <= height:  # under the box, else beside it, else inside it
            x, y = left, bottom + 4
        elif right + 4 + panel_width <= width:
            x, y = right + 4, top
        elif left - 4 - panel_width >= 0:
            x, y = left - 4 - panel_width, top
        else:
            x, y = left, bottom - panel_height
        x, y = int(np.clip(x, 0, max(0, width - panel_width))), int(np.clip(y, 0, max(0, height - panel_height)))
        for row, name in enumerate(class_names):
            row_top = int(y + row * (bar_height + 2))
            cv2.rectangle(image, (x, row_top), (x + name_width + bar_length, row_top + bar_height), (30, 30, 30), -1)
            filled = x + name_width + round(bar_length * float(face[name]))
            cv2.rectangle(image, (x + name_width, row_top), (filled, row_top + bar_height), colour, -1)
            cv2.putText(image, name[:3], (x + 2, row_top + bar_height - 2), font, 0.4 * scale, (255, 255, 255), 1,
                        cv2.LINE_AA)
    return image
