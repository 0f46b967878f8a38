"""Tests of keras_emotion.data.metadata: class names and clip counts of a corpus folder."""

import os

import pytest

from keras_emotion.data import schema
from keras_emotion.data.config import InputConfig
from keras_emotion.data.metadata import batches_per_pass, read_class_names

NUM_FRAMES, IMAGE_SIZE = 3, 32


def test_class_names_come_from_the_manifest_or_the_clips(ck48_raw_tfrecords, ck48_tfrecords):
    raw = InputConfig(ck48_raw_tfrecords, num_frames=NUM_FRAMES, image_size=IMAGE_SIZE)
    assert read_class_names(raw, 3) == ["anger", "contempt", "disgust"]
    with pytest.raises(ValueError, match=r"no clip of class index \[3, 4, 5, 6\] in .*ck48_raw.*manifest.json"):
        read_class_names(raw, 7)
    aligned = InputConfig(ck48_tfrecords, num_frames=NUM_FRAMES, image_size=IMAGE_SIZE)
    with pytest.raises(ValueError, match=r"has 7 classes .* but the model has num_classes=5"):
        read_class_names(aligned, 5)


def test_too_few_clips_for_one_batch_is_reported(ck48_raw_tfrecords):
    shard = os.path.join(ck48_raw_tfrecords, "train-00000.tfrecord")
    config = InputConfig(shard, training=True, num_frames=NUM_FRAMES, image_size=IMAGE_SIZE, global_batch_size=64)
    with pytest.raises(ValueError, match=r"holds 24 clips, fewer than one batch of global_batch_size=64"):
        batches_per_pass(config)
    assert batches_per_pass(InputConfig(shard, global_batch_size=5)) == 5  # ceil(24 / 5) at evaluation


def test_parse_shard_name_inverts_shard_name():
    assert schema.parse_shard_name(schema.shard_name("val", 12)) == ("val", 12)
    for other in ("val-12.tfrecord", ".val-00012.tfrecord.tmp", "bad split-00000.tfrecord", "manifest.json"):
        assert schema.parse_shard_name(other) is None
