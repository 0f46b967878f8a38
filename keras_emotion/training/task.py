"""The training task: data + model + loss + optimizer + callbacks, in one place.

Modelled on the tasks of tensorflow/models `official/`: `train(config)` reads a `TrainConfig`,
builds everything inside the distribution strategy's scope and runs `model.fit`.

    strategy   = distribution.get_strategy()            (MirroredStrategy / MultiWorkerMirrored)
    inputs     = strategy.distribute_datasets_from_function(pipeline.build_dataset)
                 (each input pipeline reads its share of the shards, batches per replica)
    model      = models.build_model(config.model)        (inside strategy.scope())
    loss       = sparse cross-entropy of p(c), "probabilities" (B, E), clipped away from 0,
                 + the spatial-attention penalty, which the model adds with add_loss
    optimizer  = optimizers.two_rate_sgd                 (SGD + SGDR, backbone lr / head lr)
    callbacks  = learning rates -> logs, TensorBoard, history.csv, best-epoch weights,
                 backup (training.callbacks: each written atomically), console progress

Files under `config.output_dir` (the chief's; other workers use `workers/<task>`):

    .lock                     `files.OutputDirLock`: one training run per folder
    train_config.json         the TrainConfig of the run
    backup/                   `callbacks.EpochBackup` state (deleted when training completes)
    checkpoints/best.weights.h5   weights of the best epoch (val_accuracy, else accuracy)
    history.csv               one row per epoch: loss, accuracy, val_*, learning rates
    logs/                     TensorBoard
    trained/                  `save_trained_model` of the best epoch: model.keras, model_info.json

A trained-model directory holds model_info.json and either model.keras or, for a model that
ships inside the package, model.float16.npz (`save_float16_weights`: every weight in float16,
rebuilt from the ModelConfig in model_info.json when loaded).

The model is compiled through a one-output view, `keras.Model(inputs, probabilities)`, that
shares every layer and weight with the built model: Keras can then pair the (B,) labels with
p(c) without dummy targets for "frame_importance" and "spatial_attention".
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings
from typing import Optional, Sequence

import keras
import numpy as np
from keras import tree

from keras_emotion.data.config import InputConfig
from keras_emotion.data.integrity import verify_shards
from keras_emotion.data.metadata import batches_per_pass, read_class_names, read_manifest
from keras_emotion.data.pipeline import build_dataset, list_shards
from keras_emotion.files import OutputDirLock, atomic_write
from keras_emotion.models import ModelConfig, backbone_variables, build_model, head_variables, with_any_number_of_frames
from keras_emotion.models.info import ModelInfo, Preprocessing, read_model_info, write_model_info
from keras_emotion.training.callbacks import BestWeightsCheckpoint, EpochBackup, EpochCSVLogger
from keras_emotion.training.config import TrainConfig
from keras_emotion.training.distribution import get_strategy, is_multi_worker, worker_output_dir
from keras_emotion.training.optimizers import group_learning_rates, two_rate_sgd

MODEL_FILE = "model.keras"
FLOAT16_WEIGHTS_FILE = "model.float16.npz"
BACKUP_DIR = "backup"
BEST_WEIGHTS_FILE = os.path.join("checkpoints", "best.weights.h5")
HISTORY_FILE = "history.csv"


@dataclasses.dataclass
class TrainedModel:
    """A model saved by `save_trained_model`, with what is needed to feed it.

    Attributes:
        model: the Keras model; inputs {"frames": (B, F, S, S, 3) float32 0..255,
            "frame_mask": (B, F) float32}, outputs {"probabilities": (B, E), ...}.
        info: its `models.info.ModelInfo` (class names, preprocessing, F, ModelConfig, the
            training data's manifest).
    """

    model: keras.Model
    info: ModelInfo

    def input_config(self, file_pattern: str, **overrides) -> InputConfig:
        """An evaluation InputConfig that preprocesses like training did (centre crop,
        uniform sampling); `overrides` set any other InputConfig field."""
        values = dict(
            file_pattern=file_pattern,
            training=False,
            num_frames=self.info.num_frames,
            image_size=self.info.preprocessing.image_size,
            crop_fraction=self.info.preprocessing.crop_fraction,
        )
        values.update(overrides)
        return InputConfig(**values)


def train(
    config: TrainConfig, callbacks: Sequence[keras.callbacks.Callback] = (), verbose="auto"
) -> tuple:
    """Trains the model of `config` and saves it under `config.output_dir/trained`.

    Resumes from `config.output_dir/backup` when a previous run of the same config was
    interrupted. Checks every shard first (`integrity.verify_shards`) and holds the lock of
    the output folder (`files.OutputDirLock`) while it runs. Call it before any other
    TensorFlow work in the process (the strategy, in particular MultiWorkerMirroredStrategy,
    must be created first).

    Args:
        config: the TrainConfig.
        callbacks: extra Keras callbacks, run after the task's own.
        verbose: `model.fit` verbosity (progress bar, one line per epoch, or silent).

    Returns:
        (model, history): the built model (dict outputs) holding the weights of the best epoch
        (best val_accuracy; best training accuracy without validation data), and the
        `keras.callbacks.History` of `fit`.

    Raises:
        files.OutputDirInUseError: another live run holds the output folder (naming it).
        integrity.DataIntegrityError: a corrupt shard, or an unfinished preprocessing run
            without `config.allow_incomplete` (naming the file).
    """
    strategy = get_strategy()
    output_dir = worker_output_dir(strategy, config.output_dir)
    with OutputDirLock(output_dir, "train"):
        return _train_in_locked_dir(config, callbacks, verbose, strategy, output_dir)


def _train_in_locked_dir(config: TrainConfig, callbacks, verbose, strategy, output_dir: str) -> tuple:
    """`train` once `output_dir`, the folder of this worker, is locked."""
    for input_config in filter(None, (config.train_data, config.val_data)):
        verify_shards(list_shards(input_config), config.allow_incomplete)
    os.makedirs(output_dir, exist_ok=True)
    config.to_json(os.path.join(output_dir, "train_config.json"))

    train_input = dataclasses.replace(config.train_data, repeat=True)
    class_names = read_class_names(train_input, config.model.num_classes)
    steps_per_epoch = config.steps_per_epoch or batches_per_pass(train_input)

    keras.utils.set_random_seed(config.seed)
    with _global_dtype_policy(config.mixed_precision), strategy.scope():
        model = build_model(config.model)
        training_model = probabilities_model(model)
        training_model.compile(
            optimizer=two_rate_sgd(config, backbone_variables(model), head_variables(model), steps_per_epoch),
            loss=classification_loss(),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )

    def distribute(input_config: InputConfig):
        return strategy.distribute_datasets_from_function(lambda context: build_dataset(input_config, context))

    monitor = "val_accuracy" if config.val_data else "accuracy"
    backup_dir = os.path.join(output_dir, BACKUP_DIR)
    best_weights = os.path.join(output_dir, BEST_WEIGHTS_FILE)
    history_csv = os.path.join(output_dir, HISTORY_FILE)
    # Row, best weights, then backup (see training.callbacks): a kill between them makes the
    # rerun repeat the epoch, rewriting its row.
    task_callbacks = [
        LearningRateLogger(),
        keras.callbacks.TensorBoard(os.path.join(output_dir, "logs"), write_graph=False),
        EpochCSVLogger(history_csv),
        BestWeightsCheckpoint(best_weights, monitor, history_csv),
        EpochBackup(backup_dir),
    ]
    with warnings.catch_warnings():
        # The training data repeats forever, so only the validation data can "run out": that
        # is how Keras finds the end of a validation pass, not a problem.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        history = training_model.fit(
            distribute(train_input),
            epochs=config.epochs,
            steps_per_epoch=steps_per_epoch,
            shuffle=False,  # the input pipeline shuffles
            validation_data=distribute(config.val_data) if config.val_data else None,
            callbacks=task_callbacks + list(callbacks),
            verbose=verbose,
        )
    training_model.load_weights(best_weights)
    save_trained_model(
        model,
        os.path.join(output_dir, "trained"),
        config.model,
        train_input,
        class_names,
        read_manifest(train_input),
    )
    return model, history


def classification_loss() -> keras.losses.Loss:
    """Mean over the batch of -log p(c_true), labels int (B,), probabilities (B, E).

    Keras clips the probabilities to [1e-7, 1 - 1e-7] (`keras.config.epsilon()`) before the
    log, so a class given probability 0 costs -log(1e-7) instead of infinity.
    """
    return keras.losses.SparseCategoricalCrossentropy(from_logits=False)


def probabilities_model(model: keras.Model) -> keras.Model:
    """A one-output view of `model`: same inputs, output p(c) (B, E) (float32, as `build_model`
    makes every output).

    It calls `model` as a layer, so it shares all weights and collects its add_loss terms.
    """
    inputs = {
        name: keras.Input(shape=tensor.shape[1:], dtype=tensor.dtype, name=name)
        for name, tensor in model.input.items()
    }
    return _MultiWorkerSafeModel(inputs, model(inputs)["probabilities"], name=f"{model.name}_probabilities")


class _MultiWorkerSafeModel(keras.Model):
    """A functional model whose `fit` also runs under a multi-worker strategy.

    Works around two bugs of Keras 3.15's TensorFlow trainer with MultiWorkerMirroredStrategy
    over several workers (keras-team/keras#20329, tensorflow/tensorflow#72388):

    - before the first step Keras reduces the whole first batch with one `strategy.reduce`,
      only to learn the input shapes, and the strategy rejects nested values ("Attempt to
      convert a value ({'frames': PerReplica...}) ... to a Tensor"). The shapes are taken
      from the first local replica's tensors instead, which needs no communication.
    - Keras averages each step's logs across workers with `strategy.reduce("MEAN", v,
      axis=0)`, which fails on the scalar loss and metrics ("Invalid reduction dimension 0
      for input with 0 dimensions"). With several workers each log gets a leading axis of
      length 1 that this reduction then removes.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tree.map_structure(
                    lambda value: self.distribute_strategy.experimental_local_results(value)[0], next(batches)
                )
                break
        super()._maybe_symbolic_build(data_batch=data_batch)

    def train_step(self, data):
        return self._logs_for_reduction(super().train_step(data))

    def test_step(self, data):
        return self._logs_for_reduction(super().test_step(data))

    def _logs_for_reduction(self, logs: dict) -> dict:
        if not is_multi_worker(self.distribute_strategy):
            return logs
        return {name: keras.ops.expand_dims(value, 0) for name, value in logs.items()}


class LearningRateLogger(keras.callbacks.Callback):
    """Adds each parameter group's learning rate at the end of an epoch to the logs
    ("lr_backbone_sgd", "lr_head_sgd"), so CSVLogger and TensorBoard record them."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update({f"lr_{name}": rate for name, rate in group_learning_rates(self.model.optimizer).items()})


def save_trained_model(
    model: keras.Model,
    directory: str,
    model_config: ModelConfig,
    input_config: InputConfig,
    class_names: Sequence[str],
    dataset_manifest: Optional[dict] = None,
) -> str:
    """Saves `model` (without optimizer) and its `ModelInfo` (`models.info`: class names, the
    preprocessing and num_frames of `input_config`, the model config, the dataset manifest).

    Writes `<directory>/model.keras`, then `<directory>/model_info.json`. Each is written under
    a temporary name and renamed, the info last, so a directory with a model_info.json is
    complete.

    Returns:
        The path of the `.keras` file.
    """
    info = ModelInfo(
        class_names=class_names,
        preprocessing=Preprocessing(input_config.image_size, input_config.crop_fraction),
        num_frames=input_config.num_frames,
        model_config=model_config,
        dataset_manifest=dataset_manifest,
        keras_version=keras.__version__,
    )
    model_path = os.path.join(directory, MODEL_FILE)
    with atomic_write(model_path, keep_suffix=".keras") as temp:
        model.save(temp, include_optimizer=False)
    write_model_info(directory, info)
    return model_path


def save_float16_weights(model: keras.Model, directory: str, info: ModelInfo) -> str:
    """Saves `model`'s weights in float16 (half the size of model.keras) with its ModelInfo.

    Writes `<directory>/model.float16.npz` (arrays "0", "1", ... in `model.weights` order,
    and "paths", their variable paths), then `<directory>/model_info.json`, each atomically.
    `info.model_config` must describe `model`: `load_trained_model` rebuilds it from there.

    Returns:
        The path of the `.npz` file.
    """
    if info.model_config is None:
        raise ValueError("save_float16_weights: the ModelInfo needs the model_config to rebuild the model")
    arrays = {str(index): keras.ops.convert_to_numpy(weight).astype(np.float16) for index, weight in enumerate(model.weights)}
    arrays["paths"] = np.array([weight.path for weight in model.weights])
    path = os.path.join(directory, FLOAT16_WEIGHTS_FILE)
    with atomic_write(path, keep_suffix=".npz") as temp:
        with open(temp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    write_model_info(directory, info)
    return path


def _load_float16_weights(path: str, info: ModelInfo) -> keras.Model:
    """The model of `info.model_config` (any number of frames) holding the weights in `path`."""
    if info.model_config is None:
        raise ValueError(f"{path}: its model_info.json has no model_config to rebuild the model from")
    model = build_model(dataclasses.replace(info.model_config, backbone_weights=None))
    with np.load(path) as stored:
        paths = [str(name) for name in stored["paths"]]
        expected = [weight.path for weight in model.weights]
        if paths != expected:
            first = next(index for index, pair in enumerate(zip(paths + [None], expected + [None])) if pair[0] != pair[1])
            raise ValueError(
                f"{path}: its {len(paths)} weights do not fit the {len(expected)} weights of the model in "
                f"model_info.json (weight {first}: {(paths + [None])[first]!r} in the file, "
                f"{(expected + [None])[first]!r} in the model)"
            )
        for index, weight in enumerate(model.weights):
            weight.assign(stored[str(index)].astype(weight.dtype))
    return with_any_number_of_frames(model)


def load_trained_model(directory: str) -> TrainedModel:
    """Loads what `save_trained_model` or `save_float16_weights` wrote in `directory` (for
    inference: not compiled).

    Raises:
        FileNotFoundError: `directory` lacks model_info.json, or both model.keras and
            model.float16.npz (naming it).
        ValueError: model_info.json is not valid JSON or has another format version, or the
            float16 weights do not fit its model_config.
    """
    what = "a trained-model directory (or saving it was interrupted)"
    info = read_model_info(directory, what=what)
    model_path = os.path.join(directory, MODEL_FILE)
    float16_path = os.path.join(directory, FLOAT16_WEIGHTS_FILE)
    if os.path.isfile(model_path):
        return TrainedModel(model=keras.models.load_model(model_path, compile=False), info=info)
    if os.path.isfile(float16_path):
        return TrainedModel(model=_load_float16_weights(float16_path, info), info=info)
    raise FileNotFoundError(f"{model_path} not found: {directory} is not {what}")


@contextlib.contextmanager
def _global_dtype_policy(name: str):
    """Sets Keras' global dtype policy ("none" = float32) while the model is built."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32" if name == "none" else name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
