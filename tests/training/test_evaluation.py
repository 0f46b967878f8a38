"""Evaluation on all frames of every clip: matches the model run clip by clip, masks included;
still images as 1-frame clips; the data's classes matched to the model's by emotion."""

import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_emotion
from keras_emotion.cli.evaluate import default_output_dir
from keras_emotion.data import schema
from keras_emotion.data.config import InputConfig
from keras_emotion.data.faces import AlignmentConfig
from keras_emotion.data.pipeline import build_clip_id_dataset, build_dataset
from keras_emotion.models import ModelConfig, build_model, with_any_number_of_frames
from keras_emotion.models.info import AlignmentMismatchError
from keras_emotion.models.saving import load_trained_model, save_trained_model
from keras_emotion.pretrained import PRETRAINED_MODEL_DIR, load_pretrained
from keras_emotion.testing import write_shards
from keras_emotion.training.config import TrainConfig
from keras_emotion.training.evaluation import (
    CONFUSION_MATRIX_FILE,
    EVALUATION_FILE,
    evaluate,
    evaluate_images,
    evaluate_model_dir,
    evaluation_input,
    load_evaluation,
    paired_comparison,
    predict_clips,
    predict_images,
)
from keras_emotion.training.pretrain import is_held_out
from keras_emotion.training.task import train

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


def test_data_without_a_class_of_the_model_is_refused(trained_dir, ck48_raw_tfrecords, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(os.path.join(ck48_raw_tfrecords, "train-00000.tfrecord"), data)
    (data / "manifest.json").write_text(json.dumps({"class_names": ["happy", "sadness"]}))
    with pytest.raises(ValueError) as error:
        evaluate(load_trained_model(trained_dir), str(data), "train")
    assert str(error.value) == (
        f"{data / 'manifest.json'}: no class of the data ['happy', 'sadness'] matches the model's classes "
        "['anger', 'contempt', 'disgust']"
    )


def test_data_aligned_otherwise_than_the_model_is_refused_naming_both(ck48_tfrecords):
    """The README's first try of a new user: CK+48 preprocessed with the defaults (eyes at 0.40,
    0.30 apart) and the shipped model, trained on FER2013-like framing (0.38, 0.37)."""
    with pytest.raises(AlignmentMismatchError) as error:
        evaluate(load_pretrained(), ck48_tfrecords, "train")
    assert str(error.value) == (
        f"{os.path.join(ck48_tfrecords, 'manifest.json')}: faces aligned with eye_level=0.4, eye_distance=0.3, but the "
        f"model {PRETRAINED_MODEL_DIR} was trained on faces aligned with eye_level=0.38, eye_distance=0.37; preprocess "
        f"the data for this model: keras-emotion preprocess --like_model {PRETRAINED_MODEL_DIR} ..."
    )


def test_evaluate_script_writes_the_report(trained_dir, ck48_raw_tfrecords, tmp_path):
    output_dir = tmp_path / "cli"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "evaluate.py"), f"--model={trained_dir}",
         f"--data={ck48_raw_tfrecords}", "--split=train", f"--output_dir={output_dir}"],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "72 clips of" in result.stdout and "accuracy" in result.stdout
    written = json.loads((output_dir / EVALUATION_FILE).read_text())
    assert written["num_examples"] == 72
    assert written["skipped_classes"] == []


MODEL_CLASSES = ["angry", "happy", "sad"]
CROP_FRACTION = 0.8  # R = 40: images are resized to 40 x 40, then the centre 32 x 32 is kept
IMAGE_FOLDERS = {"Anger": 3, "happy": 3, "sadness": 2, "contempt": 2}  # images per class folder


