"""The training task on real CK+48 clips: the compiled model's step, learning, resuming after a
crash, the best-epoch checkpoint, saving/loading the trained model, mixed precision."""

import csv
import dataclasses
import json
import math
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_emotion.data.config import InputConfig
from keras_emotion.data.pipeline import build_dataset
from keras_emotion.files import OutputDirInUseError
from keras_emotion.models import ModelConfig, backbone_variables, build_model, head_variables
from keras_emotion.models.info import MODEL_INFO_FILE, AlignmentMismatchError, ModelInfo, Preprocessing, write_model_info
from keras_emotion.models.saving import load_trained_model, save_float16_weights
from keras_emotion.pretrained import PRETRAINED_MODEL_DIR
from keras_emotion.training.config import TrainConfig
from keras_emotion.training.distribution import get_strategy
from keras_emotion.training.optimizers import two_rate_sgd
from keras_emotion.training.task import classification_loss, probabilities_model, train
from replica_worker import relative_error

NUM_FRAMES, IMAGE_SIZE = 3, 32
EPOCHS, STEPS_PER_EPOCH, CRASH_EPOCH = 12, 8, 6


class CrashAtEpoch(keras.callbacks.Callback):
    """Simulates a crash: raises when epoch `epoch` begins."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError(f"simulated crash at epoch {epoch}")


class Recorder(keras.callbacks.Callback):
    """Records the sub-optimizers' step counters when training starts and the epochs run."""

    def __init__(self):
        super().__init__()
        self.iterations_at_start, self.epochs = None, []

    def on_train_begin(self, logs=None):
        self.iterations_at_start = [int(optimizer.iterations.numpy()) for optimizer in self.model.optimizer.optimizers]

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def ck48_config(ck48_tfrecords, output_dir) -> TrainConfig:
    """SA + temporal softmax pooling on 32x32 faces, 3 frames. The fixture has one split, so
    validation runs on training clips (one shard, no augmentation): it tests the mechanics."""
    data = dict(num_frames=NUM_FRAMES, image_size=IMAGE_SIZE, global_batch_size=8)
    return TrainConfig(
        train_data=InputConfig(ck48_tfrecords, training=True, seed=0, **data),
        val_data=InputConfig(os.path.join(ck48_tfrecords, "train-00000.tfrecord"), **data),
        model=ModelConfig(num_frames=NUM_FRAMES, image_size=IMAGE_SIZE),
        epochs=EPOCHS,
        steps_per_epoch=STEPS_PER_EPOCH,
        backbone_lr=3e-3,  # the backbone starts from random weights here
        head_lr=3e-3,
        restart_epochs=EPOCHS,
        output_dir=str(output_dir),
    )


@pytest.fixture(scope="module")
def resumed_run(ck48_tfrecords, tmp_path_factory):
    """Trains, crashes at the start of epoch 6, then runs `train` again on the same output_dir."""
    config = ck48_config(ck48_tfrecords, tmp_path_factory.mktemp("ck48_run"))
    with pytest.raises(RuntimeError, match="simulated crash at epoch 6"):
        train(config, callbacks=[CrashAtEpoch(CRASH_EPOCH)], verbose=0)
    trained_after_crash = os.path.exists(os.path.join(config.output_dir, "trained"))
    recorder = Recorder()
    model, history = train(config, callbacks=[recorder], verbose=0)
    with open(os.path.join(config.output_dir, "history.csv"), newline="") as file:
        rows = list(csv.DictReader(file))
    return dict(
        config=config,
        model=model,
        history=history,
        recorder=recorder,
        rows=rows,
        trained_after_crash=trained_after_crash,
    )


def test_resumes_from_the_saved_epoch(resumed_run):
    recorder = resumed_run["recorder"]
    assert not resumed_run["trained_after_crash"]
    assert recorder.epochs == list(range(CRASH_EPOCH, EPOCHS))
    assert recorder.iterations_at_start == [CRASH_EPOCH * STEPS_PER_EPOCH] * 2
    assert [int(row["epoch"]) for row in resumed_run["rows"]] == list(range(EPOCHS))
    # The learning rates continue the schedule across the crash: one cosine over the run, from
    # head_lr at step 0 to the floor 0 at the last step (and after it, the rate logged last).
    config = resumed_run["config"]
    last_step = EPOCHS * STEPS_PER_EPOCH - 1
    for row in resumed_run["rows"]:
        step = (int(row["epoch"]) + 1) * STEPS_PER_EPOCH
        expected = config.head_lr * 0.5 * (1 + math.cos(math.pi * min(step / last_step, 1)))
        assert float(row["lr_head_sgd"]) == pytest.approx(expected, rel=1e-4, abs=1e-9)
    assert not os.path.exists(os.path.join(config.output_dir, "backup")), "backup is removed after success"


