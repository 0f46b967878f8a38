"""Tests of keras_emotion.training.pretrain on real FER2013 faces (small subsets)."""

import dataclasses
import json
import os
import re

import cv2
import keras
import numpy as np
import pytest

from keras_emotion.data.model_input import decode_images
from keras_emotion.data.video import InputError
from keras_emotion.models import ModelConfig, build_model
from keras_emotion.models.backbones import BACKBONE_NAME, build_backbone
from keras_emotion.testing import ferplus_reference_targets
from keras_emotion.training import pretrain as pretrain_lib
from keras_emotion.training.run_folder import BACKUP_DIR, HISTORY_FILE

SUBSET_CLASSES = ("angry", "happy", "surprise")


@pytest.fixture(scope="module")
def fer_dir(shared_dir):
    return shared_dir / "data" / "fer2013"


@pytest.fixture(scope="module")
def fer_subset(fer_dir, tmp_path_factory):
    """A FER2013 folder of 3 classes (links to the real class folders), both splits."""
    root = tmp_path_factory.mktemp("fer_subset")
    for split in ("train", "validation"):
        (root / split).mkdir()
        for name in SUBSET_CLASSES:
            os.symlink(fer_dir / split / name, root / split / name)
    return root


class BackboneWeightsRecorder(keras.callbacks.Callback):
    """Keeps a copy of the backbone's weights after each epoch and the epochs that began."""

    def __init__(self):
        super().__init__()
        self.weights_by_epoch = {}
        self.epochs_begun = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs_begun.append(epoch)

    def on_epoch_end(self, epoch, logs=None):
        backbone = self.model.get_layer(BACKBONE_NAME)
        self.weights_by_epoch[epoch + 1] = [np.array(w) for w in backbone.get_weights()]


@pytest.fixture(scope="module")
def quick_run(fer_subset, tmp_path_factory):
    """3 classes x 150 training images, 32 px, 10 epochs; validation: 150 other images per class."""
    config = pretrain_lib.PretrainConfig(
        data_dir=str(fer_subset),
        output_dir=str(tmp_path_factory.mktemp("pretrain_out")),
        image_size=32,
        epochs=10,
        batch_size=16,
        learning_rate=4e-3,
        max_per_class=150,
    )
    recorder = BackboneWeightsRecorder()
    result = pretrain_lib.pretrain(config, callbacks=[recorder], verbose=0)
    return config, result, recorder


def test_quick_pretrain_learns_above_chance_on_held_out_faces(quick_run):
    config, result, _ = quick_run
    report = result.report
    assert report["classes"] == list(SUBSET_CLASSES)
    assert (report["image_size"], report["epochs"]) == (32, 10)
    assert (report["train_images"], report["val_images"]) == (450, 450)
    assert report["completed"] is True
    assert [record["epoch"] for record in report["history"]] == list(range(1, 11))
    assert report["val_accuracy"] == [record["val_accuracy"] for record in report["history"]]
    assert report["best_val_accuracy"] == max(report["val_accuracy"])
    assert report["val_accuracy"][report["best_epoch"] - 1] == report["best_val_accuracy"]
    assert report["best_val_accuracy"] > 0.5, report["val_accuracy"]  # chance: 1/3


def test_files_are_complete_and_no_temporary_or_backup_is_left(quick_run):
    config, result, _ = quick_run
    assert sorted(os.listdir(config.output_dir)) == sorted(
        [config.report_file, config.weights_file, HISTORY_FILE]
    )
    with open(result.report_path) as handle:
        assert json.load(handle) == json.loads(json.dumps(result.report))


