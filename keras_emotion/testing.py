"""Helpers of the tests and benchmarks (not used by the library itself): clip shards written
directly, CK+48 sequences as clips without face alignment, and a reference of FER+ targets."""

from __future__ import annotations

import csv
import os
from typing import Optional, Sequence

import cv2
import numpy as np
import tensorflow as tf

from keras_emotion.data import schema
from keras_emotion.data.datasets import load_dataset
from keras_emotion.files import atomic_write


def write_shards(
    clips: Sequence[schema.AlignedClip], directory: str, split: str, num_shards: int = 1
) -> list:
    """Writes `clips` round-robin into `<directory>/<split>-NNNNN.tfrecord` shards.

    Each shard is written atomically (`files.atomic_write`).

    Returns:
        The shard paths.
    """
    paths = []
    for shard in range(num_shards):
        path = os.path.join(directory, schema.shard_name(split, shard))
        with atomic_write(path) as temp, tf.io.TFRecordWriter(temp) as writer:
            for clip in clips[shard::num_shards]:
                writer.write(schema.serialize_clip(clip))
        paths.append(path)
    return paths


def ck48_raw_clips(
    ck48_dir: str, frames_per_clip: Optional[int] = None, max_clips: Optional[int] = None
) -> list:
    """CK+48 sequences as clips for tests and benchmarks, without face alignment.

    The 48x48 grayscale crops are already faces; each is resized to IMAGE_SIZE x IMAGE_SIZE and
    stored as a grayscale JPEG (the pipeline decodes it to 3 channels).

    Args:
        ck48_dir: the `CK+48` folder (`<class>/S###_###_########.png`).
        frames_per_clip: None gives one clip per sequence (its 3 frames). A number L gives, for
            each sequence, a clip of L frames: that sequence followed by the same subject's next
            sequences, looping over them; label and id (+ "_xL") are those of the first sequence.
        max_clips: keep only the first clips (sequences in `datasets.list_ck48` order).

    Returns:
        A list of `schema.AlignedClip` with split "train", labels indexing the sorted class names.
    """
    dataset = load_dataset("ck48", ck48_dir)
    jpeg_cache = {}

    def jpeg(path: str) -> bytes:
        if path not in jpeg_cache:
            image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
            if image is None:
                raise ValueError(f"cannot read image {path}")
            face = cv2.resize(image, (schema.IMAGE_SIZE, schema.IMAGE_SIZE), interpolation=cv2.INTER_CUBIC)
            jpeg_cache[path] = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        return jpeg_cache[path]

    clips = []
    for source in dataset.clips[:max_clips]:
        paths, clip_id = source.path, source.clip_id
        if frames_per_clip is not None:
            subject_clips = [clip for clip in dataset.clips if clip.subject == source.subject]
            start = subject_clips.index(source)
            chained = [path for clip in subject_clips[start:] + subject_clips[:start] for path in clip.path]
            paths = [chained[i % len(chained)] for i in range(frames_per_clip)]
            clip_id = f"{clip_id}_x{frames_per_clip}"
        clips.append(
            schema.AlignedClip(
                clip_id=clip_id,
                label=dataset.class_names.index(source.label_name),
                label_name=source.label_name,
                source=source.display_path,
                subject=source.subject,
                split="train",
                fps=0.0,
                frames_jpeg=[jpeg(path) for path in paths],
                detected=np.ones(len(paths), dtype=bool),
                landmarks=np.zeros((len(paths), 0, 2), dtype=np.float32),
            )
        )
    return clips


FERPLUS_VOTE_COLUMNS = {
    "angry": "votes_anger", "disgust": "votes_disgust", "fear": "votes_fear", "happy": "votes_happiness",
    "sad": "votes_sadness", "surprise": "votes_surprise", "neutral": "votes_neutral",
}
"""The `ferplus_labels.csv` vote column of each emotion (FER+ names its classes differently)."""


def ferplus_reference_targets(fer_dir: str, paths, labels, class_names, weight: float) -> np.ndarray:
    """(1 - weight) x one-hot + weight x FER+ vote distribution of each image, read from
    `fer_dir/ferplus_labels.csv` row by row: float64 (n, E), a plain reference for the tests.
    An image without votes for `class_names` keeps its one-hot label."""
    with open(os.path.join(fer_dir, "ferplus_labels.csv"), newline="") as file:
        rows = {row["file"]: row for row in csv.DictReader(file)}
    expected = []
    for path, label in zip(paths, labels):
        row = rows[os.path.relpath(path, fer_dir)]
        votes = np.array([float(row[FERPLUS_VOTE_COLUMNS[name]]) for name in class_names])
        one_hot = np.eye(len(class_names))[label]
        expected.append((1 - weight) * one_hot + weight * (votes / votes.sum() if votes.sum() else one_hot))
    return np.array(expected)