def test_training_on_real_clips_learns(resumed_run):
    losses = [float(row["loss"]) for row in resumed_run["rows"]]
    accuracies = [float(row["accuracy"]) for row in resumed_run["rows"]]
    assert np.mean(losses[-3:]) < 0.75 * np.mean(losses[:2]), losses
    # CK+48's largest class (surprise) is 68 of 264 clips: 26%.
    assert max(accuracies[-3:]) > 0.5, accuracies


def test_trained_model_is_the_best_epoch_and_loads_back(resumed_run, ck48_tfrecords):
    config, model = resumed_run["config"], resumed_run["model"]
    trained = load_trained_model(os.path.join(config.output_dir, "trained"))
    with open(os.path.join(ck48_tfrecords, "manifest.json")) as file:
        manifest = json.load(file)
    assert trained.info.class_names == manifest["class_names"]
    assert trained.info.model_config == config.model
    assert trained.info.num_frames == NUM_FRAMES
    assert trained.info.preprocessing == Preprocessing(IMAGE_SIZE, 0.875)
    assert dataclasses.asdict(trained.info.alignment) == manifest["preprocessing"]["alignment"]
    assert trained.info.training_data == (ck48_tfrecords,)

    val_data = trained.input_config(config.val_data.file_pattern, global_batch_size=8)
    correct = total = 0
    for features, labels in build_dataset(val_data):
        loaded = trained.model(features)
        returned = model(features)
        for name in ("probabilities", "frame_importance", "spatial_attention"):
            np.testing.assert_allclose(loaded[name], returned[name], rtol=1e-5, atol=1e-6)
        correct += int(np.sum(np.argmax(loaded["probabilities"], axis=-1) == labels.numpy()))
        total += len(labels)
    # The saved weights are those of the epoch with the best validation accuracy, over both runs.
    best = max(float(row["val_accuracy"]) for row in resumed_run["rows"])
    assert correct / total == pytest.approx(best, abs=1e-6)


def test_run_writes_logs_and_config(resumed_run):
    output_dir = resumed_run["config"].output_dir
    assert TrainConfig.from_json(os.path.join(output_dir, "train_config.json")) == resumed_run["config"]
    assert os.listdir(os.path.join(output_dir, "logs", "train"))
    assert os.path.isfile(os.path.join(output_dir, "checkpoints", "best.weights.h5"))
    assert {"lr_backbone_sgd", "lr_head_sgd", "val_loss"} <= set(resumed_run["rows"][0])


def test_fine_tuning_starts_from_the_backbone_of_a_trained_model(resumed_run, ck48_tfrecords, tmp_path):
    source_dir = os.path.join(resumed_run["config"].output_dir, "trained")
    config = dataclasses.replace(
        ck48_config(ck48_tfrecords, tmp_path),
        model=ModelConfig(num_frames=NUM_FRAMES, image_size=IMAGE_SIZE, backbone_weights=source_dir),
        epochs=1,
        steps_per_epoch=2,
        restart_epochs=1,
        backbone_lr=0.0,  # the backbone stays as it started; its BatchNormalization is frozen
    )
    model, _ = train(config, verbose=0)
    source = load_trained_model(source_dir).model.get_layer("backbone").weights
    tuned = model.get_layer("backbone").weights
    assert len(source) == len(tuned) > 0
    for expected, actual in zip(source, tuned):
        np.testing.assert_array_equal(actual.numpy(), expected.numpy())
    fresh = build_model(dataclasses.replace(config.model, backbone_weights=None)).get_layer("backbone").weights
    assert any(not np.array_equal(actual.numpy(), other.numpy()) for actual, other in zip(tuned, fresh))


