"""The README's main job (scripts/demo.py) end to end with tiny settings: every stage's outputs
exist and parse."""

import csv
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
import tensorflow as tf

from keras_emotion.data import schema
from keras_emotion.data.demo import CLASS_NAMES
from keras_emotion.data.emotions import EMOTIONS

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# An INFO line of TensorFlow or absl (Python or C++), or absl's notice before its C++ logging starts.
INFO_LINE = re.compile(r"^I\d{4} |^INFO|^W\d{4} |^WARNING: All log messages", re.MULTILINE)


@pytest.fixture(scope="module")
def demo_process(tmp_path_factory):
    """(output folder, finished process) of the demo job, with scripts/run_demo.sh's
    environment: 2 + 1 clips of 4 frames per class, 1 epoch at 32 px."""
    output_dir = tmp_path_factory.mktemp("demo")
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "demo.py"), f"--output_dir={output_dir}", "--num_train=2",
         "--num_val=1", "--frames=4", "--num_frames=2", "--image_size=32", "--epochs=1", "--batch_size=4"],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return output_dir, result


@pytest.fixture(scope="module")
def demo_run(demo_process):
    """(output folder, stdout) of the demo job."""
    output_dir, result = demo_process
    return output_dir, result.stdout


def test_the_job_prints_no_info_line(demo_process):
    _, result = demo_process
    assert not INFO_LINE.search(result.stdout), result.stdout[-3000:]
    assert not INFO_LINE.search(result.stderr), result.stderr[-3000:]


def test_every_stage_reports_where_its_outputs_are(demo_run):
    output_dir, stdout = demo_run
    stages = [line.split("(")[0].strip() for line in stdout.splitlines() if line.startswith("=== ")]
    assert stages == ["=== 1. corpus", "=== 2. preprocess", "=== 3. train", "=== 4. evaluate", "=== 5. export",
                      "=== 6. predict", "=== 7. shipped model"]
    assert "12 clips: 12 written" in stdout
    assert f"report: {output_dir / 'evaluation' / 'evaluation.json'}" in stdout
    assert f"prediction: {output_dir / 'prediction.json'}" in stdout
    assert f"Fig. 2: {output_dir / 'shipped' / 'fig2.png'}" in stdout
    assert "demo done in" in stdout and "validation accuracy" in stdout


def test_corpus_and_tfrecords(demo_run):
    output_dir, _ = demo_run
    corpus = json.loads((output_dir / "corpus" / "corpus.json").read_text())
    assert corpus["parameters"]["num_train"] == 2 and len(corpus["clips"]) == 12
    manifest = json.loads((output_dir / "tfrecords" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["class_names"] == list(CLASS_NAMES)
    for split, count in (("train", 8), ("val", 4)):
        records = tf.data.TFRecordDataset(tf.io.gfile.glob(schema.shard_pattern(str(output_dir / "tfrecords"), split)))
        clips = [schema.parse_clip(serialized) for serialized in records]
        assert len(clips) == count
        assert all(int(clip["num_frames"]) == 4 and clip["split"].numpy() == split.encode() for clip in clips)


def test_training_evaluation_and_export(demo_run):
    output_dir, _ = demo_run
    info = json.loads((output_dir / "train" / "trained" / "model_info.json").read_text())
    assert info["class_names"] == list(CLASS_NAMES)
    assert info["model_config"]["backbone"] == "mini_xception" and info["model_config"]["spatial"] == "sa"
    with open(output_dir / "train" / "history.csv", newline="") as file:
        assert len(list(csv.DictReader(file))) == 1
    evaluation = json.loads((output_dir / "evaluation" / "evaluation.json").read_text())
    assert evaluation["num_examples"] == 4 and evaluation["sampling"] == "all"
    assert sorted(clip["label"] for clip in evaluation["clips"]) == sorted(CLASS_NAMES)
    assert (output_dir / "evaluation" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    served = tf.saved_model.load(str(output_dir / "serving" / "emotion" / "1"))
    assert {"serving_default", "encoded_frames", "tf_example"} <= set(served.signatures)


def test_prediction_on_the_demo_sequence(demo_run):
    output_dir, _ = demo_run
    prediction = json.loads((output_dir / "prediction.json").read_text())
    assert prediction["source"] == str(output_dir / "corpus" / "demo_sequence.avi")
    assert prediction["model"]["format"] == "saved_model"
    assert prediction["model"]["class_names"] == list(CLASS_NAMES)
    (track,) = prediction["tracks"]
    assert track["windows"] and all(window["label"] in CLASS_NAMES for window in track["windows"])
    assert track["last_frame"] - track["first_frame"] + 1 == track["num_frames"] > 100


def test_the_shipped_model_on_the_demo_sequence(demo_run):
    output_dir, _ = demo_run
    prediction = json.loads((output_dir / "shipped" / "prediction.json").read_text())
    assert prediction["model"]["class_names"] == list(EMOTIONS)
    (track,) = prediction["tracks"]
    assert track["windows"] and all(window["label"] in EMOTIONS for window in track["windows"])
    assert (output_dir / "shipped" / "fig2.png").read_bytes()[:4] == b"\x89PNG"
