"""The ablation: its grid of rows, folds split by subject, a tiny run and its resumption."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_emotion.data import schema
from keras_emotion.data.integrity import verify_shards
from keras_emotion.training.ablation import (
    ABLATION_ROWS,
    METRICS_FILE,
    TABLE_FILE,
    AblationConfig,
    fold_dir,
    run_ablation,
    run_dir,
    select_rows,
    write_folds,
)
from keras_emotion.training.config import train_config

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_grid_has_the_rows_of_both_tables():
    table_1 = [row.name for row in ABLATION_ROWS if row.table == 1]
    table_2 = [row.name for row in ABLATION_ROWS if row.table == 2]
    assert table_1 == ["no_sa", "shift_2c"] + [f"sa_{h}h_p{p}" for h in (1, 2, 4) for p in ("0", "0.1", "1")]
    assert table_2 == ["lstm", "avg", "tp", "tp_sa"]
    by_name = {row.name: row for row in ABLATION_ROWS}
    assert {name: by_name[name].paper_accuracy for name in table_2} == {
        "lstm": 46.2, "avg": 46.0, "tp": 46.4, "tp_sa": 49.0
    }
    assert all(by_name[name].paper_accuracy is None for name in table_1)
    # Equal models share their runs; all others differ.
    assert by_name["no_sa"].variant == by_name["tp"].variant
    assert by_name["sa_2h_p1"].variant == by_name["tp_sa"].variant
    assert len({row.variant for row in ABLATION_ROWS}) == len(ABLATION_ROWS) - 2
    expected = {
        "shift_2c": ("shift", "tp", 2), "sa_4h_p0.1": ("sa", "tp", 4), "lstm": ("none", "lstm", 1),
        "avg": ("none", "avg", 1), "tp_sa": ("sa", "tp", 2),
    }
    for name, (spatial, temporal, heads) in expected.items():
        config = train_config(train_dir="folds", num_classes=7, backbone="vgg16", **by_name[name].model_options()).model
        assert (config.spatial, config.temporal, config.num_heads, config.backbone) == (
            spatial, temporal, heads, "vgg16"
        )
    assert by_name["sa_4h_p0.1"].model_options()["penalty"] == 0.1
    assert [row.name for row in select_rows(["tp_sa", "no_sa"])] == ["no_sa", "tp_sa"]
    with pytest.raises(ValueError, match=r"unknown ablation rows \['sa_3h'\]"):
        select_rows(["sa_3h", "tp"])


def test_runs_must_end_with_an_sgdr_cycle():
    with pytest.raises(ValueError) as error:
        AblationConfig("tfrecords", "out", epochs=12)
    assert str(error.value) == (
        "AblationConfig.epochs=12 ends 2 epochs into SGDR cycle 2 (cycles end after epochs 10, 30, ...); "
        "use epochs 10 or 30"
    )
    for epochs in (1, 5, 10, 30, 70):
        assert AblationConfig("tfrecords", "out", epochs=epochs).epochs == epochs


def _clips(path_pattern):
    """(clip_id, subject) of every record matching `path_pattern`."""
    records = tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(path_pattern)))
    parsed = records.map(lambda serialized: schema.parse_clip(serialized))
    return [(clip["clip_id"].decode(), clip["subject"].decode()) for clip in parsed.as_numpy_iterator()]


def test_folds_never_share_a_subject(ck48_raw_tfrecords, tmp_path):
    assignment = write_folds(ck48_raw_tfrecords, str(tmp_path), folds=3, split_seed=5)
    every_clip = _clips(schema.shard_pattern(ck48_raw_tfrecords))
    assert len(every_clip) == 72
    held_out = []
    for fold in range(3):
        val = _clips(schema.shard_pattern(fold_dir(str(tmp_path), fold), "val"))
        train = _clips(schema.shard_pattern(fold_dir(str(tmp_path), fold), "train"))
        assert val and train
        assert not {subject for _, subject in val} & {subject for _, subject in train}
        assert sorted(val + train) == sorted(every_clip)
        assert all(assignment["clips"][clip_id] == fold for clip_id, _ in val)
        manifest = json.loads((pathlib.Path(fold_dir(str(tmp_path), fold)) / "manifest.json").read_text())
        assert manifest["class_names"] == ["anger", "contempt", "disgust"]
        assert manifest["counts"] == {"train": len(train), "val": len(val)}
        held_out += val
    assert sorted(held_out) == sorted(every_clip)  # every clip is held out exactly once

    stamp = os.stat(os.path.join(fold_dir(str(tmp_path), 0), "val-00000.tfrecord")).st_mtime_ns
    assert write_folds(ck48_raw_tfrecords, str(tmp_path), folds=3, split_seed=5) == assignment
    assert os.stat(os.path.join(fold_dir(str(tmp_path), 0), "val-00000.tfrecord")).st_mtime_ns == stamp
    with pytest.raises(ValueError, match=r"assignment\.json: the folds there were made with"):
        write_folds(ck48_raw_tfrecords, str(tmp_path), folds=4, split_seed=5)


def test_fold_manifests_list_the_folds_own_shards(ck48_raw_tfrecords, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in os.listdir(ck48_raw_tfrecords):
        shutil.copy(os.path.join(ck48_raw_tfrecords, name), corpus)
    corpus_shards = [{"file": name, "split": "train", "clips": 24} for name in sorted(os.listdir(corpus))]
    manifest = {"complete": True, "class_names": ["anger", "contempt", "disgust"], "shards": corpus_shards}
    (corpus / "manifest.json").write_text(json.dumps(manifest))
    write_folds(str(corpus), str(tmp_path / "ablation"), folds=3, split_seed=5)
    for fold in range(3):
        verify_shards(sorted(tf.io.gfile.glob(os.path.join(fold_dir(str(tmp_path / "ablation"), fold), "*.tfrecord"))))


def test_a_tiny_ablation_writes_the_table_and_resumes(ck48_raw_tfrecords, tmp_path):
    config = AblationConfig(
        tfrecords=ck48_raw_tfrecords,
        output_dir=str(tmp_path),
        rows=["no_sa", "tp_sa"],
        folds=2,
        seeds=1,
        epochs=1,
        image_size=32,
        num_frames=3,
        attention_units=8,
        head_lr=0.01,
    )
    table_path = run_ablation(config, log=lambda line: None)
    rows = {row.name: row for row in select_rows(["no_sa", "tp_sa"])}
    assignment = json.loads((tmp_path / "folds" / "assignment.json").read_text())
    accuracies = {}
    for name, row in rows.items():
        for fold in range(2):
            metrics_path = pathlib.Path(run_dir(str(tmp_path), row, fold, 0)) / METRICS_FILE
            metrics = json.loads(metrics_path.read_text())
            assert (metrics["variant"], metrics["fold"], metrics["seed"]) == (row.variant, fold, 0)
            assert metrics["train_config"]["model"]["spatial"] == row.spatial
            assert metrics["train_config"]["epochs"] == 1
            held_out = sorted(clip_id for clip_id, index in assignment["clips"].items() if index == fold)
            assert sorted(clip["clip_id"] for clip in metrics["evaluation"]["clips"]) == held_out
            assert not (metrics_path.parent / "trained").exists()  # models are not kept by default
            accuracies.setdefault(name, []).append(100 * metrics["evaluation"]["accuracy"])
    table = pathlib.Path(table_path).read_text()
    assert pathlib.Path(table_path).name == TABLE_FILE
    for name, values in accuracies.items():
        mean, std = np.mean(values), np.std(values, ddof=1)
        line = next(line for line in table.splitlines() if line.startswith(f"| {name} |"))
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[2] == "2/2"
        assert cells[3] == f"{mean:.1f} ± {std:.1f}"
        assert cells[5] == ("49.0" if name == "tp_sa" else "-")
    assert "## Table 1" in table and "## Table 2" in table

    stamps = sorted(path.stat().st_mtime_ns for path in tmp_path.glob(f"runs/*/*/{METRICS_FILE}"))
    assert len(stamps) == 4
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "ablation.py"), f"--tfrecords={ck48_raw_tfrecords}",
         f"--output_dir={tmp_path}", "--rows=no_sa,tp_sa", "--folds=2", "--seeds=1", "--epochs=1",
         "--image_size=32", "--num_frames=3"],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(path.stat().st_mtime_ns for path in tmp_path.glob(f"runs/*/*/{METRICS_FILE}")) == stamps
    assert "| tp_sa | TP + SA (2 heads, penalty 1) | 2/2 |" in result.stdout
