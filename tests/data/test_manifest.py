"""Tests of keras_emotion.data.manifest: the typed manifest.json of a corpus folder."""

import json
import os

import pytest

from keras_emotion.data import schema
from keras_emotion.data.config import InputConfig
from keras_emotion.data.faces import AlignmentConfig
from keras_emotion.data.manifest import Manifest, ShardSummary, manifest_path, read_manifest, write_manifest


def test_manifest_is_found_beside_the_shards(ck48_tfrecords):
    assert manifest_path(InputConfig(ck48_tfrecords, split="val")) == os.path.join(ck48_tfrecords, "manifest.json")
    assert read_manifest(ck48_tfrecords) == read_manifest(InputConfig(ck48_tfrecords))
    assert read_manifest(os.path.dirname(ck48_tfrecords)) is None


def test_manifest_of_preprocessing_is_typed_and_written_back_unchanged(ck48_tfrecords, tmp_path):
    with open(os.path.join(ck48_tfrecords, "manifest.json")) as file:
        stored = json.load(file)
    manifest = read_manifest(ck48_tfrecords)
    assert manifest.class_names == tuple(stored["class_names"]) and len(manifest.class_names) == 7
    assert manifest.alignment == AlignmentConfig(upsample=0)  # the fixture's preprocessing
    assert manifest.image_size == stored["image_size"] == 256
    assert manifest.complete and manifest.num_clips == 264 == sum(shard.clips for shard in manifest.shards)
    assert manifest.shards[0] == ShardSummary(**stored["shards"][0])
    write_manifest(str(tmp_path), manifest)
    assert json.loads((tmp_path / "manifest.json").read_text()) == stored


def test_a_manifest_without_preprocessing_has_an_unknown_alignment(tmp_path):
    (tmp_path / schema.MANIFEST_NAME).write_text(json.dumps({"class_names": ["a", "b"], "complete": False}))
    manifest = read_manifest(str(tmp_path))
    assert manifest == Manifest(class_names=("a", "b"), complete=False)
    assert manifest.alignment is None and manifest.image_size is None and manifest.preprocessing is None


def test_a_malformed_manifest_is_named(tmp_path):
    path = tmp_path / schema.MANIFEST_NAME
    path.write_text(json.dumps({"complete": True}))
    with pytest.raises(ValueError, match=rf"^{path}: not a manifest of this library \(KeyError\('class_names'\)\)$"):
        read_manifest(str(tmp_path))
    path.write_text(json.dumps({"class_names": ["a"], "preprocessing": {"alignment": {"landmarks": 7}, "max_side": 9}}))
    with pytest.raises(ValueError, match=rf"^{path}: not a manifest of this library .*landmarks must be 68 or 5, got 7"):
        read_manifest(str(tmp_path))