def test_fine_tuning_a_model_trained_on_other_faces_is_refused(ck48_tfrecords, tmp_path):
    data = InputConfig(ck48_tfrecords, training=True, num_frames=NUM_FRAMES, image_size=112, global_batch_size=8)
    config = TrainConfig(
        train_data=data,
        model=ModelConfig(num_frames=NUM_FRAMES, image_size=112, backbone="dlib_resnet_256", backbone_weights=PRETRAINED_MODEL_DIR),
        output_dir=str(tmp_path),
    )
    manifest = os.path.join(ck48_tfrecords, "manifest.json")
    message = (
        f"{manifest}: faces aligned with eye_level=0.4, eye_distance=0.3, but the model {PRETRAINED_MODEL_DIR} was "
        "trained on faces aligned with eye_level=0.38, eye_distance=0.37; preprocess the data for this model: "
        f"keras-emotion preprocess --like_model {PRETRAINED_MODEL_DIR} ..."
    )
    with pytest.raises(AlignmentMismatchError, match=f"^{re.escape(message)}$"):
        train(config, verbose=0)
    assert not os.path.exists(os.path.join(config.output_dir, "history.csv"))


def model_step_errors(config) -> dict:
    """One `fit` step of the real model, compiled as `train` compiles it, against a
    GradientTape gradient.

    `config` must have momentum 0 and weight decay 0. The reference gradient is taken on one
    batch of `config.val_data` (cross-entropy of p(c) plus the model's add_loss terms), outside
    any strategy. A copy of the model then takes one step inside `get_strategy().scope()`.

    Returns:
        {"backbone": err, "head": err, "backbone_grad": g, "head_grad": g}: err is
        max |delta - (-lr * grad)| / max |lr * grad| over the group, g its largest |grad|.
    """
    features, labels = next(iter(build_dataset(config.val_data)))
    keras.utils.set_random_seed(config.seed)
    reference = build_model(config.model)
    with tf.GradientTape() as tape:
        probabilities = reference(features, training=True)["probabilities"]
        loss = classification_loss()(labels, probabilities) + sum(reference.losses)
    variables = reference.trainable_variables
    gradients = {v.path: g.numpy() for v, g in zip(variables, tape.gradient(loss, variables))}

    with get_strategy().scope():
        model = build_model(config.model)
        model.set_weights(reference.get_weights())
        training_model = probabilities_model(model)
        backbone = backbone_variables(model)
        training_model.compile(
            optimizer=two_rate_sgd(config, backbone, head_variables(model), steps_per_epoch=1),
            loss=classification_loss(),
        )
    before = {v.path: v.numpy() for v in model.trainable_variables}
    training_model.fit(tf.data.Dataset.from_tensors((features, labels)), epochs=1, shuffle=False, verbose=0)

    after = {v.path: v.numpy() for v in model.trainable_variables}
    backbone_paths = {v.path for v in backbone}
    result = {}
    for group, learning_rate in (("backbone", config.backbone_lr), ("head", config.head_lr)):
        paths = [path for path in after if (path in backbone_paths) == (group == "backbone")]
        result[group] = relative_error(
            [after[path] - before[path] for path in paths], [-learning_rate * gradients[path] for path in paths]
        )
        result[f"{group}_grad"] = float(max(np.max(np.abs(gradients[path])) for path in paths))
    return result


def test_compiled_model_moves_each_group_at_its_rate(ck48_raw_tfrecords):
    """The real model with its attention penalty: backbone at 1e-3, the rest at 0.1."""
    data = InputConfig(ck48_raw_tfrecords, num_frames=NUM_FRAMES, image_size=IMAGE_SIZE, global_batch_size=2)
    config = TrainConfig(
        train_data=data,
        val_data=data,
        model=ModelConfig(num_frames=NUM_FRAMES, image_size=IMAGE_SIZE, num_classes=3),
        backbone_lr=1e-3,
        head_lr=0.1,
        momentum=0.0,
        weight_decay=0.0,
    )
    errors = model_step_errors(config)
    assert errors["backbone_grad"] > 0 and errors["head_grad"] > 0, errors
    assert errors["backbone"] < 1e-3 and errors["head"] < 1e-3, errors


