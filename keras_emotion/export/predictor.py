"""Emotion prediction on raw videos: every face tracked, aligned and classified in sliding windows.

    frames of the video (streamed by `iter_frames`, every `frame_step`-th one)
      -> FaceAligner.find_faces                  all faces of the frame: boxes and landmarks
      -> FaceTracker.update                      detections -> tracks (IoU, else centre distance)
      -> FaceAligner.align_to_landmarks          the frame aligned on each track's face; a frame
                                                 where a track's face was missed is aligned with
                                                 its last landmarks and kept only if the face
                                                 comes back within `max_missed` frames
      -> SlidingWindows (per track)              the last W aligned faces; a window every
                                                 `stride` frames, and one at the end of the track
                                                 for the frames no window covered yet
      -> ClipModel.predict                       F frames of the window chosen like evaluation
                                                 does ("uniform" sampling), resized and centre
                                                 cropped like the exported serving_default
                                                 signature does -> the model
      -> per window and per track                probabilities, label, frame importance

Memory is bounded by the live tracks, each holding at most W + max_missed aligned faces
(uint8 256 x 256 x 3); no frame of the video is kept once it is processed. The result grows
only by a few numbers per frame.

Per track, the aggregate is an equal-weight mixture of its windows: probabilities are the mean
of the windows' probabilities, and a frame's importance is the sum of its importance in every
window that holds it divided by the number of windows (so it sums to 1 over the track). Inside
a window, a frame chosen twice by the sampling (windows shorter than F) gets both shares.

The model is a trained-model directory (`training.task.save_trained_model`: model.keras +
model_info.json) or an exported SavedModel (its `serving_default` signature: uint8 frames
(B, F, H, W, 3) + num_frames (B,) in, probabilities / label / frame_importance out); see
`load_clip_model`.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import itertools
import os
import time
from typing import Iterable, Optional, Sequence

import numpy as np

from keras_emotion.data import schema
from keras_emotion.data.faces import AlignmentConfig, FaceAligner, box_overlaps
from keras_emotion.data.video import iter_frames, video_fps
from keras_emotion.files import write_json_atomically

SAVED_MODEL_FILE = "saved_model.pb"
SERVING_SIGNATURE = "serving_default"
DEFAULT_WINDOW = 16  # frames per window for models that take windows as they are


@dataclasses.dataclass
class ClipPrediction:
    """The model's answer for one clip of F frames (E classes, N heads, L regions).

    Attributes:
        probabilities: float32 (E,) clip class probabilities.
        frame_importance: float32 (F,) each frame's share, summing to 1.
        spatial_attention: float32 (F, N, L), or None for models without spatial attention.
    """

    probabilities: np.ndarray
    frame_importance: np.ndarray
    spatial_attention: Optional[np.ndarray]


class ClipModel(abc.ABC):
    """A trained model seen as: aligned faces of one clip (uint8) -> ClipPrediction.

    Attributes:
        class_names: E names, index = class index.
        num_frames: F, the frames it is given per clip (chosen from a window like evaluation
            chooses them from a clip), or None: it is given every frame of a window.
        face_size: side of the aligned faces it expects.
        alignment: how the faces of its training data were aligned (defaults if unknown).
        description: {"path", "format"} for the prediction JSON.
    """

    class_names: list
    num_frames: Optional[int]
    face_size: int
    alignment: AlignmentConfig
    description: dict

    @abc.abstractmethod
    def predict(self, faces: np.ndarray) -> ClipPrediction:
        """Classifies one clip: `faces` uint8 (F, face_size, face_size, 3) RGB aligned faces."""


def uniform_frame_indices(clip_length: int, num_frames: int) -> np.ndarray:
    """The frames evaluation feeds the model from a clip of `clip_length` frames: int (num_frames,)
    (`pipeline.sample_frame_indices` with "uniform" sampling; a short clip repeats frames)."""
    from keras_emotion.data.pipeline import sample_frame_indices

    return sample_frame_indices(clip_length, num_frames, "uniform", None).numpy()


def _clip_prediction(outputs: dict) -> ClipPrediction:
    """The first clip of a batch of model / signature outputs (NumPy arrays)."""
    attention = outputs.get("spatial_attention")
    return ClipPrediction(
        probabilities=np.asarray(outputs["probabilities"][0], np.float32),
        frame_importance=np.asarray(outputs["frame_importance"][0], np.float32),
        spatial_attention=None if attention is None else np.asarray(attention[0], np.float32),
    )


class KerasClipModel(ClipModel):
    """A trained-model directory (model.keras + model_info.json, see `training.task`).

    Faces are resized and centre cropped exactly as the exported SavedModel's serving_default
    signature does it (`saved_model` module), from the full-resolution aligned face.
    """

    def __init__(self, trained, path: str = ""):
        """`trained`: a `training.task.TrainedModel`; `path`: where it was loaded from."""
        from keras_emotion.export.saved_model import Preprocessing

        self.trained = trained
        self.preprocessing = Preprocessing.of_trained_model(self.trained)
        self.class_names = list(self.trained.class_names)
        self.num_frames = int(self.trained.num_frames)
        manifest = self.trained.dataset_manifest or {}
        self.face_size = int(manifest.get("image_size", schema.IMAGE_SIZE))
        self.alignment = AlignmentConfig(**manifest.get("preprocessing", {}).get("alignment", {}))
        self.description = {"path": os.fspath(path), "format": "keras"}

    def model_inputs(self, faces: np.ndarray) -> dict:
        """The model's inputs for uint8 (B, F, A, A, 3) aligned faces: {"frames": float32
        (B, F, S, S, 3) in 0..255, "frame_mask": ones (B, F)}."""
        from keras_emotion.export.saved_model import resize_and_crop_pixels

        frames = resize_and_crop_pixels(np.asarray(faces, np.uint8), self.preprocessing).numpy()
        return {"frames": frames, "frame_mask": np.ones(frames.shape[:2], np.float32)}

    def predict(self, faces: np.ndarray) -> ClipPrediction:
        return _clip_prediction(self.trained.model.predict_on_batch(self.model_inputs(np.asarray(faces)[np.newaxis])))


class SavedModelClipModel(ClipModel):
    """An exported SavedModel (`saved_model.export_saved_model`), called through its
    serving_default signature, which resizes and crops the aligned faces itself.

    The signature takes any number of frames, so by default it is given every frame of a
    window (num_frames None). Class names: `class_names` if given, else those the export wrote
    to `assets.extra/model_info.json` (`saved_model.read_model_info`).
    """

    def __init__(self, directory: str, num_frames: Optional[int] = None, class_names: Optional[Sequence[str]] = None):
        import tensorflow as tf

        from keras_emotion.export.saved_model import read_model_info

        if class_names is None:
            class_names = read_model_info(directory)["class_names"]
        self._signature = tf.saved_model.load(directory).signatures[SERVING_SIGNATURE]
        num_classes = self._signature.structured_outputs["probabilities"].shape[-1]
        if len(class_names) != num_classes:
            raise ValueError(
                f"{directory}: {len(class_names)} class names {list(class_names)} for a model with {num_classes} classes"
            )
        self.class_names = list(class_names)
        frames_spec = self._signature.structured_input_signature[1]["frames"]
        self.num_frames = num_frames or frames_spec.shape[1]
        self.face_size = int(frames_spec.shape[2] or schema.IMAGE_SIZE)
        self.alignment = AlignmentConfig()
        self.description = {"path": os.fspath(directory), "format": "saved_model"}

    def _call(self, faces: np.ndarray) -> dict:
        import tensorflow as tf

        faces = np.asarray(faces, np.uint8)
        outputs = self._signature(frames=tf.constant(faces), num_frames=tf.fill([faces.shape[0]], faces.shape[1]))
        return {name: value.numpy() for name, value in outputs.items()}

    def predict(self, faces: np.ndarray) -> ClipPrediction:
        return _clip_prediction(self._call(np.asarray(faces)[np.newaxis]))


def load_clip_model(
    path: str, num_frames: Optional[int] = None, class_names: Optional[Sequence[str]] = None
) -> ClipModel:
    """The model at `path`: a trained-model directory (model_info.json + model.keras), a
    SavedModel directory (saved_model.pb), or a TF Serving model directory (numbered
    version folders; the highest one holding a SavedModel is used).

    Args:
        path: the directory.
        num_frames, class_names: for a SavedModel, see `SavedModelClipModel` (a trained-model
            directory knows both).

    Raises:
        FileNotFoundError: `path` is none of these (the message names it).
    """
    from keras_emotion.training.task import MODEL_INFO_FILE, load_trained_model

    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
        return SavedModelClipModel(path, num_frames, class_names)
    if os.path.isfile(os.path.join(path, MODEL_INFO_FILE)):
        return KerasClipModel(load_trained_model(path), path)
    versions = sorted((int(name) for name in (os.listdir(path) if os.path.isdir(path) else []) if name.isdigit()))
    for version in reversed(versions):
        if os.path.isfile(os.path.join(path, str(version), SAVED_MODEL_FILE)):
            return SavedModelClipModel(os.path.join(path, str(version)), num_frames, class_names)
    raise FileNotFoundError(
        f"{path}: not a model directory (no {MODEL_INFO_FILE}, no {SAVED_MODEL_FILE}, "
        "no numbered version folder holding one)"
    )

@dataclasses.dataclass
class Window:
    """A window of consecutive frames of one track.

    Attributes:
        frame_indices: T video frame indices (T <= W).
        items: the T items pushed with them (aligned faces).
    """

    frame_indices: list
    items: list


class SlidingWindows:
    """Cuts a stream of frames into windows of `window` frames, one every `stride` frames.

    Holds at most `window` items. A window is complete when `window` frames are held and
    `stride` frames arrived since the previous one (the first one after `window` frames);
    `finish` returns the last frames if some arrived after the last window (or if the stream
    was shorter than one window). Every pushed frame is in at least one window, windows
    start every `stride` frames, and the last window ends at the last frame.
    """

    def __init__(self, window: int, stride: int):
        if window < 1 or not 1 <= stride <= window:
            raise ValueError(f"need window >= 1 and 1 <= stride <= window, got window={window}, stride={stride}")
        self.window, self.stride = window, stride
        self._buffer = collections.deque(maxlen=window)
        self._since_last = 0

    def __len__(self) -> int:
        return len(self._buffer)

    def push(self, frame_index: int, item) -> Optional[Window]:
        """Adds one frame; returns the window it completes, if any."""
        self._buffer.append((frame_index, item))
        self._since_last += 1
        if len(self._buffer) == self.window and self._since_last >= self.stride:
            return self._take()
        return None

    def finish(self) -> Optional[Window]:
        """The last window (the last up to `window` frames) when frames arrived after the last one."""
        return self._take() if self._since_last > 0 else None

    def _take(self) -> Window:
        self._since_last = 0
        indices, items = zip(*self._buffer)
        return Window(list(indices), list(items))


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
        min_detections: tracks detected in fewer frames are dropped (detector false positives).
        iou_threshold: a detection continues a track when their boxes overlap at least this much ...
        max_centre_distance: ... or else when their centres are closer than this many box widths.
    """

    window: Optional[int] = None
    stride: Optional[int] = None
    frame_step: int = 1
    max_side: int = 1280
    max_missed: int = 10
    min_detections: int = 3
    iou_threshold: float = 0.3
    max_centre_distance: float = 0.5

    def __post_init__(self):
        for field in ("frame_step", "max_side", "min_detections"):
            if getattr(self, field) < 1:
                raise ValueError(f"PredictConfig.{field}={getattr(self, field)}; must be >= 1")
        if self.max_missed < 0:
            raise ValueError(f"PredictConfig.max_missed={self.max_missed}; must be >= 0")