def test_saved_weights_are_the_best_epochs_and_load_into_build_model(quick_run):
    config, result, recorder = quick_run
    best_weights = recorder.weights_by_epoch[result.report["best_epoch"]]
    model_config = ModelConfig(
        num_classes=7,
        num_frames=2,
        image_size=config.image_size,
        backbone="compact",
        backbone_weights=result.weights_path,
        spatial="none",
        temporal="avg",
    )
    loaded = build_model(model_config).get_layer(BACKBONE_NAME).get_weights()
    assert len(loaded) == len(best_weights)
    for loaded_array, best_array in zip(loaded, best_weights):
        np.testing.assert_array_equal(loaded_array, best_array)

    untrained = build_model(
        ModelConfig(**{**model_config.to_dict(), "backbone_weights": None})
    ).get_layer(BACKBONE_NAME)
    first_kernel = untrained.get_layer("stage1_conv1").kernel
    assert not np.allclose(keras.ops.convert_to_numpy(first_kernel), best_weights[0])


class InitialBackboneWeights(keras.callbacks.Callback):
    """Keeps a copy of the backbone's weights when training begins."""

    def on_train_begin(self, logs=None):
        self.weights = [np.array(w) for w in self.model.get_layer(BACKBONE_NAME).get_weights()]


def test_a_run_starts_from_the_initial_weights_given(quick_run, tmp_path):
    config, result, recorder = quick_run
    continued = dataclasses.replace(config, output_dir=str(tmp_path), epochs=1, initial_weights=result.weights_path)
    start = InitialBackboneWeights()
    pretrain_lib.pretrain(continued, callbacks=[start], verbose=0)
    best = recorder.weights_by_epoch[result.report["best_epoch"]]
    assert len(start.weights) == len(best)
    for started, saved in zip(start.weights, best):
        np.testing.assert_array_equal(started, saved)


class CrashAfterEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise RuntimeError("simulated crash")


def test_rerun_after_a_crash_resumes_from_the_backup(fer_subset, tmp_path):
    config = pretrain_lib.PretrainConfig(
        data_dir=str(fer_subset),
        output_dir=str(tmp_path),
        image_size=16,
        epochs=3,
        batch_size=16,
        max_per_class=32,
    )
    with pytest.raises(RuntimeError, match="simulated crash"):
        pretrain_lib.pretrain(config, callbacks=[CrashAfterEpoch(2)], verbose=0)
    with open(tmp_path / config.report_file) as handle:
        crashed = json.load(handle)
    assert crashed["completed"] is False
    assert [record["epoch"] for record in crashed["history"]] == [1, 2]
    assert (tmp_path / BACKUP_DIR).is_dir()

    recorder = BackboneWeightsRecorder()
    result = pretrain_lib.pretrain(config, callbacks=[recorder], verbose=0)
    assert recorder.epochs_begun == [2]  # epochs 1 and 2 came from the backup
    assert [record["epoch"] for record in result.report["history"]] == [1, 2, 3]
    assert result.report["history"][:2] == crashed["history"]
    assert result.report["completed"] is True
    assert not (tmp_path / BACKUP_DIR).exists()


def test_load_split_decodes_gray_faces_into_three_equal_channels(fer_dir):
    split = pretrain_lib.load_split(str(fer_dir / "validation"), 48, max_per_class=2)
    assert split.class_names == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert split.images.shape == (14, 48, 48, 3) and split.images.dtype == np.uint8
    np.testing.assert_array_equal(split.labels, np.repeat(np.arange(7), 2))
    for image, path in zip(split.images, split.paths):
        reference = cv2.imread(path, cv2.IMREAD_GRAYSCALE)  # 48x48: no resizing
        for channel in range(3):
            np.testing.assert_array_equal(image[..., channel], reference, err_msg=path)


def test_augment_without_crop_or_jitter_is_identity_or_mirror():
    images = np.random.default_rng(0).integers(0, 256, (32, 16, 16, 3)).astype(np.uint8)
    config = pretrain_lib.PretrainConfig(
        "unused", "unused", min_crop_fraction=1.0, brightness_delta=0.0, contrast_range=(1.0, 1.0)
    )
    augmented = np.asarray(pretrain_lib.augment(images, np.array([1, 2]), config))
    mirrored = [np.allclose(out, image[:, ::-1], atol=1e-3) for out, image in zip(augmented, images)]
    unchanged = [np.allclose(out, image, atol=1e-3) for out, image in zip(augmented, images)]
    assert all(m != u for m, u in zip(mirrored, unchanged))
    assert 8 <= sum(mirrored) <= 24


