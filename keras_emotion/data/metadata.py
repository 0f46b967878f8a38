"""What the shards of a preprocessed corpus folder say about their clips: class names (from
the folder's `data.manifest.Manifest`, else the clips' label names), labels and batch counts, for
training, evaluation and ablation.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import tensorflow as tf

from keras_emotion.data import schema
from keras_emotion.data.config import InputConfig
from keras_emotion.data.manifest import read_manifest
from keras_emotion.data.pipeline import list_shards


def class_names_by_label(labels: Iterable[tuple], source: str, num_classes: int = 0) -> list:
    """The class names of (label, label_name) pairs, in label order (at least `num_classes`).

    Raises:
        ValueError: a class index below `num_classes` or the largest label is never named
            (naming `source`).
    """
    names_by_label = dict(labels)
    expected = max(num_classes, max(names_by_label, default=-1) + 1)
    missing = sorted(set(range(expected)) - set(names_by_label))
    if missing:
        raise ValueError(f"no clip of class index {missing} in {source!r} and no {schema.MANIFEST_NAME} to name them")
    return [names_by_label[label] for label in range(expected)]


def read_class_names(input_config: InputConfig, num_classes: int) -> list:
    """The class names: the manifest's "class_names", else the `label_name`s of the clips.

    Raises:
        ValueError: the number of names differs from `num_classes`, or without a manifest
            some class index never occurs in the shards (naming the pattern).
    """
    manifest = read_manifest(input_config)
    if manifest is not None:
        class_names = list(manifest.class_names)
    else:
        labels = ((label, name) for label, name, _ in read_labels(list_shards(input_config)))
        class_names = class_names_by_label(labels, input_config.resolved_pattern, num_classes)
    if len(class_names) != num_classes:
        raise ValueError(
            f"{input_config.resolved_pattern!r} has {len(class_names)} classes {class_names} "
            f"but the model has num_classes={num_classes}"
        )
    return class_names


def batches_per_pass(input_config: InputConfig) -> int:
    """Global batches in one pass over the clips of `input_config`.

    Raises:
        ValueError: there are fewer clips than one batch and partial batches are dropped.
    """
    num_clips = sum(1 for _ in read_labels(list_shards(input_config)))
    batch_size = input_config.global_batch_size
    batches = num_clips // batch_size if input_config.drop_remainder else -(-num_clips // batch_size)
    if batches < 1:
        raise ValueError(
            f"{input_config.resolved_pattern!r} holds {num_clips} clips, fewer than one batch "
            f"of global_batch_size={batch_size}"
        )
    return batches


def read_labels(shard_paths: list) -> Iterator[tuple]:
    """Yields (label, label_name, clip record) of every clip in the shards, in order; the
    record is a dict of the clip's "clip_id", "source" and "subject" (str)."""

    def clip_labels(serialized):
        clip = schema.parse_clip(serialized)
        return clip["label"], clip["label_name"], clip["clip_id"], clip["source"], clip["subject"]

    records = tf.data.TFRecordDataset(shard_paths)
    for label, name, clip_id, source, subject in records.map(clip_labels).as_numpy_iterator():
        yield int(label), name.decode("utf-8"), {
            "clip_id": clip_id.decode("utf-8"),
            "source": source.decode("utf-8"),
            "subject": subject.decode("utf-8"),
        }