class FaceTracker:
    """Associates the faces detected in successive frames into tracks.

    Each frame, detections are matched to the live tracks greedily: first the pairs of
    largest box overlap (IoU >= iou_threshold), then among the rest the pairs of nearest
    centres (closer than max_centre_distance times the track's box width). Unmatched
    detections start new tracks; a track unmatched for more than `max_missed` frames ends.
    """

    def __init__(self, iou_threshold: float = 0.3, max_centre_distance: float = 0.5, max_missed: int = 10):
        self.iou_threshold, self.max_centre_distance, self.max_missed = iou_threshold, max_centre_distance, max_missed
        self._boxes = {}  # live track id -> (4,) last box
        self._missed = {}  # live track id -> frames since its last detection
        self._next_id = 0

    def update(self, boxes: Sequence[np.ndarray]) -> tuple[list, list]:
        """Feeds the (4,) [left, top, right, bottom] boxes of one frame.

        Returns:
            (track_ids, ended): the track id of each box (in order), and the ids of the
            tracks that ended with this frame (missed more than max_missed frames).
        """
        track_ids = [None] * len(boxes)
        live = list(self._boxes)
        if live and len(boxes):
            boxes_array = np.asarray(boxes, np.float64)
            overlaps = np.stack([box_overlaps(boxes_array, self._boxes[track]) for track in live], axis=1)
            self._match(track_ids, live, overlaps, lambda value: value >= self.iou_threshold, largest=True)
            distances = np.stack([self._centre_distances(boxes_array, self._boxes[track]) for track in live], axis=1)
            self._match(track_ids, live, distances, lambda value: value < self.max_centre_distance, largest=False)
        for index, box in enumerate(boxes):
            if track_ids[index] is None:
                track_ids[index] = self._next_id
                self._next_id += 1
            self._boxes[track_ids[index]] = np.asarray(box, np.float64)
            self._missed[track_ids[index]] = 0
        ended = []
        for track in live:
            if track not in track_ids:
                self._missed[track] += 1
                if self._missed[track] > self.max_missed:
                    ended.append(track)
                    del self._boxes[track], self._missed[track]
        return track_ids, ended

    def live_tracks(self) -> list:
        """Ids of the tracks that have not ended."""
        return list(self._boxes)

    @staticmethod
    def _centre_distances(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Distances of the (N, 4) boxes' centres to the (4,) box's centre, in widths of `box`: (N,)."""
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        return np.linalg.norm(centres - (box[:2] + box[2:]) / 2, axis=1) / max(box[2] - box[0], 1.0)

    @staticmethod
    def _match(track_ids: list, live: list, scores: np.ndarray, acceptable, largest: bool) -> None:
        """Greedy matching on the (boxes, live tracks) `scores`, best pair first, among
        unmatched boxes and tracks whose score is `acceptable`; fills `track_ids`."""
        taken = {track for track in track_ids if track is not None}
        order = np.argsort(-scores if largest else scores, axis=None, kind="stable")
        for box_index, track_index in zip(*np.unravel_index(order, scores.shape)):
            track = live[track_index]
            if track_ids[box_index] is None and track not in taken and acceptable(scores[box_index, track_index]):
                track_ids[box_index] = track
                taken.add(track)


class _Track:
    """One tracked face while the video is read: its windows and what it will report."""

    def __init__(self, track_id: int, first_frame: int, windows: SlidingWindows):
        self.track_id = track_id
        self.first_frame = first_frame
        self.windows = windows
        self.landmarks = None  # (K, 2) of the last detection
        self.pending = []  # (frame index, aligned face) of frames missed since the last detection
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

    def __init__(self, model: ClipModel, config: PredictConfig, aligner: FaceAligner):
        self.model, self.config, self.aligner = model, config, aligner
        self.window = config.window or model.num_frames or DEFAULT_WINDOW
        self.stride = config.stride or max(1, self.window // 2)
        SlidingWindows(self.window, self.stride)  # checks window and stride before any work
        self.tracker = FaceTracker(config.iou_threshold, config.max_centre_distance, config.max_missed)
        self.seconds = dict.fromkeys(("reading", "detection", "alignment", "model"), 0.0)
        self.peak_buffered_faces = 0
        self._live = {}  # track id -> _Track
        self._finished = []  # reports of the ended tracks
        self._dropped = set()  # ids of the tracks with fewer than min_detections detections
        self._frame_records = []

    def run(self, frames: Iterable[tuple]) -> dict:
        """Processes `(frame index, uint8 (H, W, 3) RGB frame)` pairs in order; returns the
        "frames" and "tracks" parts of the prediction (see `predict_video`)."""
        frames = iter(frames)
        while True:
            started = time.perf_counter()
            next_frame = next(frames, None)
            self.seconds["reading"] += time.perf_counter() - started
            if next_frame is None:
                break
            self._process(*next_frame)
        for track in list(self._live.values()):
            self._end(track)
        for record in self._frame_records:
            record["tracks"] = {key: box for key, box in record["tracks"].items() if int(key) not in self._dropped}
        tracks = sorted(self._finished, key=lambda report: report["track"])
        return {"frames": self._frame_records, "tracks": tracks}

    def _process(self, frame_index: int, frame: np.ndarray) -> None:
        started = time.perf_counter()
        detections = self.aligner.find_faces(frame)
        self.seconds["detection"] += time.perf_counter() - started
        track_ids, ended = self.tracker.update([detection.box for detection in detections])
        for track_id in ended:
            self._end(self._live.pop(track_id))
        for detection, track_id in zip(detections, track_ids):
            track = self._live.get(track_id)
            if track is None:
                track = self._live[track_id] = _Track(track_id, frame_index, SlidingWindows(self.window, self.stride))
            track.landmarks = detection.landmarks
            for pending_index, pending_face in track.pending:
                self._commit(track, pending_index, pending_face, detected=False)
            track.pending = []
            self._commit(track, frame_index, self._align(frame, detection.landmarks), detected=True)
        for track_id in set(self._live) - set(track_ids):
            track = self._live[track_id]
            track.pending.append((frame_index, self._align(frame, track.landmarks)))
        self._frame_records.append(
            {
                "frame": frame_index,
                "faces": len(detections),
                "tracks": {str(track_id): _rounded(d.box) for d, track_id in zip(detections, track_ids)},
            }
        )
        buffered = sum(track.buffered_faces for track in self._live.values())
        self.peak_buffered_faces = max(self.peak_buffered_faces, buffered)

    def _align(self, frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        face, _ = self.aligner.align_to_landmarks(frame, landmarks)
        self.seconds["alignment"] += time.perf_counter() - started
        return face

    def _commit(self, track: _Track, frame_index: int, face: np.ndarray, detected: bool) -> None:
        track.detected.append(detected)
        track.importance_sums.append(0.0)
        window = track.windows.push(frame_index, face)
        if window is not None:
            self._predict_window(track, window)

    def _predict_window(self, track: _Track, window: Window) -> None:
        """Runs the model on F frames of `window` (the last T committed frames of `track`)."""
        started = time.perf_counter()
        faces = np.stack(window.items)
        if self.model.num_frames:
            indices = uniform_frame_indices(len(faces), self.model.num_frames)
        else:
            indices = np.arange(len(faces))
        prediction = self.model.predict(faces[indices])
        self.seconds["model"] += time.perf_counter() - started
        importance = np.bincount(indices, weights=prediction.frame_importance, minlength=len(faces))
        first = len(track.importance_sums) - len(faces)
        for offset, value in enumerate(importance):
            track.importance_sums[first + offset] += float(value)
        track.window_results.append(
            {
                "first_frame": window.frame_indices[0],
                "last_frame": window.frame_indices[-1],
                "label": self.model.class_names[int(np.argmax(prediction.probabilities))],
                "probabilities": dict(zip(self.model.class_names, _rounded(prediction.probabilities))),
                "frame_importance": _rounded(importance),
            }
        )

    def _end(self, track: _Track) -> None:
        """Predicts the track's last window and files its report (or drops it)."""
        track.pending = []  # frames after the last detection are not part of the track
        if sum(track.detected) < self.config.min_detections:
            self._dropped.add(track.track_id)
            return
        window = track.windows.finish()
        if window is not None:
            self._predict_window(track, window)
        windows = track.window_results
        probabilities = np.mean([[w["probabilities"][name] for name in self.model.class_names] for w in windows], 0)
        self._finished.append(
            {
                "track": track.track_id,
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


def default_alignment(model: ClipModel) -> AlignmentConfig:
    """The alignment `model` was trained with (its training data's manifest), else the
    defaults, for faces of `model.face_size`; no CNN fallback (far too slow for videos)."""
    return dataclasses.replace(model.alignment, output_size=model.face_size, cnn_fallback=False)


def predict_video(
    path: str,
    model: ClipModel,
    config: PredictConfig = PredictConfig(),
    alignment: Optional[AlignmentConfig] = None,
) -> dict:
    """Predicts the emotion of every face of a video (or image folder), streaming its frames.

    Args:
        path: a video file, a folder of frames or one image (see `video.iter_frames`).
        model: from `load_clip_model`.
        config: windows, tracking and frame skipping.
        alignment: face detection and alignment settings; None = `default_alignment(model)`.
            Its output_size is always the model's face_size.

    Returns:
        A JSON-ready dict:
            source, fps (0 when unknown), frame_step, window (W), stride,
            model: {"path", "format", "class_names", "frames_per_clip" (F, or None when
                the model is given every frame of a window)}
            frames: per processed frame {"frame": index in the video, "faces": faces detected,
                "tracks": {track id: [left, top, right, bottom]} of the kept tracks}
            tracks: per kept track {"track", "first_frame", "last_frame", "num_frames"
                (processed frames from first to last detection), "detected_frames", "label",
                "probabilities": {class: p}, "frame_importance": (num_frames,) summing to 1,
                "missed_frames": frames where the face was not detected (aligned with the
                landmarks of the last detection), "windows": [{"first_frame", "last_frame",
                "label", "probabilities", "frame_importance": one value per frame of the
                window, summing to 1}]}. Track frames are first_frame, first_frame +
                frame_step, ... (the same in a window).
            stats: frames_read, frames_processed, peak_buffered_faces, seconds per stage.

    Raises:
        video.InputError: missing, unreadable or empty input (the message names it).
    """
    path = os.fspath(path)
    alignment = alignment or default_alignment(model)
    aligner = FaceAligner(dataclasses.replace(alignment, output_size=model.face_size))
    predictor = VideoPredictor(model, config, aligner)
    frames_read = itertools.count()
    numbered = ((next(frames_read), frame) for frame in iter_frames(path, config.max_side))
    result = predictor.run(itertools.islice(numbered, 0, None, config.frame_step))
    return {
        "source": path,
        "fps": video_fps(path),
        "frame_step": config.frame_step,
        "window": predictor.window,
        "stride": predictor.stride,
        "model": {**model.description, "class_names": model.class_names, "frames_per_clip": model.num_frames},
        **result,
        "stats": {
            "frames_read": next(frames_read),
            "frames_processed": len(result["frames"]),
            "peak_buffered_faces": predictor.peak_buffered_faces,
            "seconds": {name: round(value, 3) for name, value in predictor.seconds.items()},
        },
    }


def write_prediction(prediction: dict, path: str) -> str:
    """Writes a `predict_video` result as JSON to `path`, atomically. Returns `path`."""
    return write_json_atomically(path, prediction)