def test_augment_keeps_shape_and_range():
    images = np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3)).astype(np.uint8)
    config = pretrain_lib.PretrainConfig("unused", "unused", brightness_delta=80.0)
    augmented = np.asarray(pretrain_lib.augment(images, np.array([3, 4]), config))
    assert augmented.shape == images.shape and augmented.dtype == np.float32
    assert augmented.min() >= 0.0 and augmented.max() <= 255.0
    assert not np.allclose(augmented, images)


def test_missing_data_folder_is_named(tmp_path):
    config = pretrain_lib.PretrainConfig(str(tmp_path / "nowhere"), str(tmp_path / "out"))
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / 'nowhere' / 'train'}: image folder is missing")):
        pretrain_lib.pretrain(config)


def test_empty_data_folder_is_named(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / 'train'}: image folder is empty")):
        pretrain_lib.load_split(str(tmp_path / "train"), 32)


def test_empty_or_missing_class_folder_is_named(fer_subset, tmp_path):
    (tmp_path / "happy").mkdir()
    (tmp_path / "happy" / "notes.txt").write_text("not an image")
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / 'happy'}: class folder holds no images")):
        pretrain_lib.load_split(str(tmp_path), 32)
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / 'angry'}: class folder is missing")):
        pretrain_lib.load_split(str(tmp_path), 32, class_names=["angry", "happy"])


def test_undecodable_image_is_named(fer_dir, tmp_path):
    (tmp_path / "happy").mkdir()
    good = fer_dir / "train" / "happy" / sorted(os.listdir(fer_dir / "train" / "happy"))[0]
    os.symlink(good, tmp_path / "happy" / "a.jpg")
    (tmp_path / "happy" / "b.jpg").write_bytes(b"this is not a JPEG")
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / 'happy' / 'b.jpg'}: cannot decode the image")):
        pretrain_lib.load_split(str(tmp_path), 32)


# FER+ votes, extra corpora with held-out parts, flip-averaged scores.

def test_ferplus_targets_blend_the_label_with_the_vote_distribution(fer_dir):
    split = pretrain_lib.load_split(str(fer_dir / "train"), 16, SUBSET_CLASSES, max_per_class=20)
    targets = pretrain_lib.ferplus_targets(str(fer_dir), split.paths, split.labels, split.class_names, weight=0.3)
    expected = ferplus_reference_targets(str(fer_dir), split.paths, split.labels, SUBSET_CLASSES, weight=0.3)
    np.testing.assert_allclose(targets, expected, atol=1e-6)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)
    assert np.any(targets.max(axis=1) < 1.0)  # some images have votes for other classes


def test_ferplus_targets_name_a_missing_labels_file(fer_subset):
    split = pretrain_lib.load_split(str(fer_subset / "train"), 16, SUBSET_CLASSES, max_per_class=2)
    with pytest.raises(InputError, match=re.escape(f"{fer_subset / 'ferplus_labels.csv'}: FER+ labels file is missing")):
        pretrain_lib.ferplus_targets(str(fer_subset), split.paths, split.labels, split.class_names, weight=0.5)


def test_extra_corpus_is_split_by_file_name(shared_dir):
    expw = str(shared_dir / "data" / "expw")
    trained, held_out = pretrain_lib.load_extra_split(expw, SUBSET_CLASSES, 32, 0.3, max_per_class=30)
    assert len(trained.labels) + len(held_out.labels) == 90
    assert not set(trained.paths) & set(held_out.paths)
    assert all(pretrain_lib.is_held_out(path, 0.3) for path in held_out.paths)
    assert not any(pretrain_lib.is_held_out(path, 0.3) for path in trained.paths)
    assert 10 <= len(held_out.labels) <= 45
    again = pretrain_lib.load_extra_split(expw, SUBSET_CLASSES, 32, 0.3, max_per_class=30)[1]
    assert again.paths == held_out.paths
    np.testing.assert_array_equal(held_out.images[:2], decode_images(held_out.paths[:2], 32))


