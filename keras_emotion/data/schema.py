"""The TFRecord schema of an aligned face clip: one module for writer and reader.

Each clip is one `tf.train.SequenceExample`:

context
    clip_id      bytes    unique id of the clip inside its dataset
    label        int64    class index into the manifest's `class_names`
    label_name   bytes    class name
    source       bytes    path of the video / frame folder it came from
    subject      bytes    subject id ("" when the dataset has none)
    split        bytes    split name ("train", "val", ...)
    num_frames   int64    F, the number of frames in the feature lists
    fps          float    frames per second of the source (0 when unknown)

feature lists (one entry per frame, F entries each)
    frames       bytes    JPEG of the aligned RGB face, IMAGE_SIZE x IMAGE_SIZE
    detected     int64    1 where a face was detected in this frame, 0 where the
                          box was borrowed from the nearest frame with a face
    landmarks    float    K*2 values, the (x, y) landmarks in the aligned frame

`serialize_clip` (NumPy side, used by preprocessing) and `parse_clip` (graph side,
used by tf.data and the exported SavedModel) are the only two places that know
these names.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Optional, Sequence

import numpy as np

SCHEMA_VERSION = 1
IMAGE_SIZE = 256
MANIFEST_NAME = "manifest.json"
SHARD_SUFFIX = ".tfrecord"
SPLIT_NAME = re.compile(r"^[A-Za-z0-9_]+$")  # what a split may be called (it starts shard names)
_SHARD_NAME = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<index>\d{5})" + re.escape(SHARD_SUFFIX) + "$")


@dataclasses.dataclass
class AlignedClip:
    """One preprocessed clip, ready to be serialised.

    Attributes:
        clip_id: unique id of the clip within its dataset.
        label: class index.
        label_name: class name.
        source: path of the input video or frame folder.
        subject: subject id, "" when unknown.
        split: split name.
        fps: frames per second of the source, 0.0 when unknown.
        frames_jpeg: F JPEG-encoded aligned faces (IMAGE_SIZE x IMAGE_SIZE x 3).
        detected: bool array (F,), True where the face was detected in that frame.
        landmarks: float32 array (F, K, 2) of landmarks in aligned-frame pixels.
    """

    clip_id: str
    label: int
    label_name: str
    source: str
    subject: str
    split: str
    fps: float
    frames_jpeg: list
    detected: np.ndarray
    landmarks: np.ndarray

    @property
    def num_frames(self) -> int:
        return len(self.frames_jpeg)


def serialize_clip(clip: AlignedClip) -> bytes:
    """Serialises `clip` to a `tf.train.SequenceExample` string."""
    import tensorflow as tf

    num_frames = clip.num_frames
    detected = np.asarray(clip.detected, dtype=bool).reshape(-1)
    landmarks = np.asarray(clip.landmarks, dtype=np.float32)
    if num_frames == 0:
        raise ValueError(f"clip {clip.clip_id!r} has no frames")
    if detected.shape[0] != num_frames or landmarks.shape[0] != num_frames:
        raise ValueError(
            f"clip {clip.clip_id!r}: {num_frames} frames but {detected.shape[0]} detected "
            f"flags and {landmarks.shape[0]} landmark sets"
        )

    def _bytes(value: str | bytes) -> tf.train.Feature:
        if isinstance(value, str):
            value = value.encode("utf-8")
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def _int(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    context = tf.train.Features(
        feature={
            "clip_id": _bytes(clip.clip_id),
            "label": _int(clip.label),
            "label_name": _bytes(clip.label_name),
            "source": _bytes(clip.source),
            "subject": _bytes(clip.subject),
            "split": _bytes(clip.split),
            "num_frames": _int(num_frames),
            "fps": tf.train.Feature(float_list=tf.train.FloatList(value=[float(clip.fps)])),
        }
    )
    feature_lists = tf.train.FeatureLists(
        feature_list={
            "frames": tf.train.FeatureList(feature=[_bytes(jpeg) for jpeg in clip.frames_jpeg]),
            "detected": tf.train.FeatureList(feature=[_int(flag) for flag in detected]),
            "landmarks": tf.train.FeatureList(
                feature=[
                    tf.train.Feature(float_list=tf.train.FloatList(value=points.reshape(-1)))
                    for points in landmarks
                ]
            ),
        }
    )
    example = tf.train.SequenceExample(context=context, feature_lists=feature_lists)
    return example.SerializeToString()


def _context_spec():
    import tensorflow as tf

    return {
        "clip_id": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "label_name": tf.io.FixedLenFeature([], tf.string),
        "source": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "subject": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "split": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "num_frames": tf.io.FixedLenFeature([], tf.int64),
        "fps": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
    }


def _sequence_spec():
    import tensorflow as tf

    return {
        "frames": tf.io.FixedLenSequenceFeature([], tf.string),
        "detected": tf.io.FixedLenSequenceFeature([], tf.int64),
        "landmarks": tf.io.RaggedFeature(tf.float32),
    }


def parse_clip(serialized, features: Optional[Sequence[str]] = None):
    """Parses one serialised clip with standard TensorFlow ops (graph-safe).

    Args:
        serialized: scalar string tensor, a `SequenceExample` written by `serialize_clip`.
        features: names of the outputs wanted (below); None parses them all. Features left out
            are not parsed at all (the input pipeline reads only `frames`, `label` and `clip_id`).

    Returns:
        A dict of tensors: `clip_id`, `label` (int32), `label_name`, `source`, `subject`,
        `split` (scalar strings / ints), `num_frames` (int32), `fps` (float32),
        `frames` (F,) JPEG strings, `detected` (F,) bool and `landmarks` (F, K, 2) float32.
        The JPEGs are NOT decoded, so that a sampler can choose frames first.

    Raises:
        ValueError: a name in `features` is not one of the outputs above.
    """
    import tensorflow as tf

    context_spec, sequence_spec = _context_spec(), _sequence_spec()
    if features is not None:
        known = {*context_spec, *sequence_spec}
        unknown = sorted(set(features) - known)
        if unknown:
            raise ValueError(f"unknown clip features {unknown}; known: {sorted(known)}")
        context_spec = {name: spec for name, spec in context_spec.items() if name in features}
        sequence_spec = {name: spec for name, spec in sequence_spec.items() if name in features}
    context, sequence = tf.io.parse_single_sequence_example(
        serialized, context_features=context_spec, sequence_features=sequence_spec
    )
    parsed = {**context, **sequence}
    for name in ("label", "num_frames"):
        if name in parsed:
            parsed[name] = tf.cast(parsed[name], tf.int32)
    if "detected" in parsed:
        parsed["detected"] = tf.cast(parsed["detected"], tf.bool)
    if "landmarks" in parsed:
        landmarks = parsed["landmarks"].to_tensor()
        parsed["landmarks"] = tf.reshape(landmarks, [tf.shape(landmarks)[0], -1, 2])
    return parsed


def shard_name(split: str, index: int) -> str:
    """File name of shard `index` of `split`: `<split>-NNNNN.tfrecord`."""
    return f"{split}-{index:05d}{SHARD_SUFFIX}"


def parse_shard_name(name: str) -> Optional[tuple]:
    """(split, index) of a file name written by `shard_name`, or None for any other name."""
    match = _SHARD_NAME.match(name)
    return None if match is None else (match.group("split"), int(match.group("index")))


def shard_pattern(directory: str, split: str = "*") -> str:
    """Glob pattern of the finished shards of `split` in `directory`."""
    return os.path.join(directory, f"{split}-*{SHARD_SUFFIX}")
