"""Emotion prediction on raw videos: every face tracked, aligned and classified in sliding windows.

    frames of the video (decoded by `iter_frames` in a reader thread, every `frame_step`-th one)
      -> FaceAligner.find_faces                  every `detect_every`-th frame: all faces of
                                                 the frame, boxes and landmarks
      -> FaceTracker.update                      detections -> tracks (IoU, else centre distance);
                                                 a new track whose face (dlib's descriptor) is
                                                 that of an ended track gets its id back
         in the frames between detections, each detected face is followed: its landmarks are
         fitted in its last box (FaceAligner.landmarks_in_box), the box moves with them
         (follow_box); when a followed face leaves the frame or its aligned face changes more
         than `max_appearance_change` (a cut, an occlusion), it is lost and the frame is
         detected at once. New faces are found at the next detection. Followed frames join a
         track when the next detection finds its face again or when following loses a face,
         else (the next detection misses the face) they count as missed.
      -> FaceAligner.align_to_landmarks          the frame aligned on each track's face; a frame
                                                 where a track's face was missed is aligned with
                                                 its last landmarks and kept only if the face
                                                 comes back within `max_missed` frames
      -> SlidingWindows (per track)              the last W aligned faces; a window every
                                                 `stride` frames, and one at the end of the track
                                                 for the frames no window covered yet
      -> ClipModel.frame_features, predict_features
                                                 the windows all tracks completed in a frame, in
                                                 one batch; F frames of each window chosen like
                                                 evaluation does ("uniform" sampling), resized
                                                 and centre cropped like the exported
                                                 serving_default signature does -> the backbone,
                                                 once per frame (overlapping windows reuse the
                                                 maps of the frames they share) -> the head
      -> per window and per track                probabilities, label, frame importance

Memory is bounded by the live tracks, each holding at most W + max_missed + detect_every
aligned faces (uint8 256 x 256 x 3) and the frame features of its last window (W backbone
maps), and READ_AHEAD_FRAMES decoded frames; no frame of the video is kept once it is
processed. The result grows only by a few numbers per frame.

Per track, the aggregate is an equal-weight mixture of its windows: probabilities are the mean
of the windows' probabilities, and a frame's importance is the sum of its importance in every
window that holds it divided by the number of windows (so it sums to 1 over the track). Inside
a window, a frame chosen twice by the sampling (windows shorter than F) gets both shares.

The model is a trained-model directory (`models.saving.save_trained_model`: model.keras +
model_info.json) or an exported SavedModel (its `serving_default` signature: uint8 frames
(B, F, H, W, 3) + num_frames (B,) in, probabilities / label / frame_importance out); see
`inference.clip_model.load_clip_model`.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import os
import threading
import time
from typing import Iterable, Iterator, Optional

import numpy as np

from keras_emotion.data.faces import AlignmentConfig, FaceAligner, face_descriptor
from keras_emotion.data.video import iter_array_frames, iter_frames, video_fps
from keras_emotion.files import write_json_atomically
from keras_emotion.inference.clip_model import ClipModel, default_alignment, uniform_frame_indices
from keras_emotion.inference.reader import read_ahead
from keras_emotion.inference.tracking import FaceTracker, SlidingWindows, Window, appearance_change, follow_box

DEFAULT_WINDOW = 16  # frames per window for models that take windows as they are
DESCRIPTORS_PER_TRACK = 3  # face descriptors kept per track (of its first detections), for re-identification
READ_AHEAD_FRAMES = 4  # decoded frames waiting for the predictor (a 720p RGB frame is 2.7 MB)


@dataclasses.dataclass
class PredictConfig:
    """Settings of `predict_video`.

    Attributes:
        window: W, consecutive (processed) frames per window; None = the model's F (or
            DEFAULT_WINDOW for a model that takes every frame of a window).
        stride: frames between the starts of two windows; None = W // 2 (at least 1).
        frame_step: process every frame_step-th frame of the video only.
        max_side: frames whose longer side exceeds this are downscaled when read.
        max_missed: processed frames a track may go without a detection before it ends.
        min_detections: tracks detected in fewer frames are dropped (detector false positives);
            an input of fewer processed frames (a picture: 1) needs a face in each of them.
        iou_threshold: a detection continues a track when their boxes overlap at least this much ...
        max_centre_distance: ... or else when their centres are closer than this many box widths.
        detect_every: run the face detector on every detect_every-th processed frame and
            follow the faces in between; 1 detects on every frame (slower, the path before).
        max_appearance_change: a followed face whose aligned face differs from the previous
            frame's by more than this mean absolute gray difference (0..255, at 32 px) is lost.
        reidentify: a face whose track ended and that comes back (a new track) gets its old
            track id back when dlib's face descriptors say it is the same person.
        max_identity_distance: the largest distance between face descriptors (the mean of a
            track's first DESCRIPTORS_PER_TRACK detections, and the new track's first) of one
            person (dlib's threshold: 0.6).
    """

    window: Optional[int] = None
    stride: Optional[int] = None
    frame_step: int = 1
    max_side: int = 1280
    max_missed: int = 10
    min_detections: int = 3
    iou_threshold: float = 0.3
    max_centre_distance: float = 0.5
    detect_every: int = 10
    max_appearance_change: float = 30.0
    reidentify: bool = True
    max_identity_distance: float = 0.6

    def __post_init__(self):
        if self.max_appearance_change <= 0:
            raise ValueError(f"PredictConfig.max_appearance_change={self.max_appearance_change}; must be > 0")
        for field in ("frame_step", "max_side", "min_detections", "detect_every"):
            if getattr(self, field) < 1:
                raise ValueError(f"PredictConfig.{field}={getattr(self, field)}; must be >= 1")
        if self.max_missed < 0:
            raise ValueError(f"PredictConfig.max_missed={self.max_missed}; must be >= 0")


class PredictionObserver:
    """Hooks `predict_video` calls while it runs (override those you need; these do nothing):
    a live display, JSON lines per window from a stream, a progress bar."""

    def on_frame(self, frame_index: int, frame: np.ndarray, boxes: dict) -> None:
        """After each processed frame: its index in the video, the uint8 (H, W, 3) RGB frame and
        {track id: (4,) [left, top, right, bottom]} of the faces detected or followed into it."""

    def on_window(self, window: dict) -> None:
        """As soon as a window is predicted: its entry of the result's track "windows" plus its
        "track" and "segment"."""


class _Track:
    """One tracked face while the video is read: its windows and what it will report."""

    def __init__(self, tracker_id: int, track_id: int, segment: int, first_frame: int, windows: SlidingWindows):
        self.tracker_id = tracker_id  # the FaceTracker's id of this stretch of the face
        self.track_id = track_id  # the id reported: the person's (re-identification)
        self.segment = segment  # how many earlier tracks had this id
        self.identity_distance = None  # descriptor distance that re-identified it
        self.first_frame = first_frame
        self.windows = windows
        self.landmarks = None  # (K, 2) of the last detection or followed frame
        self.box = None  # (4,) box of those landmarks while the face is followed, else None
        self.face = None  # the last aligned face, to tell when following loses it
        # (frame index, aligned face, followed) of the frames since the last detection:
        # followed ones join the track when the next detection finds it, the others are missed.
        self.pending = []
        self.features = {}  # frame index -> ClipModel.frame_features of the frames of its last window
        self.detected = []  # per committed frame
        self.importance_sums = []  # per committed frame: sum of its importance over windows
        self.window_results = []

    @property
    def buffered_faces(self) -> int:
        return len(self.windows) + len(self.pending)


def _rounded(values) -> list:
    return [round(float(value), 6) for value in values]


class VideoPredictor:
    """Runs the prediction of the module docstring over the frames of one video."""

    def __init__(
        self,
        model: ClipModel,
        config: PredictConfig,
        aligner: FaceAligner,
        observer: Optional[PredictionObserver] = None,
        stop: Optional[threading.Event] = None,
    ):
        self.model, self.config, self.aligner = model, config, aligner
        self.observer, self.stop = observer or PredictionObserver(), stop
        self.interrupted = False
        self.window = config.window or model.num_frames or DEFAULT_WINDOW
        self.stride = config.stride or max(1, self.window // 2)
        SlidingWindows(self.window, self.stride)  # checks window and stride before any work
        self.tracker = FaceTracker(config.iou_threshold, config.max_centre_distance, config.max_missed)
        self.seconds = dict.fromkeys(("reading", "detection", "tracking", "identification", "alignment", "model"), 0.0)
        self.peak_buffered_faces = 0
        self.detector_frames = 0
        self._since_detection = None  # processed frames since the last detection
        self._queued_windows = []  # (track, window, index of its first frame in the track)
        self._live = {}  # track id -> _Track
        self._finished = []  # reports of the ended tracks
        self._dropped = []  # reports of the tracks with fewer than min_detections detections
        self._dropped_tracker_ids = set()
        self._frame_records = []  # their "tracks" keyed by tracker id until `run` ends
        self._descriptors = collections.defaultdict(list)  # track id -> descriptors of its detections
        self._departed = set()  # ids of the tracks that ended and may come back
        self._segments = collections.Counter()  # track id -> its tracks so far
        self._reported_id = {}  # tracker id -> track id

    def run(self, frames: Iterable[tuple]) -> dict:
        """Processes `(frame index, uint8 (H, W, 3) RGB frame)` pairs in order; returns the
        "frames", "tracks" and "dropped_tracks" parts of the prediction (see `predict_video`)."""
        frames = iter(frames)
        while True:
            if self.stop is not None and self.stop.is_set():
                self.interrupted = True
                break
            with self._timed("reading"):
                next_frame = next(frames, None)
            if next_frame is None:
                break
            self._process(*next_frame)
        for track in list(self._live.values()):
            self._commit_followed(track)
            self._end(track)
        for record in self._frame_records:
            record["tracks"] = {
                str(self._reported_id[tracker_id]): box
                for tracker_id, box in record["tracks"].items()
                if tracker_id not in self._dropped_tracker_ids
            }
        tracks = sorted(self._finished, key=lambda report: (report["track"], report["segment"]))
        dropped = sorted(self._dropped, key=lambda report: (report["track"], report["first_frame"]))
        return {"frames": self._frame_records, "tracks": tracks, "dropped_tracks": dropped}

    def _process(self, frame_index: int, frame: np.ndarray) -> None:
        """Follows the faces into the frame between detections, else (or when one is lost)
        detects them; then predicts the windows completed in the frame, in one batch."""
        self._track_faces(frame_index, frame)
        self._predict_queued()
        boxes = self._frame_records[-1]["tracks"]
        self.observer.on_frame(frame_index, frame, {self._reported_id[key]: box for key, box in boxes.items()})

    def _track_faces(self, frame_index: int, frame: np.ndarray) -> None:
        if self._since_detection is not None and self._since_detection + 1 < self.config.detect_every:
            followed = self._follow(frame)
            if followed is not None:
                self._add_followed(frame_index, frame, followed)
                self._since_detection += 1
                return
            for track in self._live.values():  # lost here: the frames followed so far are kept
                self._commit_followed(track)
        self._detect(frame_index, frame)
        self._since_detection = 0

    def _follow(self, frame: np.ndarray) -> Optional[dict]:
        """Each followed face in (H, W, 3) `frame`: {track id: (box (4,), landmarks (K, 2),
        aligned face (S, S, 3))}, or None when one is lost."""
        followed = {}
        for track in self._live.values():
            if track.box is None:
                continue
            with self._timed("tracking"):
                landmarks = self.aligner.landmarks_in_box(frame, track.box)
                box = follow_box(track.box, track.landmarks, landmarks)
            centre_x, centre_y = (box[:2] + box[2:]) / 2
            if not (0 <= centre_x < frame.shape[1] and 0 <= centre_y < frame.shape[0]):
                return None
            face = self._align(frame, landmarks)
            with self._timed("tracking"):
                change = appearance_change(track.face, face)
            if change > self.config.max_appearance_change:
                return None
            followed[track.tracker_id] = (box, landmarks, face)
        return followed

    def _add_followed(self, frame_index: int, frame: np.ndarray, followed: dict) -> None:
        """Keeps the faces `_follow` found in the frame; the other live tracks miss it."""
        for track_id in self.tracker.update_followed({track_id: box for track_id, (box, _, _) in followed.items()}):
            self._end(self._live.pop(track_id))
        for track_id, (box, landmarks, face) in followed.items():
            track = self._live[track_id]
            track.box, track.landmarks, track.face = box, landmarks, face
            track.pending.append((frame_index, face, True))
        for track_id in set(self._live) - set(followed):
            track = self._live[track_id]
            track.pending.append((frame_index, self._align(frame, track.landmarks), False))
        self._record_frame(frame_index, {track_id: box for track_id, (box, _, _) in followed.items()}, False)

    def _detect(self, frame_index: int, frame: np.ndarray) -> None:
        with self._timed("detection"):
            detections = self.aligner.find_faces(frame)
        self.detector_frames += 1
        track_ids, ended = self.tracker.update([detection.box for detection in detections])
        for track_id in ended:
            self._end(self._live.pop(track_id))
        for detection, track_id in zip(detections, track_ids):
            track = self._live.get(track_id)
            if track is None:
                track = self._live[track_id] = self._start_track(track_id, frame_index, frame, detection.landmarks)
            elif self.config.reidentify and len(self._descriptors[track.track_id]) < DESCRIPTORS_PER_TRACK:
                self._descriptors[track.track_id].append(self._describe(frame, detection.landmarks))
            track.landmarks, track.box = detection.landmarks, detection.box
            for pending_index, pending_face, followed in track.pending:
                self._commit(track, pending_index, pending_face, detected=followed)
            track.pending = []
            track.face = self._align(frame, detection.landmarks)
            self._commit(track, frame_index, track.face, detected=True)
        for track_id in set(self._live) - set(track_ids):
            track = self._live[track_id]
            track.box = None  # not followed until detected again; its followed frames are missed
            track.pending = [(index, face, False) for index, face, _ in track.pending]
            track.pending.append((frame_index, self._align(frame, track.landmarks), False))
        self._record_frame(frame_index, {track_id: d.box for d, track_id in zip(detections, track_ids)}, True)

    def _start_track(self, tracker_id: int, frame_index: int, frame: np.ndarray, landmarks: np.ndarray) -> _Track:
        """A track for the tracker's new `tracker_id`: the id of the nearest departed track
        whose face descriptors are within `max_identity_distance` of this face's, else a new id."""
        track_id, distance = max(self._reported_id.values(), default=-1) + 1, None
        if self.config.reidentify:
            descriptor = self._describe(frame, landmarks)
            distances = {
                departed: float(np.linalg.norm(np.mean(self._descriptors[departed], axis=0) - descriptor))
                for departed in self._departed
            }
            nearest = min(distances, key=distances.get, default=None)
            if nearest is not None and distances[nearest] <= self.config.max_identity_distance:
                track_id, distance = nearest, distances[nearest]
                self._departed.discard(nearest)
            self._descriptors[track_id].append(descriptor)
        self._reported_id[tracker_id] = track_id
        track = _Track(tracker_id, track_id, self._segments[track_id], frame_index, SlidingWindows(self.window, self.stride))
        track.identity_distance = distance
        self._segments[track_id] += 1
        return track

    def _describe(self, frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        with self._timed("identification"):
            return face_descriptor(frame, landmarks)

    def _record_frame(self, frame_index: int, boxes: dict, detector: bool) -> None:
        """Files the frame's record: the {track id: box} of the faces detected (`detector`) or
        followed into it."""
        self._frame_records.append(
            {
                "frame": frame_index,
                "faces": len(boxes),
                "detector": detector,
                "tracks": {tracker_id: _rounded(box) for tracker_id, box in boxes.items()},
            }
        )
        buffered = sum(track.buffered_faces for track in self._live.values())
        self.peak_buffered_faces = max(self.peak_buffered_faces, buffered)

    def _align(self, frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        with self._timed("alignment"):
            face, _ = self.aligner.align_to_landmarks(frame, landmarks)
        return face

    @contextlib.contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        """Adds the seconds the block takes to `self.seconds[stage]`."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - started

    def _commit_followed(self, track: _Track) -> None:
        """The frames followed since the track's last detection join it (at the end of the
        video, or when following loses a face: each of them passed the checks of `_follow`)."""
        while track.pending and track.pending[0][2]:
            frame_index, face, _ = track.pending.pop(0)
            self._commit(track, frame_index, face, detected=True)

    def _commit(self, track: _Track, frame_index: int, face: np.ndarray, detected: bool) -> None:
        track.detected.append(detected)
        track.importance_sums.append(0.0)
        window = track.windows.push(frame_index, face)
        if window is not None:
            self._queue_window(track, window)

    def _queue_window(self, track: _Track, window: Window) -> None:
        """Queues `window`, the last T committed frames of `track`, for `_predict_queued`."""
        first = len(track.importance_sums) - len(window.items)
        self._queued_windows.append((track, window, first))

    def _predict_queued(self) -> None:
        """Runs the model on F frames of each queued window, one batch per clip shape (the
        windows of all tracks that completed in a frame go together). Each frame's
        `ClipModel.frame_features` are computed once (`_frame_features`, for the new frames of
        all these windows together) and kept while the track's last window holds the frame:
        the next window reuses them."""
        if not self._queued_windows:
            return
        with self._timed("model"):
            sampled, missing = [], {}  # missing: (track, frame index) -> aligned face
            for track, window, _ in self._queued_windows:
                if self.model.num_frames:
                    indices = uniform_frame_indices(len(window.items), self.model.num_frames)
                else:
                    indices = np.arange(len(window.items))
                sampled.append(indices)
                for index in indices:
                    if window.frame_indices[index] not in track.features:
                        missing[track, window.frame_indices[index]] = window.items[index]
            if missing:
                features = self._frame_features(list(missing.values()))
                for (track, frame_index), value in zip(missing, features):
                    track.features[frame_index] = value
            clips = [
                np.stack([track.features[window.frame_indices[index]] for index in indices])
                for (track, window, _), indices in zip(self._queued_windows, sampled)
            ]
            for track, window, _ in self._queued_windows:  # a track's last queued window is its latest
                kept = [frame_index for frame_index in window.frame_indices if frame_index in track.features]
                track.features = {frame_index: track.features[frame_index] for frame_index in kept}
            predictions = [None] * len(clips)
            by_shape = collections.defaultdict(list)
            for position, clip in enumerate(clips):
                by_shape[clip.shape].append(position)
            for positions in by_shape.values():
                batch = np.stack([clips[position] for position in positions])
                for position, prediction in zip(positions, self.model.predict_features(batch)):
                    predictions[position] = prediction
        for (track, window, first), indices, prediction in zip(self._queued_windows, sampled, predictions):
            importance = np.bincount(indices, weights=prediction.frame_importance, minlength=len(window.items))
            for offset, value in enumerate(importance):
                track.importance_sums[first + offset] += float(value)
            result = {
                "first_frame": window.frame_indices[0],
                "last_frame": window.frame_indices[-1],
                "label": self.model.class_names[int(np.argmax(prediction.probabilities))],
                "probabilities": dict(zip(self.model.class_names, _rounded(prediction.probabilities))),
                "frame_importance": _rounded(importance),
            }
            track.window_results.append(result)
            self.observer.on_window({"track": track.track_id, "segment": track.segment, **result})
        self._queued_windows = []

    def _frame_features(self, faces: list) -> np.ndarray:
        """`model.frame_features` of N aligned faces, (N, ...), computed in batches of `stride`
        faces (the last one padded with copies of its last face): a window brings `stride` new
        frames, a track's first window twice or more as many, its last one fewer; a constant
        batch shape keeps the model from being traced again for each of them."""
        padded = faces + faces[-1:] * (-len(faces) % self.stride)
        batches = [np.stack(padded[start : start + self.stride]) for start in range(0, len(padded), self.stride)]
        return np.concatenate([self.model.frame_features(batch) for batch in batches])[: len(faces)]

    def _end(self, track: _Track) -> None:
        """Predicts the track's last window and files its report (or drops it)."""
        self._predict_queued()
        track.pending = []  # frames after the last detection are not part of the track
        detections = int(sum(track.detected))
        needed = min(self.config.min_detections, len(self._frame_records))
        if detections < needed:
            self._dropped_tracker_ids.add(track.tracker_id)
            if track.segment:  # the face of an earlier track came back briefly: it may come again
                self._departed.add(track.track_id)
            self._dropped.append(
                {
                    "track": track.track_id,
                    "first_frame": track.first_frame,
                    "detected_frames": detections,
                    "reason": f"detected in {detections} frame{'' if detections == 1 else 's'}, fewer than "
                    + (
                        f"min_detections={needed}"
                        if needed == self.config.min_detections
                        else f"the input's {needed} frames (min_detections={self.config.min_detections})"
                    ),
                }
            )
            return
        window = track.windows.finish()
        if window is not None:
            self._queue_window(track, window)
        self._predict_queued()
        self._departed.add(track.track_id)
        windows = track.window_results
        probabilities = np.mean([[w["probabilities"][name] for name in self.model.class_names] for w in windows], 0)
        self._finished.append(
            {
                "track": track.track_id,
                "segment": track.segment,
                "identity_distance": track.identity_distance,
                "first_frame": track.first_frame,
                "last_frame": track.first_frame + (len(track.detected) - 1) * self.config.frame_step,
                "num_frames": len(track.detected),
                "detected_frames": int(sum(track.detected)),
                "label": self.model.class_names[int(np.argmax(probabilities))],
                "probabilities": dict(zip(self.model.class_names, _rounded(probabilities))),
                "frame_importance": _rounded(np.asarray(track.importance_sums) / len(windows)),
                "missed_frames": [
                    track.first_frame + position * self.config.frame_step
                    for position, detected in enumerate(track.detected)
                    if not detected
                ],
                "windows": windows,
            }
        )


def predict_video(
    path,
    model: ClipModel,
    config: PredictConfig = PredictConfig(),
    alignment: Optional[AlignmentConfig] = None,
    fps: Optional[float] = None,
    observer: Optional[PredictionObserver] = None,
    stop: Optional[threading.Event] = None,
) -> dict:
    """Predicts the emotion of every face of a video (or image folder), streaming its frames.

    Args:
        path: a video file, a folder of frames or one image (see `video.iter_frames`); or
            the frames themselves, uint8 (N, H, W, 3) RGB (or one (H, W, 3) image).
        fps: the frame rate of frames given as an array (default 0: unknown); for a file,
            None reads it from the file.
        observer: called after each processed frame and each predicted window
            (`PredictionObserver`), e.g. to show the faces live or stream the windows.
        stop: when set (e.g. by a Ctrl-C handler), no further frame is read: the tracks so
            far are finished and returned, with "interrupted": true.
        model: from `load_clip_model`.
        config: windows, tracking and frame skipping.
        alignment: face detection and alignment settings; None = `default_alignment(model)`.
            Its output_size is always the model's face_size.

    Returns:
        A JSON-ready dict:
            source (the path or stream, or "<array of N frames>"), fps (0 when unknown),
            frame_step, max_side, window (W), stride, interrupted (stopped by `stop`),
            model: {"path", "format", "class_names", "frames_per_clip" (F, or None when
                the model is given every frame of a window)}
            frames: per processed frame {"frame": index in the video, "faces": faces detected
                (or followed, between detections), "detector": whether the detector ran,
                "tracks": {track id: [left, top, right, bottom]} of the kept tracks}
            tracks: per kept track {"track" (the id; a face that comes back after its track
                ended gets its id again: `PredictConfig.reidentify`), "segment" (0 for the first
                track of this id, 1 for the next, ...), "identity_distance" (the descriptor
                distance that re-identified it, else None), "first_frame", "last_frame", "num_frames"
                (processed frames from first to last detection), "detected_frames" (detected
                or followed), "label",
                "probabilities": {class: p}, "frame_importance": (num_frames,) summing to 1,
                "missed_frames": frames where the face was not detected (aligned with the
                landmarks of the last detection), "windows": [{"first_frame", "last_frame",
                "label", "probabilities", "frame_importance": one value per frame of the
                window, summing to 1}]}. Track frames are first_frame, first_frame +
                frame_step, ... (the same in a window).
            dropped_tracks: per track left out {"track", "first_frame", "detected_frames",
                "reason"} (e.g. "detected in 1 frame, fewer than min_detections=3").
            stats: frames_read, frames_processed, peak_buffered_faces, detector_frames
                (frames the detector ran on), seconds per stage.

    Raises:
        video.InputError: missing, unreadable or empty input (the message names it).
    """
    if isinstance(path, np.ndarray):
        frames = iter_array_frames(path, config.max_side)
        source, fps = f"<array of {len(path) if path.ndim == 4 else 1} frames>", fps or 0.0
    else:
        source = os.fspath(path)
        frames = read_ahead(iter_frames(source, config.max_side), READ_AHEAD_FRAMES)
        fps = video_fps(source) if fps is None else fps
    alignment = alignment or default_alignment(model)
    aligner = FaceAligner(dataclasses.replace(alignment, output_size=model.face_size))
    predictor = VideoPredictor(model, config, aligner, observer, stop)
    frames_read = itertools.count()
    numbered = ((next(frames_read), frame) for frame in frames)
    result = predictor.run(itertools.islice(numbered, 0, None, config.frame_step))
    return {
        "source": source,
        "fps": fps,
        "frame_step": config.frame_step,
        "max_side": config.max_side,
        "window": predictor.window,
        "stride": predictor.stride,
        "interrupted": predictor.interrupted,
        "model": {**model.description, "class_names": model.class_names, "frames_per_clip": model.num_frames},
        **result,
        "stats": {
            "frames_read": next(frames_read),
            "frames_processed": len(result["frames"]),
            "peak_buffered_faces": predictor.peak_buffered_faces,
            "detector_frames": predictor.detector_frames,
            "seconds": {name: round(value, 3) for name, value in predictor.seconds.items()},
        },
    }


def write_prediction(prediction: dict, path: str) -> str:
    """Writes a `predict_video` result as JSON to `path`, atomically. Returns `path`."""
    return write_json_atomically(path, prediction)
