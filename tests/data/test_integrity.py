"""Shards and manifests checked before training or evaluation: a damaged shard or an
unfinished preprocessing run is named up front, with what to do."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

from keras_emotion.data.config import InputConfig
from keras_emotion.data.integrity import DataIntegrityError, count_records, verify_shards
from keras_emotion.models import ModelConfig
from keras_emotion.training.config import TrainConfig
from keras_emotion.training.task import train

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
RECORDS = [b"first record", b"second, longer record", b"third"]
CK48_CLASSES = ["anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"]


def write_records(path, records=RECORDS) -> str:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return str(path)


def flip_byte(path, offset: int) -> None:
    with open(path, "r+b") as file:
        file.seek(offset)
        byte = file.read(1)
        file.seek(offset)
        file.write(bytes([byte[0] ^ 0xFF]))


def test_records_are_counted_and_truncated_or_flipped_shards_named(tmp_path):
    path = write_records(tmp_path / "train-00000.tfrecord")
    assert count_records(path) == 3
    flip_byte(path, 12 + 3)  # inside the data of the first record (after length and its CRC)
    with pytest.raises(DataIntegrityError) as flipped:
        count_records(path)
    assert str(flipped.value).startswith(f"{path}: corrupt TFRecord shard (")
    assert str(flipped.value).endswith(
        "); delete it and rerun preprocess.py with the same arguments to write its clips again"
    )
    truncated = write_records(tmp_path / "val-00000.tfrecord")
    os.truncate(truncated, os.path.getsize(truncated) - 7)
    with pytest.raises(DataIntegrityError, match=rf"^{truncated}: corrupt TFRecord shard \(.*truncated"):
        verify_shards([truncated])


def test_an_incomplete_manifest_is_refused_unless_allowed_and_counts_must_match(tmp_path):
    path = write_records(tmp_path / "train-00000.tfrecord")
    shards = [{"file": "train-00000.tfrecord", "split": "train", "clips": 3}]
    manifest = {"class_names": ["a", "b"], "complete": False, "num_clips": 3, "shards": shards}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataIntegrityError) as refused:
        verify_shards([path])
    assert str(refused.value) == (
        f"{tmp_path / 'manifest.json'}: preprocessing did not finish (\"complete\": false, 3 clips written so "
        "far); rerun preprocess.py with the same arguments to finish it, or pass --allow_incomplete to use the "
        "clips written so far"
    )
    with pytest.warns(UserWarning, match=r"did not finish .*; using them \(allow_incomplete\)"):
        verify_shards([path], allow_incomplete=True)

    manifest.update(complete=True, shards=[{"file": "train-00000.tfrecord", "split": "train", "clips": 4}])
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataIntegrityError) as miscounted:
        verify_shards([path])
    assert str(miscounted.value) == (
        f"{path}: 3 records, but {tmp_path / 'manifest.json'} lists 4; rerun preprocess.py into a new output folder"
    )


def copy_shards(source: str, destination: pathlib.Path, manifest: dict = None) -> pathlib.Path:
    """The shards of `source` copied into `destination`, with `manifest` as manifest.json."""
    destination.mkdir()
    for name in os.listdir(source):
        shutil.copy(os.path.join(source, name), destination)
    if manifest is not None:
        (destination / "manifest.json").write_text(json.dumps(manifest))
    return destination


def test_a_corrupt_validation_shard_stops_training_before_the_first_epoch(ck48_raw_tfrecords, tmp_path):
    val_dir = copy_shards(ck48_raw_tfrecords, tmp_path / "val")
    damaged = str(val_dir / "train-00001.tfrecord")
    flip_byte(damaged, os.path.getsize(damaged) // 2)
    data = dict(num_frames=3, image_size=16, global_batch_size=8)
    config = TrainConfig(
        train_data=InputConfig(ck48_raw_tfrecords, training=True, **data),
        val_data=InputConfig(str(val_dir), **data),
        model=ModelConfig(num_classes=7, num_frames=3, image_size=16),
        epochs=1,
        output_dir=str(tmp_path / "run"),
    )
    with pytest.raises(DataIntegrityError, match=rf"^{damaged}: corrupt TFRecord shard \("):
        train(config, verbose=0)
    assert os.listdir(tmp_path / "run") == [], "nothing written, the lock released"


def run_script(name: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / name), *arguments],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=120,
    )


def test_train_script_refuses_an_unfinished_preprocessing_run(ck48_raw_tfrecords, tmp_path):
    shards = [{"file": name, "split": "train", "clips": 24} for name in sorted(os.listdir(ck48_raw_tfrecords))]
    manifest = {"complete": False, "num_clips": 13, "class_names": CK48_CLASSES, "shards": shards}
    data = copy_shards(ck48_raw_tfrecords, tmp_path / "data", manifest)
    result = run_script(
        "train.py", f"--data={data}", "--val_split=", "--num_frames=3", "--image_size=16",
        f"--output_dir={tmp_path / 'run'}",
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.splitlines()[-1] == (
        f"train: {data / 'manifest.json'}: preprocessing did not finish (\"complete\": false, 13 clips written so "
        "far); rerun preprocess.py with the same arguments to finish it, or pass --allow_incomplete to use the "
        "clips written so far"
    )
    assert not (tmp_path / "run" / "history.csv").exists()


def test_evaluate_script_names_a_truncated_shard(tiny_trained_model_dir, ck48_raw_tfrecords, tmp_path):
    data = copy_shards(ck48_raw_tfrecords, tmp_path / "data")
    truncated = data / "train-00002.tfrecord"
    os.truncate(truncated, os.path.getsize(truncated) // 3)
    result = run_script(
        "evaluate.py", f"--model={tiny_trained_model_dir}", f"--data={data}", "--split=train",
        f"--output_dir={tmp_path / 'eval'}",
    )
    assert result.returncode == 1
    assert f"{truncated}: corrupt TFRecord shard (" in result.stderr
    assert not (tmp_path / "eval").exists()
