"""Evaluation on all frames of every clip: matches the model run clip by clip, masks included."""

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

from keras_emotion.data.config import InputConfig
from keras_emotion.data.pipeline import build_clip_id_dataset, build_dataset
from keras_emotion.models import ModelConfig, build_model, with_any_number_of_frames
from keras_emotion.training.config import TrainConfig
from keras_emotion.training.evaluation import (
    CONFUSION_MATRIX_FILE,
    EVALUATION_FILE,
    evaluate,
    evaluate_model_dir,
    evaluation_input,
)
from keras_emotion.training.task import load_trained_model, train

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGE_SIZE = 32


@pytest.fixture(scope="module")
def trained_dir(ck48_raw_tfrecords, tmp_path_factory) -> str:
    """A tiny SA + TP model trained for one epoch on the raw CK+48 shards (3 classes: the
    first 72 CK+48 clips are anger, contempt and disgust; 3- and 20-frame clips)."""
    output_dir = tmp_path_factory.mktemp("evaluation_run")
    config = TrainConfig(
        train_data=InputConfig(
            ck48_raw_tfrecords, training=True, num_frames=3, image_size=IMAGE_SIZE, global_batch_size=8, seed=1
        ),
        model=ModelConfig(
            num_classes=3, num_frames=3, image_size=IMAGE_SIZE, spatial="sa", num_heads=2, attention_units=8
        ),
        epochs=1,
        steps_per_epoch=3,
        head_lr=0.01,
        output_dir=str(output_dir),
    )
    train(config, verbose=0)
    return str(output_dir / "trained")


def _clip_by_clip(trained, input_config):
    """{clip id: (label, p(c))} from the model rebuilt for each clip's own length T (no padding),
    fed the same frames one clip at a time."""
    single = dataclasses.replace(input_config, global_batch_size=1)
    models = {}
    results = {}
    batches = tf.data.Dataset.zip(build_dataset(single), build_clip_id_dataset(single))
    for (features, label), clip_id in batches:
        length = int(features["frames"].shape[1])
        assert float(tf.reduce_min(features["frame_mask"])) == 1.0
        if length not in models:
            config = ModelConfig(**{**trained.info.model_config.to_dict(), "num_frames": length})
            models[length] = build_model(config)
            models[length].set_weights(trained.model.get_weights())
        probabilities = models[length](features, training=False)["probabilities"].numpy()[0]
        results[clip_id.numpy()[0].decode()] = (int(label.numpy()[0]), probabilities)
    return results


def test_evaluation_matches_the_model_run_clip_by_clip(trained_dir, ck48_raw_tfrecords, tmp_path):
    output_dir = tmp_path / "evaluation"
    report = evaluate_model_dir(trained_dir, ck48_raw_tfrecords, "train", str(output_dir), batch_size=8)

    trained = load_trained_model(trained_dir)
    reference = _clip_by_clip(trained, evaluation_input(trained, ck48_raw_tfrecords, "train", 8))
    assert len(reference) == 72
    chained = [clip_id for clip_id in reference if clip_id.endswith("_x20")]
    assert 0 < len(chained) < len(reference)  # 3- and 20-frame clips

    written = json.loads((output_dir / EVALUATION_FILE).read_text())
    assert written["num_examples"] == 72
    assert written["sampling"] == "all"
    assert written["model_dir"] == trained_dir
    assert [clip["clip_id"] for clip in written["clips"]] == [clip["clip_id"] for clip in report["clips"]]
    assert sorted(clip["clip_id"] for clip in written["clips"]) == sorted(reference)
    for clip in written["clips"]:
        label, probabilities = reference[clip["clip_id"]]
        np.testing.assert_allclose(clip["probabilities"], probabilities, atol=2e-5, err_msg=clip["clip_id"])
        assert clip["label"] == trained.info.class_names[label]
        assert clip["predicted"] == trained.info.class_names[int(np.argmax(probabilities))]

    labels = np.array([reference[clip_id][0] for clip_id in reference])
    predicted = np.array([np.argmax(reference[clip_id][1]) for clip_id in reference])
    assert written["accuracy"] == pytest.approx(np.mean(labels == predicted))
    classes = range(3)
    assert set(labels) == set(classes)
    recalls = [np.mean(predicted[labels == label] == label) for label in classes]
    assert written["unweighted_average_recall"] == pytest.approx(np.mean(recalls))
    expected_confusion = [[int(np.sum((labels == t) & (predicted == p))) for p in classes] for t in classes]
    assert written["confusion_matrix"] == expected_confusion
    assert (output_dir / CONFUSION_MATRIX_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_padding_is_masked_in_a_batch_of_mixed_lengths(trained_dir, ck48_raw_tfrecords):
    """The padded batch holding both 3- and 20-frame clips: with the real mask the 3-frame clips
    get their own probabilities; with the padding unmasked they would not (so the mask matters)."""
    trained = load_trained_model(trained_dir)
    input_config = evaluation_input(trained, ck48_raw_tfrecords, "train", 8)
    model = with_any_number_of_frames(trained.model)
    for features, _ in build_dataset(input_config):
        mask = features["frame_mask"].numpy()
        if mask.min() == 0.0 and mask.max() == 1.0:
            break
    else:
        pytest.fail("no batch mixes clip lengths")
    short = mask.sum(axis=1) == 3
    assert short.any() and (~short).any()
    masked = model.predict_on_batch(features)["probabilities"][short]
    unmasked = model.predict_on_batch({**features, "frame_mask": tf.ones_like(features["frame_mask"])})
    single = {name: value[short][:, :3] for name, value in features.items()}
    np.testing.assert_allclose(masked, model.predict_on_batch(single)["probabilities"], atol=2e-5)
    assert np.abs(unmasked["probabilities"][short] - masked).max() > 1e-4


def test_other_class_names_beside_the_shards_are_refused(trained_dir, ck48_raw_tfrecords, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(os.path.join(ck48_raw_tfrecords, "train-00000.tfrecord"), data)
    (data / "manifest.json").write_text(json.dumps({"class_names": ["happy", "sadness"]}))
    with pytest.raises(ValueError, match=r"manifest\.json: the data has classes \['happy', 'sadness'\]"):
        evaluate(load_trained_model(trained_dir), str(data), "train")


def test_evaluate_script_writes_the_report(trained_dir, ck48_raw_tfrecords, tmp_path):
    output_dir = tmp_path / "cli"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "evaluate.py"), f"--model_dir={trained_dir}",
         f"--data={ck48_raw_tfrecords}", "--split=train", f"--output_dir={output_dir}"],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "72 clips of" in result.stdout and "accuracy" in result.stdout
    assert json.loads((output_dir / EVALUATION_FILE).read_text())["num_examples"] == 72