@pytest.fixture(scope="module")
def three_class_dir(tmp_path_factory) -> str:
    """An untrained tiny SA + TP model of the classes angry, happy, sad (image_size 32,
    crop_fraction 0.8), its frame-score kernel scaled up so that images get different classes."""
    config = ModelConfig(
        num_classes=3, image_size=IMAGE_SIZE, backbone="compact", spatial="sa", num_heads=1, penalty=0, temporal="tp"
    )
    keras.utils.set_random_seed(1)
    model = build_model(config)
    kernel = model.get_layer("frame_scores").kernel
    kernel.assign(kernel.numpy() * 300.0)
    directory = str(tmp_path_factory.mktemp("three_class_model"))
    input_config = InputConfig(file_pattern=directory, image_size=IMAGE_SIZE, crop_fraction=CROP_FRACTION)
    save_trained_model(model, directory, config, input_config, MODEL_CLASSES)
    return directory


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> pathlib.Path:
    """FER2013-layout PNGs: `<folder>/<class>/<i>.png` for IMAGE_FOLDERS, smooth random faces of
    sizes 50 (shrunk to 40) and 30 (enlarged to 40), colour or gray."""
    root = tmp_path_factory.mktemp("images") / "faces"
    rng = np.random.default_rng(3)
    for folder, count in IMAGE_FOLDERS.items():
        (root / folder).mkdir(parents=True)
        for index in range(count):
            size = (50, 30)[index % 2]
            image = cv2.resize(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
            if index == 2:
                image = image[..., 0]
            cv2.imwrite(str(root / folder / f"{index}.png"), image)
    return root


def _reference_frames(path, resize: int = 40, size: int = IMAGE_SIZE) -> np.ndarray:
    """An image file as the model sees it, computed with OpenCV: RGB (gray on 3 channels),
    bilinear resize to R x R, rounded to uint8, centre S x S -> float32 (S, S, 3)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    image = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    resized = cv2.resize(image.astype(np.float32), (resize, resize), interpolation=cv2.INTER_LINEAR)
    resized = np.clip(np.round(resized), 0, 255)
    offset = (resize - size) // 2
    return resized[offset : offset + size, offset : offset + size].astype(np.float32)


def test_images_evaluate_as_one_frame_clips_of_the_matched_classes(three_class_dir, image_folder, tmp_path):
    output_dir = tmp_path / "evaluation"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "evaluate.py"), f"--model={three_class_dir}",
         f"--input={image_folder}", f"--output_dir={output_dir}", "--batch_size=3"],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"8 images of {image_folder}: accuracy" in result.stdout
    assert "skipped (no class of the model): contempt" in result.stdout
    written = json.loads((output_dir / EVALUATION_FILE).read_text())
    assert written["skipped_classes"] == ["contempt"]
    assert written["images"] == str(image_folder)
    assert written["num_examples"] == 8
    expected_ids = [f"{folder}/{index}.png" for folder in ("Anger", "happy", "sadness") for index in range(IMAGE_FOLDERS[folder])]
    assert [clip["clip_id"] for clip in written["clips"]] == expected_ids

    model = with_any_number_of_frames(load_trained_model(three_class_dir).model)
    frames = np.stack([_reference_frames(image_folder / clip_id) for clip_id in expected_ids])[:, None]
    probabilities = model.predict({"frames": frames, "frame_mask": np.ones((8, 1), np.float32)}, verbose=0)["probabilities"]
    np.testing.assert_allclose([clip["probabilities"] for clip in written["clips"]], probabilities, atol=2e-3)
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    predicted = np.argmax(probabilities, axis=1)
    assert len(set(predicted)) > 1  # the check below is not trivially all-right or all-wrong
    assert [clip["label"] for clip in written["clips"]] == [MODEL_CLASSES[label] for label in labels]
    assert written["accuracy"] == pytest.approx(np.mean(predicted == labels))
    recalls = {name: np.mean(predicted[labels == label] == label) for label, name in enumerate(MODEL_CLASSES)}
    assert written["per_class_recall"] == pytest.approx(recalls)
    assert written["unweighted_average_recall"] == pytest.approx(np.mean(list(recalls.values())))


def test_an_image_gets_the_probabilities_of_its_one_frame_clip(three_class_dir, image_folder):
    """predict_images (in batches) == a model built for 1 frame, run on (1, 1, S, S, 3) per image."""
    trained = load_trained_model(three_class_dir)
    one_frame = build_model(dataclasses.replace(trained.info.model_config, num_frames=1))
    one_frame.set_weights(trained.model.get_weights())
    paths = sorted(str(path) for path in image_folder.glob("*/*.png"))
    probabilities = predict_images(
        with_any_number_of_frames(trained.model), paths, trained.info.preprocessing, batch_size=4
    )
    assert probabilities.shape == (len(paths), 3)
    for path, result in zip(paths, probabilities):
        frames = _reference_frames(path)[None, None]
        assert frames.shape == (1, 1, IMAGE_SIZE, IMAGE_SIZE, 3)
        expected = one_frame({"frames": frames, "frame_mask": np.ones((1, 1), np.float32)})["probabilities"]
        np.testing.assert_allclose(result, np.asarray(expected)[0], atol=2e-3, err_msg=path)


def test_tfrecord_clips_of_other_class_names_evaluate_on_the_shared_classes(three_class_dir, tmp_path):
    """A corpus preprocessed with CK+ names: anger, happiness and sadness clips are the model's
    angry, happy and sad; the contempt clips are skipped and listed."""
    data_names = ["anger", "contempt", "happiness", "sadness"]
    rng = np.random.default_rng(5)
    clips = []
    for index in range(8):
        label = index % 4
        faces = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(1 + index % 3)]
        jpegs = [
            cv2.imencode(".jpg", cv2.resize(face, (schema.IMAGE_SIZE, schema.IMAGE_SIZE)))[1].tobytes() for face in faces
        ]
        clips.append(
            schema.AlignedClip(
                clip_id=f"clip_{index}", label=label, label_name=data_names[label], source="", subject="",
                split="train", fps=0.0, frames_jpeg=jpegs, detected=np.ones(len(jpegs), bool),
                landmarks=np.zeros((len(jpegs), 0, 2), np.float32),
            )
        )
    write_shards(clips, str(tmp_path), "train")
    (tmp_path / "manifest.json").write_text(json.dumps({"class_names": data_names}))

    trained = load_trained_model(three_class_dir)
    report = evaluate(trained, str(tmp_path), "train")
    assert report["skipped_classes"] == ["contempt"]
    assert report["num_examples"] == 6
    reference = predict_clips(with_any_number_of_frames(trained.model), evaluation_input(trained, str(tmp_path), "train", 8))
    expected = {
        clip_id: (data_names[label], probabilities)
        for clip_id, label, probabilities in zip(reference.clip_ids, reference.labels, reference.probabilities)
        if label != 1
    }
    assert sorted(clip["clip_id"] for clip in report["clips"]) == sorted(expected)
    model_class = {"anger": "angry", "happiness": "happy", "sadness": "sad"}
    for clip in report["clips"]:
        name, probabilities = expected[clip["clip_id"]]
        assert clip["label"] == model_class[name]
        np.testing.assert_allclose(clip["probabilities"], probabilities, atol=1e-5)
    assert report["support"] == {"angry": 2, "happy": 2, "sad": 2}


def test_a_missing_image_folder_is_named(three_class_dir, tmp_path):
    with pytest.raises(ValueError) as error:
        evaluate_images(load_trained_model(three_class_dir), str(tmp_path / "absent"))
    assert str(error.value) == f"{tmp_path / 'absent'}: image folder is missing"


def test_an_image_folder_without_a_class_of_the_model_is_refused(three_class_dir, tmp_path):
    for folder in ("contempt", "calm"):
        (tmp_path / folder).mkdir()
    with pytest.raises(ValueError) as error:
        evaluate_images(load_trained_model(three_class_dir), str(tmp_path))
    assert str(error.value) == (
        f"no class folder of {tmp_path} matches the model's classes ['angry', 'happy', 'sad'] "
        "(folders: ['calm', 'contempt'])"
    )


@pytest.mark.parametrize("data_flags", [[], ["--data=tfrecords", "--input=faces"]], ids=["neither", "both"])
def test_the_script_needs_exactly_one_of_data_and_images(data_flags, tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "evaluate.py"), f"--output_dir={tmp_path / 'out'}", *data_flags],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=120,
    )
    assert result.returncode == 1
    assert "give exactly one of --data (TFRecord clips) and --input (a folder of class folders)" in result.stderr
    assert not (tmp_path / "out").exists()


def test_default_output_folders():
    assert default_output_dir("runs/trained", "val", None) == os.path.join("runs/trained", "evaluation_val")
    assert default_output_dir("runs/trained", "val", "data/fer2013/test/") == os.path.join("runs/trained", "evaluation_test")
    assert default_output_dir(PRETRAINED_MODEL_DIR, "val", "data/fer2013/test") == "evaluation_test"
    assert default_output_dir(PRETRAINED_MODEL_DIR, "test", None) == "evaluation_test"
    assert default_output_dir("fer", "val", "data/sfew2") == "evaluation_fer_sfew2"
    assert default_output_dir(PRETRAINED_MODEL_DIR, "val", "data/sfew2", align=True) == "evaluation_sfew2_aligned"


def test_images_held_out_by_pretraining_are_the_only_ones_evaluated(three_class_dir, image_folder):
    trained = load_trained_model(three_class_dir)
    every = evaluate_images(trained, str(image_folder))
    held_out = evaluate_images(trained, str(image_folder), held_out_fraction=0.5)
    expected = [clip for clip in every["clips"] if is_held_out(clip["clip_id"], 0.5)]
    assert 0 < len(expected) < len(every["clips"])  # the choice is not all or nothing here
    assert [clip["clip_id"] for clip in held_out["clips"]] == [clip["clip_id"] for clip in expected]
    assert held_out["held_out_fraction"] == 0.5 and held_out["num_examples"] == len(expected)


def _report(labels, predicted, model_dir="runs/model"):
    """An evaluation report of clips c0, c1, ... with these class names."""
    clips = [
        {"clip_id": f"c{index}", "label": label, "predicted": guess, "probabilities": []}
        for index, (label, guess) in enumerate(zip(labels, predicted))
    ]
    return {"clips": clips, "model_dir": model_dir}


def test_paired_comparison_matches_numpy_clip_by_clip(tmp_path):
    rng = np.random.default_rng(7)
    names = np.array(["angry", "happy", "sad"])
    labels = rng.integers(0, 3, 200)
    ours = np.where(rng.random(200) < 0.7, labels, rng.integers(0, 3, 200))
    theirs = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 3, 200))
    baseline_path = tmp_path / "old" / EVALUATION_FILE
    baseline_path.parent.mkdir()
    baseline = _report(names[labels], names[theirs], model_dir="runs/old")
    baseline["clips"] = baseline["clips"][::-1]  # the order of the clips does not matter
    baseline_path.write_text(json.dumps(baseline))
    comparison = paired_comparison(_report(names[labels], names[ours]), load_evaluation(str(baseline_path)))

    differences = (ours == labels).astype(float) - (theirs == labels).astype(float)
    assert comparison == {
        "baseline": str(baseline_path),
        "baseline_model_dir": "runs/old",
        "left_out_no_face": 0,
        "num_examples": 200,
        "accuracy_difference": pytest.approx(np.mean(ours == labels) - np.mean(theirs == labels)),
        "standard_error": pytest.approx(np.std(differences, ddof=1) / np.sqrt(200)),
        "won": int(np.sum((ours == labels) & (theirs != labels))),
        "lost": int(np.sum((ours != labels) & (theirs == labels))),
        "unweighted_average_recall_difference": pytest.approx(
            np.mean([np.mean(ours[labels == label] == label) - np.mean(theirs[labels == label] == label) for label in range(3)])
        ),
    }
    assert comparison["won"] > 0 and comparison["lost"] > 0  # both counts are exercised


def test_paired_comparison_refuses_other_clips_and_other_labels(tmp_path):
    baseline_path = tmp_path / EVALUATION_FILE
    baseline_path.write_text(json.dumps(_report(["angry", "happy", "sad"], ["angry", "angry", "angry"])))
    baseline = load_evaluation(str(baseline_path))
    with pytest.raises(ValueError) as error:
        paired_comparison(_report(["angry", "happy"], ["angry", "happy"]), baseline)
    assert str(error.value) == (
        f"{baseline_path}: evaluates other clips: 0 of these 2 clips are not in it (first: []), "
        "1 of its 3 are not here (first: ['c2'])"
    )
    with pytest.raises(ValueError) as error:
        paired_comparison(_report(["angry", "sad", "sad"], ["angry", "happy", "sad"]), baseline)
    assert str(error.value) == f"{baseline_path}: labels 1 of the 3 clips otherwise (first: c1: happy there, sad here)"


def test_a_file_that_is_not_an_evaluation_is_named(tmp_path):
    path = tmp_path / "history.json"
    path.write_text(json.dumps({"accuracy": [0.5]}))
    with pytest.raises(ValueError) as error:
        load_evaluation(str(path))
    assert str(error.value) == f'{path}: not an evaluation report (no "clips" list)'


def test_the_script_compares_with_another_models_evaluation(three_class_dir, image_folder, tmp_path):
    """--compare_to: the evaluation of a model naming every image "happy" against this one."""
    ids = [f"{folder}/{index}.png" for folder in ("Anger", "happy", "sadness") for index in range(IMAGE_FOLDERS[folder])]
    labels = ["angry"] * 3 + ["happy"] * 3 + ["sad"] * 2
    baseline = _report(labels, ["happy"] * 8)
    for clip, clip_id in zip(baseline["clips"], ids):
        clip["clip_id"] = clip_id
    baseline_path = tmp_path / "baseline.json"
    baseline_path.write_text(json.dumps(baseline))
    output_dir = tmp_path / "evaluation"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "evaluate.py"), f"--model={three_class_dir}",
         f"--input={image_folder}", f"--output_dir={output_dir}", f"--compare_to={baseline_path}"],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    written = json.loads((output_dir / EVALUATION_FILE).read_text())
    right = np.array([clip["predicted"] == clip["label"] for clip in written["clips"]], float)
    baseline_right = np.array([label == "happy" for label in labels], float)
    comparison = json.loads((output_dir / "comparison.json").read_text())
    assert comparison["accuracy_difference"] == pytest.approx(np.mean(right - baseline_right))
    assert comparison["won"] == int(np.sum(right > baseline_right))
    assert comparison["lost"] == int(np.sum(right < baseline_right))
    assert comparison["won"] + comparison["lost"] > 0
    assert (
        f"paired with {baseline_path} on the same 8 clips: accuracy "
        f"{100 * comparison['accuracy_difference']:+.2f} points (standard error "
        f"{100 * comparison['standard_error']:.2f}), {comparison['won']} won, {comparison['lost']} lost"
    ) in result.stdout


def test_the_script_refuses_a_missing_baseline_before_evaluating(three_class_dir, image_folder, tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "evaluate.py"), f"--model={three_class_dir}",
         f"--input={image_folder}", f"--output_dir={tmp_path / 'out'}", f"--compare_to={tmp_path / 'absent.json'}"],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=120,
    )
    assert result.returncode == 1
    assert f"No such file or directory: '{tmp_path / 'absent.json'}'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_paired_comparison_leaves_out_the_images_without_a_face(tmp_path):
    baseline_path = tmp_path / EVALUATION_FILE
    baseline_path.write_text(json.dumps(_report(["angry", "happy", "sad"], ["angry", "angry", "sad"])))
    aligned = _report(["angry", "sad"], ["happy", "sad"])  # c0 and c2 were aligned, c1 had no face
    aligned["clips"][1]["clip_id"] = "c2"
    aligned["no_face"] = ["c1"]
    comparison = paired_comparison(aligned, load_evaluation(str(baseline_path)))
    assert (comparison["num_examples"], comparison["left_out_no_face"]) == (2, 1)
    assert (comparison["accuracy_difference"], comparison["won"], comparison["lost"]) == (-0.5, 0, 1)
    assert comparison["unweighted_average_recall_difference"] == -0.5  # angry 0 - 1, sad 1 - 1, on c0 and c2 only


@pytest.fixture(scope="module")
def aligned_model_dir(three_class_dir, tmp_path_factory) -> str:
    """The three-class model, saved as trained on faces aligned at 40 px (no CNN fallback)."""
    trained = load_trained_model(three_class_dir)
    directory = str(tmp_path_factory.mktemp("aligned_model"))
    input_config = InputConfig(file_pattern=directory, image_size=IMAGE_SIZE, crop_fraction=CROP_FRACTION)
    alignment = AlignmentConfig(output_size=40, cnn_fallback=False)
    save_trained_model(trained.model, directory, trained.info.model_config, input_config, MODEL_CLASSES, alignment)
    return directory


def test_aligned_images_get_the_probabilities_predict_gives_the_picture(aligned_model_dir, face_pictures, tmp_path):
    as_is_dir, aligned_dir = tmp_path / "as_is", tmp_path / "aligned"
    command = [sys.executable, str(REPO_ROOT / "scripts" / "evaluate.py"), f"--model={aligned_model_dir}",
               f"--input={face_pictures}"]
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    as_is = subprocess.run(command + [f"--output_dir={as_is_dir}"], capture_output=True, text=True, env=environment, timeout=120)
    assert as_is.returncode == 0, as_is.stderr[-2000:]
    baseline = as_is_dir / EVALUATION_FILE
    result = subprocess.run(
        command + ["--align", f"--output_dir={aligned_dir}", f"--compare_to={baseline}"],
        capture_output=True, text=True, env=environment, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    written = json.loads((aligned_dir / EVALUATION_FILE).read_text())
    assert written["aligned"] is True and json.loads(baseline.read_text())["aligned"] is False
    assert written["no_face"] == ["angry/coffee.png"]
    assert [clip["clip_id"] for clip in written["clips"]] == ["happy/astronaut.png", "sad/astronaut_mirrored.jpg"]
    assert f"2 faces aligned in images of {face_pictures}: accuracy" in result.stdout
    assert "  no face found in 1 images (left out)" in result.stdout
    assert "evaluate --align: 3/3 images (100%), 1 without a face, " in result.stderr  # the progress line
    assert f"paired with {baseline} on the same 2 clips (1 without a face found left out): accuracy" in result.stdout
    for clip in written["clips"]:
        (face,) = keras_emotion.predict(str(face_pictures / clip["clip_id"]), model=aligned_model_dir).tracks.to_dict("records")
        np.testing.assert_allclose(clip["probabilities"], [face[name] for name in MODEL_CLASSES], atol=1e-5)
    as_is_probabilities = [clip["probabilities"] for clip in json.loads(baseline.read_text())["clips"][1:]]
    assert np.abs(np.subtract(as_is_probabilities, [clip["probabilities"] for clip in written["clips"]])).max() > 0.01


def test_align_needs_images_a_model_that_records_its_alignment_and_a_face(
    three_class_dir, aligned_model_dir, face_pictures, tmp_path
):
    with pytest.raises(ValueError) as error:
        evaluate_images(load_trained_model(three_class_dir), str(face_pictures), align=True)
    assert str(error.value) == (
        f"model {three_class_dir!r} records no face alignment (model_info.json \"alignment\": null): "
        "the framing to align the faces to is unknown"
    )
    no_faces = tmp_path / "no_faces"
    (no_faces / "angry").mkdir(parents=True)
    shutil.copy(face_pictures / "angry" / "coffee.png", no_faces / "angry")
    with pytest.raises(ValueError) as error:
        evaluate_images(load_trained_model(aligned_model_dir), str(no_faces), align=True)
    assert str(error.value) == f"{no_faces}: no face found in any of its 1 images"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "evaluate.py"), f"--model={three_class_dir}",
         f"--data={tmp_path}", "--align", f"--output_dir={tmp_path / 'out'}"],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=120,
    )
    assert result.returncode == 1
    assert "--align aligns the faces of still images: it needs --input (TFRecord clips are aligned)" in result.stderr
    assert not (tmp_path / "out").exists()