def test_mixed_precision_trains_with_float32_probabilities(ck48_raw_tfrecords, tmp_path):
    """The SA model (its penalty is added in float32) under mixed_bfloat16 (float16 is
    emulated, and slow, on CPUs; its loss scaling is tested in test_optimizers)."""
    data = InputConfig(ck48_raw_tfrecords, num_frames=NUM_FRAMES, image_size=IMAGE_SIZE, global_batch_size=4)
    config = TrainConfig(
        train_data=data,
        model=ModelConfig(num_frames=NUM_FRAMES, image_size=IMAGE_SIZE, num_classes=3, spatial="sa"),
        epochs=1,
        steps_per_epoch=2,
        mixed_precision="mixed_bfloat16",
        output_dir=str(tmp_path),
    )
    model, history = train(config, verbose=0)
    assert keras.config.dtype_policy().name == "float32", "the global policy is restored"
    assert model.get_layer("frame_scores").compute_dtype == "bfloat16"
    assert model.get_layer("structured_self_attention").compute_dtype == "bfloat16"
    assert probabilities_model(model).output.dtype == "float32"
    assert np.isfinite(history.history["loss"]).all()


def test_loss_guards_log_of_zero():
    probabilities = np.array([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]], dtype="float32")
    labels = np.array([0, 2])
    expected = np.mean([-np.log(1e-7), -np.log(0.5)])
    assert float(classification_loss()(labels, probabilities)) == pytest.approx(expected, rel=1e-5)


def test_loading_a_folder_without_a_model_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{MODEL_INFO_FILE} not found"):
        load_trained_model(str(tmp_path))
    (tmp_path / MODEL_INFO_FILE).write_text("{")
    (tmp_path / "model.keras").write_text("")
    with pytest.raises(ValueError, match=f"{MODEL_INFO_FILE}: not valid JSON"):
        load_trained_model(str(tmp_path))


def test_a_second_run_on_the_same_output_dir_is_refused_naming_the_first(ck48_raw_tfrecords, tmp_path, lock_holder):
    output_dir = tmp_path / "run"
    first = lock_holder(output_dir)
    data = dict(num_frames=NUM_FRAMES, image_size=IMAGE_SIZE, global_batch_size=8)
    config = TrainConfig(
        train_data=InputConfig(ck48_raw_tfrecords, training=True, **data),
        model=ModelConfig(num_classes=7, num_frames=NUM_FRAMES, image_size=IMAGE_SIZE),
        output_dir=str(output_dir),
    )
    refusal = rf"^{output_dir} is in use by another run \(holder, PID {first.pid} on "
    with pytest.raises(OutputDirInUseError, match=refusal):
        train(config, verbose=0)
    assert os.listdir(output_dir) == [".lock"], "the refused run wrote nothing"


def test_float16_weights_load_into_the_model_of_model_info(tmp_path):
    """`save_float16_weights` halves the weights; `load_trained_model` rebuilds the model from
    model_info.json (for any number of frames) and gives the outputs of the float16 weights."""
    config = ModelConfig(num_classes=3, num_frames=2, image_size=32, num_heads=1, penalty=0.0)
    model = build_model(config)
    info = ModelInfo(["a", "b", "c"], Preprocessing(32, 1.0), 2, config)
    save_float16_weights(model, str(tmp_path), info)
    loaded = load_trained_model(str(tmp_path))
    assert loaded.info == info
    for weight, stored in zip(model.weights, loaded.model.weights):
        np.testing.assert_array_equal(stored.numpy(), weight.numpy().astype(np.float16).astype(np.float32))
    frames = np.random.default_rng(0).uniform(0, 255, (2, 5, 32, 32, 3)).astype(np.float32)
    inputs = {"frames": frames, "frame_mask": np.ones((2, 5), np.float32)}
    np.testing.assert_allclose(
        loaded.model({"frames": frames[:, :2], "frame_mask": inputs["frame_mask"][:, :2]})["probabilities"],
        model({"frames": frames[:, :2], "frame_mask": inputs["frame_mask"][:, :2]})["probabilities"],
        atol=2e-3,
    )
    assert loaded.model(inputs)["probabilities"].shape == (2, 3)

    other = ModelInfo(["a", "b", "c"], Preprocessing(32, 1.0), 2, dataclasses.replace(config, frame_score_bias=True))
    write_model_info(str(tmp_path), other)
    message = (
        r"model.float16.npz: its 43 weights do not fit the 44 weights of the model in model_info.json "
        r"\(weight 43: None in the file, 'frame_scores/bias' in the model\)"
    )
    with pytest.raises(ValueError, match=message):
        load_trained_model(str(tmp_path))