def test_flip_averaged_logits_match_numpy():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    classifier = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(3)])
    kernel, bias = classifier.layers[-1].get_weights()
    plain, averaged = pretrain_lib.flip_averaged_logits(classifier, images, batch_size=2)
    reference = images.reshape(5, -1).astype(np.float64) @ kernel + bias
    mirrored = images[:, :, ::-1].reshape(5, -1).astype(np.float64) @ kernel + bias
    np.testing.assert_allclose(plain, reference, rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(averaged, (reference + mirrored) / 2, rtol=1e-4, atol=1e-2)


def test_pretrain_with_ferplus_and_an_extra_corpus_scores_its_held_out_part(fer_subset, fer_dir, shared_dir, tmp_path):
    if not (fer_subset / "ferplus_labels.csv").exists():
        os.symlink(fer_dir / "ferplus_labels.csv", fer_subset / "ferplus_labels.csv")
    config = pretrain_lib.PretrainConfig(
        data_dir=str(fer_subset), output_dir=str(tmp_path), image_size=32, epochs=1, batch_size=16,
        max_per_class=20, ferplus_weight=0.5, extra_data_dirs=(str(shared_dir / "data" / "sfew2"),),
    )
    report = pretrain_lib.pretrain(config, verbose=0).report
    assert report["held_out_images"]["fer2013"] == 60
    assert 0 < report["held_out_images"]["sfew2"] < 60
    assert report["train_images"] == 60 + 60 - report["held_out_images"]["sfew2"]
    (record,) = report["history"]
    assert record["val_fer2013_accuracy"] == pytest.approx(record["val_accuracy"], abs=1e-6)
    assert {"val_sfew2_accuracy", "val_sfew2_flip_accuracy", "val_fer2013_flip_accuracy"} <= set(record)


@pytest.fixture
def two_backbone_files(tmp_path):
    """Two compact backbones (32 px) with different random weights, saved: their paths and models."""
    paths, models = [], []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        model = build_backbone("compact", 32)
        random = np.random.default_rng(seed)
        for variable in model.weights:  # non-trainable batch-norm statistics differ too
            variable.assign(random.normal(size=variable.shape).astype(np.float32))
        paths.append(str(tmp_path / f"run{seed}.weights.h5"))
        model.save_weights(paths[-1])
        models.append(model)
    return paths, models


def test_averaged_weights_are_the_mean_of_every_variable(two_backbone_files, tmp_path):
    paths, models = two_backbone_files
    output = str(tmp_path / "soup" / "average.weights.h5")
    assert pretrain_lib.average_backbone_weights("compact", 32, paths, output) == output
    assert os.listdir(tmp_path / "soup") == ["average.weights.h5"]
    average = build_backbone("compact", 32, output)
    assert len(average.weights) == len(models[0].weights) > 0
    for index, variable in enumerate(average.weights):
        expected = (models[0].weights[index].numpy() + models[1].weights[index].numpy()) / 2
        np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-6, atol=1e-7)


def test_averaging_names_what_is_wrong(two_backbone_files, tmp_path):
    paths, _ = two_backbone_files
    output = str(tmp_path / "average.weights.h5")
    with pytest.raises(ValueError, match=r"^average_backbone_weights: 1 weights file\(s\) given; expected two or more$"):
        pretrain_lib.average_backbone_weights("compact", 32, paths[:1], output)
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'average.h5'}: the averaged weights file's name must end with .weights.h5")):
        pretrain_lib.average_backbone_weights("compact", 32, paths, str(tmp_path / "average.h5"))
    with pytest.raises(ValueError, match=re.escape(f"{paths[0]}: expected Keras 3 weights saved from a backbone of the same kind")):
        pretrain_lib.average_backbone_weights("compact_wide", 32, paths, output)
    assert not os.path.exists(output)
