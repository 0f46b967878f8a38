"""Tests of keras_emotion.training.face_clips: FER2013 images and CK+48 sequences as clips,
and a short training run of the shipped model's recipe."""

import dataclasses
import glob
import json
import os
import shutil

import cv2
import numpy as np
import pytest
import tensorflow as tf

from keras_emotion.data.emotions import EMOTIONS
from keras_emotion.data.image_folders import list_matched_images
from keras_emotion.data.video import InputError
from keras_emotion.models.backbones import build_backbone
from keras_emotion.training import face_clips
from keras_emotion.training.callbacks import backup_name
from keras_emotion.training.run_folder import RunFolder
from keras_emotion.testing import ferplus_reference_targets
from keras_emotion.training.pretrain import is_held_out
from keras_emotion.models.saving import load_trained_model

SIZE = 32


@pytest.fixture(scope="module")
def fer_dir(shared_dir):
    return str(shared_dir / "data" / "fer2013")


@pytest.fixture(scope="module")
def ck48(ck48_dir):
    return face_clips.ck48_clips(ck48_dir, SIZE, folds=10, seed=0)


def test_fer2013_images_are_one_frame_clips_in_emotion_order(fer_dir):
    clips, skipped = face_clips.fer2013_clips(os.path.join(fer_dir, "validation"), SIZE, max_per_class=3)
    assert skipped == []
    assert len(clips) == 21 and clips.lengths.tolist() == [1] * 21
    # FER2013's folders sort as angry, disgust, fear, happy, neutral, sad, surprise; the labels
    # follow EMOTIONS (neutral last).
    folder = os.path.join(fer_dir, "validation", "neutral")
    first_neutral = cv2.imread(os.path.join(folder, sorted(os.listdir(folder))[0]), cv2.IMREAD_GRAYSCALE)
    index = np.flatnonzero(clips.labels == EMOTIONS.index("neutral"))[0]
    expected = cv2.resize(first_neutral, (SIZE, SIZE), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(clips.frames[clips.starts[index], :, :, 0] - expected).mean() < 6
    assert sorted(set(clips.labels.tolist())) == list(range(7))


def test_ck48_sequences_are_three_frame_clips_without_contempt(ck48):
    clips, fold_of_clip, skipped = ck48
    assert skipped == ["contempt"]
    assert set(clips.lengths.tolist()) == {3}
    assert EMOTIONS.index("neutral") not in clips.labels and EMOTIONS.index("angry") in clips.labels
    assert sorted(set(fold_of_clip.tolist())) == list(range(10))
    assert len(clips.frames) == 3 * len(clips)


def test_every_batch_holds_clips_of_one_length_and_their_frames(fer_dir, ck48):
    fer, _ = face_clips.fer2013_clips(os.path.join(fer_dir, "validation"), SIZE, max_per_class=2)
    both = face_clips.concatenate(fer, ck48[0].subset(range(5)))
    seen = []
    for inputs, labels in face_clips.clip_dataset(both, batch_size=4):
        frames, mask = inputs["frames"].numpy(), inputs["frame_mask"].numpy()
        assert mask.shape == frames.shape[:2] and (mask == 1).all()
        seen += list(zip(labels.numpy().tolist(), frames))
    assert len(seen) == len(both)
    for index in range(len(both)):
        start, length = both.starts[index], both.lengths[index]
        matches = [frames for label, frames in seen if label == both.labels[index] and len(frames) == length
                   and np.array_equal(frames, both.frames[start:start + length].astype(np.float32))]
        assert matches, index


def test_fer2013_clips_carry_ferplus_targets_into_training_batches(fer_dir, ck48):
    """FER2013 training clips' targets blend the label with the image's FER+ votes; they survive
    subset and concatenate (CK+48 clips keep one-hot targets) and are what dense batches give."""
    fer, _ = face_clips.fer2013_clips(os.path.join(fer_dir, "train"), SIZE, max_per_class=4, ferplus_weight=0.3)
    paths, labels, _ = list_matched_images(os.path.join(fer_dir, "train"), EMOTIONS, 4)
    expected = ferplus_reference_targets(fer_dir, paths, labels, EMOTIONS, weight=0.3)
    np.testing.assert_allclose(fer.targets, expected, atol=1e-6)
    assert np.array_equal(fer.labels, labels) and np.any(fer.targets.max(axis=1) < 0.75)

    both = face_clips.concatenate(fer.subset([3, 0, 5]), ck48[0].subset(range(4)))
    np.testing.assert_allclose(both.targets[:3], expected[[3, 0, 5]], atol=1e-6)
    np.testing.assert_array_equal(both.targets[3:], np.eye(7)[ck48[0].labels[:4]])
    seen = []
    for inputs, targets in face_clips.clip_dataset(both, batch_size=2, dense_targets=True):
        seen += list(zip(targets.numpy(), inputs["frames"].numpy()))
    assert len(seen) == len(both)
    for index in range(len(both)):
        start, length = both.starts[index], both.lengths[index]
        frames = both.frames[start:start + length].astype(np.float32)
        assert any(np.allclose(target, both.targets[index]) and np.array_equal(batch_frames, frames)
                   for target, batch_frames in seen), index


def test_ferplus_weight_must_be_a_blend(fer_dir, ck48_dir):
    with pytest.raises(ValueError) as raised:
        face_clips.FaceClipsConfig(
            fer2013_dir=fer_dir, ck48_dir=ck48_dir, backbone_weights="w.h5", output_dir="out", ferplus_weight=1.5
        )
    assert str(raised.value) == "ferplus_weight=1.5; expected 0 <= ferplus_weight <= 1"


def write_teacher_evaluation(path, images, clip_ids, class_names, probabilities):
    """An evaluation.json as `scripts/evaluate.py --input <images>` writes it (the fields read)."""
    clips = [{"clip_id": clip_id, "probabilities": row.tolist()} for clip_id, row in zip(clip_ids, probabilities)]
    with open(path, "w") as file:
        json.dump({"class_names": list(class_names), "images": images, "clips": clips}, file)
    return str(path)


def test_teacher_predictions_are_averaged_and_blended_into_the_targets(tmp_path, fer_dir):
    """Distillation targets: each image's target (here after FER+ votes) moves t of the way to the
    mean of the teachers that evaluated it, whatever their class order and however their image
    folder is spelt; images no teacher saw keep their targets."""
    train_dir = os.path.join(fer_dir, "train")
    paths, labels, _ = list_matched_images(train_dir, EMOTIONS, 3)
    clip_ids = [os.path.relpath(path, train_dir) for path in paths]
    random = np.random.default_rng(0)
    first = random.dirichlet(np.ones(7), len(paths)).astype(np.float32)
    second = random.dirichlet(np.ones(7), 10).astype(np.float32)
    alphabetical = sorted(EMOTIONS)
    files = [
        write_teacher_evaluation(tmp_path / "first.json", os.path.abspath(train_dir), clip_ids, EMOTIONS, first),
        write_teacher_evaluation(  # the first 10 images, classes in alphabetical order, a relative folder
            tmp_path / "second.json", os.path.relpath(train_dir), clip_ids[:10], alphabetical,
            second[:, [EMOTIONS.index(name) for name in alphabetical]],
        ),
    ]
    teacher = face_clips.teacher_probabilities(files)
    clips, _ = face_clips.fer2013_clips(
        train_dir, SIZE, max_per_class=3, ferplus_weight=0.3, teacher=teacher, teacher_weight=0.4
    )
    mean = first.copy()
    mean[:10] = (first[:10] + second) / 2
    expected = 0.6 * ferplus_reference_targets(fer_dir, paths, labels, EMOTIONS, weight=0.3) + 0.4 * mean
    np.testing.assert_allclose(clips.targets, expected, atol=1e-5)

    other, _ = face_clips.fer2013_clips(  # validation images: no teacher saw them
        os.path.join(fer_dir, "validation"), SIZE, max_per_class=2, teacher=teacher, teacher_weight=0.4
    )
    np.testing.assert_array_equal(other.targets, np.eye(7)[other.labels])


def test_a_teacher_evaluation_must_be_of_an_image_folder_that_is_here(tmp_path, fer_dir):
    not_images = tmp_path / "clips.json"
    with open(not_images, "w") as file:
        json.dump({"class_names": list(EMOTIONS), "clips": []}, file)
    with pytest.raises(InputError) as raised:
        face_clips.teacher_probabilities([str(not_images)])
    assert str(raised.value) == (
        f"{not_images}: not an evaluation of an image folder (scripts/evaluate.py --input <folder>)"
    )
    elsewhere = write_teacher_evaluation(tmp_path / "elsewhere.json", "gone/train", [], EMOTIONS, [])
    with pytest.raises(InputError) as raised:
        face_clips.teacher_probabilities([elsewhere])
    assert str(raised.value) == (
        f"{elsewhere}: its image folder 'gone/train' is not a folder here (relative paths are to the folder "
        "evaluate.py ran in: run this from there)"
    )


def test_a_teacher_evaluation_must_be_readable_and_of_the_seven_emotions(tmp_path, fer_dir):
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(InputError) as raised:
        face_clips.teacher_probabilities([str(broken)])
    assert str(raised.value).startswith(f"{broken}: cannot read a teacher's evaluation: ")
    four = ["angry", "happy", "sad", "neutral"]
    other_classes = write_teacher_evaluation(tmp_path / "four.json", os.path.join(fer_dir, "train"), [], four, [])
    with pytest.raises(InputError) as raised:
        face_clips.teacher_probabilities([other_classes])
    assert str(raised.value) == f"{other_classes}: classes {four}; expected those of {list(EMOTIONS)}"


def test_teacher_weight_needs_teachers(fer_dir, ck48_dir):
    with pytest.raises(ValueError) as raised:
        face_clips.FaceClipsConfig(
            fer2013_dir=fer_dir, ck48_dir=ck48_dir, backbone_weights="w.h5", output_dir="out", teacher_weight=0.5
        )
    assert str(raised.value) == "teacher_weight=0.5 needs teacher_evaluations"


def test_mixup_blends_each_clip_with_its_mirror_in_the_batch_frames_and_targets_alike():
    """mix_clips: clip i -> lambda_i x clip i + (1 - lambda_i) x clip B-1-i, one lambda per clip for
    its frames and target, lambda ~ Beta(alpha, alpha): checked in NumPy, lambda read back from
    the targets, and its spread against Beta's (mean 1/2, variance 1 / (4 (2 alpha + 1)))."""
    random = np.random.default_rng(0)
    frames = random.normal(size=(6, 2, 3, 3, 4)).astype(np.float32)
    targets = np.eye(7, dtype=np.float32)[[0, 1, 2, 3, 4, 5]]
    mixed_frames, mixed_targets = face_clips.mix_clips(frames, targets, 0.4, tf.constant([3, 7], tf.int64))
    mix = mixed_targets.numpy()[np.arange(6), np.arange(6)]
    np.testing.assert_allclose(mixed_targets.numpy()[np.arange(6), 5 - np.arange(6)], 1 - mix, atol=1e-6)
    expected = mix[:, None, None, None, None] * frames + (1 - mix[:, None, None, None, None]) * frames[::-1]
    np.testing.assert_allclose(mixed_frames.numpy(), expected, atol=1e-5)

    many = np.eye(2, dtype=np.float32)[np.arange(20000) % 2]
    _, mixed = face_clips.mix_clips(np.zeros((20000, 1), np.float32), many, 0.4, tf.constant([1, 2], tf.int64))
    lambdas = mixed.numpy()[np.arange(20000), np.arange(20000) % 2]
    assert abs(lambdas.mean() - 0.5) < 0.01 and abs(lambdas.var() - 1 / (4 * 1.8)) < 0.01


def test_mixup_needs_dense_training_targets(fer_dir, ck48_dir):
    fer, _ = face_clips.fer2013_clips(os.path.join(fer_dir, "validation"), SIZE, max_per_class=2)
    with pytest.raises(ValueError) as raised:
        face_clips.clip_dataset(fer, 4, seed=0, augmentation=face_clips.FaceClipsConfig(
            fer2013_dir=fer_dir, ck48_dir=ck48_dir, backbone_weights="w.h5", output_dir="out"), mixup_alpha=0.2)
    assert str(raised.value) == "clip_dataset: mixup needs training (a seed) and dense targets"
    with pytest.raises(ValueError) as raised:
        face_clips.FaceClipsConfig(
            fer2013_dir=fer_dir, ck48_dir=ck48_dir, backbone_weights="w.h5", output_dir="out", mixup_alpha=-1
        )
    assert str(raised.value) == "mixup_alpha=-1; expected >= 0 (0: no mixup)"


def test_a_short_run_writes_a_loadable_model_with_a_frozen_backbone(tmp_path, fer_dir, ck48_dir):
    weights = str(tmp_path / "backbone.weights.h5")
    backbone = build_backbone("compact", SIZE)
    backbone.save_weights(weights)
    extra_dirs = [tmp_path / "as_given" / "faces", tmp_path / "aligned" / "faces"]  # one corpus name twice
    for extra_dir in extra_dirs:
        extra_dir.parent.mkdir()
        extra_dir.symlink_to(os.path.join(fer_dir, "validation"))
    config = face_clips.FaceClipsConfig(
        fer2013_dir=fer_dir,
        ck48_dir=ck48_dir,
        backbone_weights=weights,
        output_dir=str(tmp_path / "out"),
        backbone="compact",
        image_size=SIZE,
        epochs=1,
        batch_size=32,
        ck48_repeats=1,
        held_out_folds=[0, 1],
        max_per_class=20,
        extra_image_dirs=[str(extra_dir) for extra_dir in extra_dirs],
    )
    report = face_clips.train_face_clips(config, verbose=0)

    extra_size = len(face_clips.fer2013_clips(str(extra_dirs[0]), SIZE, 20, config.holdout_fraction)[0])
    assert 0 < extra_size < 140
    assert report["train_clips"]["fer2013"] == 140
    assert report["train_clips"]["as_given/faces"] == report["train_clips"]["aligned/faces"] == extra_size
    assert report["ck48_held_out"]["num_examples"] + report["train_clips"]["ck48"] == len(
        face_clips.ck48_clips(ck48_dir, SIZE, 10, 0)[0]
    )
    assert sorted(os.listdir(config.output_dir)) == sorted(
        ["checkpoints", "history.csv", "model.float16.npz", "model_info.json", "report.json"]
    )
    with open(os.path.join(config.output_dir, "report.json")) as handle:
        assert json.load(handle)["fer2013_validation"]["num_examples"] == 140
    trained = load_trained_model(config.output_dir)
    assert trained.info.class_names == list(EMOTIONS)
    assert trained.info.alignment.eye_distance == 0.37
    assert list(trained.info.training_data) == [
        "FER2013 train", "CK+48 (ck48/CK+48)", "as_given/faces (held-out part excluded)",
        "aligned/faces (held-out part excluded)",
    ]
    loaded_backbone = trained.model.get_layer("backbone")
    for before, after in zip(backbone.weights, loaded_backbone.weights):
        np.testing.assert_allclose(after.numpy(), before.numpy().astype(np.float16), rtol=1e-3, atol=1e-4)


def test_cross_validation_holds_out_each_fold_once_and_skips_folds_done(tmp_path, fer_dir, ck48_dir):
    weights = str(tmp_path / "backbone.weights.h5")
    build_backbone("compact", SIZE).save_weights(weights)
    config = face_clips.FaceClipsConfig(
        fer2013_dir=fer_dir, ck48_dir=ck48_dir, backbone_weights=weights, output_dir=str(tmp_path / "cv"),
        backbone="compact", image_size=SIZE, epochs=1, batch_size=32, ck48_repeats=1, folds=2, max_per_class=5,
        ck48_scored_dirs=(ck48_dir,),
    )
    lines = []
    summary = face_clips.cross_validate(config, verbose=0, log=lines.append)
    assert sum(summary["ck48_held_out_clips"]) == len(face_clips.ck48_clips(ck48_dir, SIZE, 2, 0)[0])
    accuracies = summary["ck48_held_out_accuracy"]["per_fold"]
    assert summary["ck48_held_out_scored_accuracy"]["CK+48"]["per_fold"] == accuracies  # the same clips, scored again
    assert summary["ck48_held_out_accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
    assert summary["ck48_held_out_accuracy"]["std"] == pytest.approx(np.std(accuracies))
    assert len(lines) == 2 and lines[0].startswith("fold 0: CK+48 held-out accuracy")

    os.remove(os.path.join(config.output_dir, "fold1", "report.json"))
    modified = os.path.getmtime(os.path.join(config.output_dir, "fold0", "model.float16.npz"))
    again = face_clips.cross_validate(config, verbose=0, log=lambda line: None)
    assert os.path.getmtime(os.path.join(config.output_dir, "fold0", "model.float16.npz")) == modified
    assert again["ck48_held_out_clips"] == summary["ck48_held_out_clips"]
    aligned = tmp_path / "aligned_ck48"  # another cut, not scored by the folds done
    shutil.copytree(ck48_dir, aligned)
    with pytest.raises(InputError) as raised:
        face_clips.cross_validate(dataclasses.replace(config, ck48_scored_dirs=(ck48_dir, str(aligned))), verbose=0)
    assert str(raised.value) == (
        f"{os.path.join(config.output_dir, 'fold0', 'report.json')}: this fold was run without scoring "
        "['aligned_ck48'] (ck48_scored_dirs): use another output_dir"
    )


def test_training_on_the_scored_cuts_adds_their_training_subjects_only(tmp_path, fer_dir, ck48_dir):
    mirrored = tmp_path / "mirrored_ck48"  # another cut of the same sequences
    for image_path in glob.glob(os.path.join(ck48_dir, "*", "*.png")):
        target = mirrored / os.path.relpath(image_path, ck48_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), cv2.flip(cv2.imread(image_path), 1))
    weights = str(tmp_path / "backbone.weights.h5")
    build_backbone("compact", SIZE).save_weights(weights)
    config = face_clips.FaceClipsConfig(
        fer2013_dir=fer_dir, ck48_dir=ck48_dir, backbone_weights=weights, output_dir=str(tmp_path / "out"),
        backbone="compact", image_size=SIZE, epochs=1, batch_size=32, ck48_repeats=1, held_out_folds=[0, 3],
        max_per_class=5, ck48_scored_dirs=(str(mirrored),), ck48_train_scored_dirs=True,
    )
    report = face_clips.train_face_clips(config, verbose=0)

    _, fold_of_clip, _ = face_clips.ck48_clips(ck48_dir, SIZE, 10, 0)
    held_out = int(np.isin(fold_of_clip, [0, 3]).sum())
    assert report["ck48_held_out"]["num_examples"] == report["ck48_held_out_scored"]["mirrored_ck48"]["num_examples"]
    assert report["ck48_held_out"]["num_examples"] == held_out
    assert report["train_clips"]["ck48"] == 2 * (len(fold_of_clip) - held_out)
    training_data = load_trained_model(config.output_dir).info.training_data
    assert training_data[1] == f"CK+48 (ck48/CK+48, {tmp_path.name}/mirrored_ck48)"
    with pytest.raises(ValueError) as raised:
        dataclasses.replace(config, ck48_scored_dirs=())
    assert str(raised.value) == "ck48_train_scored_dirs needs ck48_scored_dirs: the other CK+48 cuts to train on"


def test_a_scored_ck48_folder_must_split_into_the_same_subject_folds(tmp_path, fer_dir, ck48_dir):
    shorter = tmp_path / "CK+48"
    shutil.copytree(ck48_dir, shorter)
    first_happy_clip = sorted(os.listdir(shorter / "happy"))[:3]
    for name in first_happy_clip:
        os.remove(shorter / "happy" / name)
    config = face_clips.FaceClipsConfig(
        fer2013_dir=fer_dir, ck48_dir=ck48_dir, backbone_weights="unused.weights.h5", output_dir=str(tmp_path / "out"),
        backbone="compact", image_size=SIZE, held_out_folds=[0], max_per_class=5, ck48_scored_dirs=(str(shorter),),
    )
    expected = np.bincount(face_clips.ck48_clips(ck48_dir, SIZE, 10, 0)[1]).tolist()
    shorter_folds = np.bincount(face_clips.ck48_clips(str(shorter), SIZE, 10, 0)[1], minlength=10).tolist()
    with pytest.raises(InputError) as raised:
        face_clips.train_face_clips(config, verbose=0)
    assert str(raised.value) == (
        f"{shorter}: its CK+48 clips per subject fold {shorter_folds} differ from those of {ck48_dir} {expected}: "
        "not a cut of the same sequences"
    )


def test_a_run_on_cached_maps_gives_the_image_model_its_validation_accuracy(tmp_path, fer_dir, ck48_dir):
    """The head trains on dlib ResNet maps of 2 views (FER2013 with FER+ votes blended into its
    targets, CK+48 and the SFEW part that pre-training does not hold out; batches mixed up); the model written is
    the image model, and its accuracy on the validation images is the one measured on their maps
    while training."""
    sfew_dir = os.path.join(os.path.dirname(fer_dir), "sfew2")
    weights = str(tmp_path / "backbone.weights.h5")
    build_backbone("dlib_resnet", 64).save_weights(weights)
    config = face_clips.FaceClipsConfig(
        fer2013_dir=fer_dir, ck48_dir=ck48_dir, backbone_weights=weights, output_dir=str(tmp_path / "out"),
        backbone="dlib_resnet", image_size=64, epochs=15, learning_rate=1e-2, batch_size=32, ck48_repeats=1,
        held_out_folds=[0],
        max_per_class=40, cached_views=2, extra_image_dirs=(sfew_dir,), ferplus_weight=0.3, mixup_alpha=0.2,
    )
    report = face_clips.train_face_clips(config, verbose=0)
    sfew_paths, _, _ = list_matched_images(sfew_dir, EMOTIONS, 40)
    assert report["train_clips"]["sfew2"] == sum(not is_held_out(path, 0.15) for path in sfew_paths) > 200
    assert report["train_clips"]["fer2013"] == 280
    assert sorted(os.listdir(os.path.join(config.output_dir, "feature_cache"))) == ["train", "validation"]
    best = max(float(record["val_accuracy"]) for record in report["history"])
    assert report["fer2013_validation"]["accuracy"] == pytest.approx(best, abs=1.5 / 280)
    assert report["fer2013_validation"]["accuracy"] > 0.2  # chance 1/7 = 0.14: the maps are learnt from
    trained = load_trained_model(config.output_dir)
    assert trained.model.get_layer("backbone").count_params() > 0
    assert list(trained.info.training_data) == ["FER2013 train", "CK+48 (ck48/CK+48)", "data/sfew2 (held-out part excluded)"]


def test_fine_tuning_the_top_block_on_cached_maps_trains_it_and_leaves_the_rest(tmp_path, fer_dir, ck48_dir):
    """With fine_tune_blocks 1 the head and the backbone's last block learn from maps of the layer
    below it: the saved image model carries the new block (and gives the validation accuracy
    measured on the maps), every other backbone weight is the pre-trained one."""
    weights = str(tmp_path / "backbone.weights.h5")
    backbone = build_backbone("dlib_resnet", 64)
    backbone.save_weights(weights)
    config = face_clips.FaceClipsConfig(
        fer2013_dir=fer_dir, ck48_dir=ck48_dir, backbone_weights=weights, output_dir=str(tmp_path / "out"),
        backbone="dlib_resnet", image_size=64, epochs=6, learning_rate=1e-2, batch_size=32, ck48_repeats=1,
        held_out_folds=[0], max_per_class=40, cached_views=1, fine_tune_blocks=1, backbone_optimizer="lamb",
    )
    report = face_clips.train_face_clips(config, verbose=0)

    best = max(float(record["val_accuracy"]) for record in report["history"])
    assert report["fer2013_validation"]["accuracy"] == pytest.approx(best, abs=1.5 / 280)
    assert report["fer2013_validation"]["accuracy"] > 0.2  # chance 1/7 = 0.14
    trained = load_trained_model(config.output_dir).model.get_layer("backbone")
    changed = {}
    for before, after in zip(backbone.weights, trained.weights):
        assert before.path == after.path
        start = before.numpy().astype(np.float16).astype(np.float32)
        changed[before.path] = float(np.max(np.abs(after.numpy() - start)) / np.max(np.abs(start)))
    top = {path for path in changed if path.startswith("backbone/stage128_block3_")}
    assert len(top) == 8 and all(changed[path] > 1e-3 for path in top)  # LAMB at 1e-2: steps ~1e-2 of |w|
    assert all(changed[path] == 0.0 for path in changed if path not in top)


def test_fine_tuning_blocks_needs_cached_views(fer_dir, ck48_dir):
    with pytest.raises(ValueError) as raised:
        face_clips.FaceClipsConfig(
            fer2013_dir=fer_dir, ck48_dir=ck48_dir, backbone_weights="w.h5", output_dir="out", fine_tune_blocks=2
        )
    assert str(raised.value) == "fine_tune_blocks=2 needs cached_views: the blocks below them run once, on cached views"


def test_a_run_killed_after_training_and_before_its_report_writes_it_without_training_again(
    tmp_path, fer_dir, ck48_dir, monkeypatch
):
    weights = str(tmp_path / "backbone.weights.h5")
    build_backbone("compact", SIZE).save_weights(weights)
    config = face_clips.FaceClipsConfig(
        fer2013_dir=fer_dir, ck48_dir=ck48_dir, backbone_weights=weights, output_dir=str(tmp_path / "out"),
        backbone="compact", image_size=SIZE, epochs=2, batch_size=32, ck48_repeats=1, held_out_folds=[0],
        max_per_class=5,
    )
    run = RunFolder(config.output_dir)

    def killed(path, values):
        raise KeyboardInterrupt(f"killed before writing {path}")

    with monkeypatch.context() as patch:
        patch.setattr(face_clips, "write_json_atomically", killed)
        with pytest.raises(KeyboardInterrupt):
            face_clips.train_face_clips(config, verbose=0)
    assert not os.path.exists(os.path.join(config.output_dir, "report.json"))
    assert sorted(os.listdir(run.backup_dir)) == [backup_name(1), backup_name(2)]
    with open(run.history_csv) as file:
        rows = file.read()
    weights_file = os.path.join(config.output_dir, "model.float16.npz")
    saved = dict(np.load(weights_file))

    report = face_clips.train_face_clips(config, verbose=0)
    with open(run.history_csv) as file:
        assert file.read() == rows, "no epoch trained again"
    again = np.load(weights_file)
    assert sorted(again.files) == sorted(saved)
    for name in saved:
        np.testing.assert_array_equal(again[name], saved[name])
    assert [row["epoch"] for row in report["history"]] == ["0", "1"]
    assert not os.path.exists(run.backup_dir)
    with open(os.path.join(config.output_dir, "report.json")) as file:
        assert json.load(file)["fer2013_validation"] == report["fer2013_validation"]
