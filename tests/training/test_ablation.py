"""The ablation: its grid of rows, folds split by subject, a tiny run and its resumption."""

import dataclasses
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
from keras_emotion.models import build_model
from keras_emotion.models.builder import BACKBONE_NAME, copy_head_weights
from keras_emotion.pretrained import load_pretrained
from keras_emotion.training import ablation, face_clips
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
    assert table_2 == ["lstm", "lstm_sa", "avg", "avg_sa", "max", "max_sa", "tp", "tp_sa"]
    by_name = {row.name: row for row in ABLATION_ROWS}
    assert {name: by_name[name].paper_accuracy for name in table_2} == {
        "lstm": 46.2, "lstm_sa": None, "avg": 46.0, "avg_sa": None, "max": None, "max_sa": None, "tp": 46.4,
        "tp_sa": 49.0,
    }
    for name in ("lstm_sa", "avg_sa", "max_sa", "tp_sa"):
        assert (by_name[name].spatial, by_name[name].num_heads, by_name[name].penalty) == ("sa", 2, 1.0)
    assert all(by_name[name].paper_accuracy is None for name in table_1)
    # Equal models share their runs; all others differ.
    assert by_name["no_sa"].variant == by_name["tp"].variant
    assert by_name["sa_2h_p1"].variant == by_name["tp_sa"].variant
    assert len({row.variant for row in ABLATION_ROWS}) == len(ABLATION_ROWS) - 2
    expected = {
        "shift_2c": ("shift", "tp", 2), "sa_4h_p0.1": ("sa", "tp", 4), "lstm": ("none", "lstm", 1),
        "avg": ("none", "avg", 1), "max": ("none", "max", 1), "tp_sa": ("sa", "tp", 2),
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
        clips_per_split = {split: sum(counts.values()) for split, counts in manifest["counts"].items()}
        assert clips_per_split == {"train": len(train), "val": len(val)}
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
        [sys.executable, str(REPO_ROOT / "scripts" / "ablation.py"), f"--data={ck48_raw_tfrecords}",
         f"--output_dir={tmp_path}", "--rows=no_sa,tp_sa", "--folds=2", "--seeds=1", "--epochs=1",
         "--image_size=32", "--num_frames=3"],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(path.stat().st_mtime_ns for path in tmp_path.glob(f"runs/*/*/{METRICS_FILE}")) == stamps
    assert "| tp_sa | TP + SA (2 heads, penalty 1) | 2/2 |" in result.stdout


def test_a_config_takes_images_or_the_cache_not_both():
    message = (
        "AblationConfig: give tfrecords (train end to end from images) or ck48_dir "
        "(train heads on cached backbone maps), not both"
    )
    for tfrecords, ck48_dir in ((None, None), ("tfrecords", "ck48")):
        with pytest.raises(ValueError) as error:
            AblationConfig(tfrecords, "out", ck48_dir=ck48_dir)
        assert str(error.value) == message
    with pytest.raises(ValueError, match=r"^AblationConfig.cached_views=5; expected 1..4$"):
        AblationConfig(None, "out", ck48_dir="ck48", cached_views=5)


def _run_metrics(run_id, accuracy):
    fold, seed = run_id
    return {"fold": fold, "seed": seed, "evaluation": {"accuracy": accuracy}}


def test_paired_differences_match_numpy_and_name_the_verdict():
    rng = np.random.default_rng(0)
    pairs = [(fold, seed) for fold in range(4) for seed in range(2)]
    by_name = {row.name: row for row in ABLATION_ROWS}
    tp = rng.uniform(0.5, 0.9, len(pairs))
    accuracies = {"tp_sa": tp + 0.05 + rng.normal(0, 0.01, len(pairs)), "tp": tp,
                  "avg": tp + rng.normal(0, 0.05, len(pairs)), "lstm": tp + 0.2}
    metrics_by_variant = {
        by_name[name].variant: [_run_metrics(pair, value) for pair, value in zip(pairs, values)]
        for name, values in accuracies.items()
    }
    metrics_by_variant[by_name["lstm"].variant].pop()  # a run not done yet: 7 pairs
    config = AblationConfig(None, "out", ck48_dir="ck48", rows=["tp_sa", "tp", "avg", "lstm", "max"])
    comparisons = {(c["better"], c["worse"]): c for c in ablation.paired_differences(config, metrics_by_variant)}
    assert sorted(comparisons) == [("tp", "avg"), ("tp", "lstm"), ("tp_sa", "tp")]  # no max runs
    for (better, worse), comparison in comparisons.items():
        count = 7 if worse == "lstm" else 8
        differences = 100 * (accuracies[better][:count] - accuracies[worse][:count])
        assert comparison["pairs"] == count
        assert comparison["mean"] == pytest.approx(differences.mean())
        assert comparison["std"] == pytest.approx(differences.std(ddof=1))
        assert comparison["standard_error"] == pytest.approx(differences.std(ddof=1) / np.sqrt(count))
        assert comparison["wins"] == np.sum(differences > 0)
    assert comparisons[("tp_sa", "tp")]["verdict"] == "holds"
    assert comparisons[("tp", "lstm")]["verdict"] == "reversed"
    assert comparisons[("tp", "avg")]["verdict"] == "within the spread"


@pytest.fixture(scope="module")
def cached_ablation(ck48_dir, tmp_path_factory):
    """Rows tp and tp_sa on 2 of 10 CK+48 folds, 1 seed, 10 epochs, from the shipped backbone's
    maps of 2 views."""
    config = AblationConfig(
        None, str(tmp_path_factory.mktemp("cached_ablation")), ck48_dir=ck48_dir, cached_views=2,
        rows=["tp", "tp_sa"], max_folds=2, seeds=1, epochs=10,
    )
    lines = []
    table_path = run_ablation(config, log=lines.append)
    return config, table_path, lines


def test_heads_on_cached_maps_learn_unseen_subjects_and_write_the_tables(cached_ablation):
    config, table_path, lines = cached_ablation
    assert len(lines) == 4 and lines[0].startswith("[1/4, ")
    output = pathlib.Path(config.output_dir)
    assert sorted(os.listdir(output / ablation.FEATURE_CACHE_DIR)) == ["key.json", "maps.npy"]
    key = json.loads((output / ablation.FEATURE_CACHE_DIR / "key.json").read_text())
    assert key["backbone"] == "dlib_resnet_256" and key["views"] == [[1.0, False], [1.0, True]]
    assert key["alignment"]["eye_level"] == 0.38
    table = pathlib.Path(table_path).read_text()
    summary = json.loads((output / ablation.SUMMARY_FILE).read_text())
    for row in summary["rows"]:
        runs = [json.loads((pathlib.Path(run_dir(config.output_dir, select_rows([row["name"]])[0], fold, 0))
                            / METRICS_FILE).read_text()) for fold in (0, 1)]
        accuracies = [100 * run["evaluation"]["accuracy"] for run in runs]
        assert row["accuracy_mean"] == pytest.approx(np.mean(accuracies))
        assert min(accuracies) > 60  # 7 classes: chance is 14%
        assert all(run["train_config"]["model"]["backbone"] == "dlib_resnet_256" for run in runs)
        assert all(run["epochs_run"] == 10 for run in runs)
        line = next(line for line in table.splitlines() if line.startswith(f"| {row['name']} |"))
        assert f"| 2/2 | {np.mean(accuracies):.1f} ± {np.std(accuracies, ddof=1):.1f} |" in line
    assert "CK+48 clips are 3 frames long" in table
    assert "| tp_sa > tp | 2 |" in table
    png = (output / ablation.PLOT_FILE).read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_the_cached_head_on_the_backbone_scores_the_held_out_images_alike(cached_ablation):
    """A head trained on maps, put on the backbone, classifies the fold's images as it
    classified their maps."""
    config, _, _ = cached_ablation
    cached = ablation.cached_folds(config)
    row = select_rows(["tp_sa"])[0]
    train_config = ablation.make_train_config(config, row, 0, 0, 7, cached)
    train_config = dataclasses.replace(train_config, epochs=2)
    held_out = np.flatnonzero(cached.fold_of_clip == 0)
    model, _ = ablation.train_head_on_maps(train_config, cached.clips.subset(np.flatnonzero(cached.fold_of_clip != 0)))
    from_maps = face_clips.evaluate_clips(model, cached.clips.subset(held_out))

    shipped = load_pretrained().model
    on_images = build_model(train_config.model, backbone=shipped.get_layer(BACKBONE_NAME))
    copy_head_weights(model, on_images)
    images, _, _ = face_clips.ck48_clips(config.ck48_dir, cached.image_size, config.folds, config.split_seed)
    from_images = face_clips.evaluate_clips(on_images, images.subset(held_out))
    assert from_images["num_examples"] == from_maps["num_examples"] == len(held_out)
    assert from_images["confusion_matrix"] == from_maps["confusion_matrix"]


def test_a_rerun_skips_finished_runs_and_another_split_is_refused(cached_ablation):
    config, _, _ = cached_ablation
    stamps = sorted(path.stat().st_mtime_ns for path in pathlib.Path(config.output_dir).glob(f"runs/*/*/{METRICS_FILE}"))
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "ablation.py"), f"--ck48_dir={config.ck48_dir}",
         f"--output_dir={config.output_dir}", "--cached_views=2", "--rows=tp,tp_sa", "--max_folds=2", "--seeds=1",
         "--epochs=10"],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(path.stat().st_mtime_ns for path in pathlib.Path(config.output_dir).glob(f"runs/*/*/{METRICS_FILE}")) == stamps
    assert "| tp_sa | TP + SA (2 heads, penalty 1) | 2/2 |" in result.stdout

    other_split = dataclasses.replace(config, split_seed=1)
    with pytest.raises(ValueError) as error:
        ablation.cached_folds(other_split)
    assignment = os.path.join(config.output_dir, "folds", "assignment.json")
    assert str(error.value) == (
        f"{assignment}: the folds there were made with "
        f"{{'ck48_dir': '{os.path.abspath(config.ck48_dir)}', 'folds': 10, 'split_seed': 0}}, not "
        f"{{'ck48_dir': '{os.path.abspath(config.ck48_dir)}', 'folds': 10, 'split_seed': 1}}; use another output folder"
    )
