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

Files under `config.output_dir` (the chief's; other workers use `workers/<task>`), a
`run_folder.RunFolder`:

    .lock                     `files.OutputDirLock`: one training run per folder
    train_config.json         the TrainConfig of the run
    backup/                   `callbacks.EpochBackup` state (deleted when training completes)
    checkpoints/best.weights.h5   weights of the best epoch (val_accuracy, else accuracy)
    history.csv               one row per epoch: loss, accuracy, val_*, learning rates
    logs/                     TensorBoard
    trained/                  `models.saving.save_trained_model` of the best epoch: model.keras,
                              model_info.json (with the training data's face alignment)

    initial_backbone.weights.h5   the backbone of the trained model the run starts from, if any

Fine-tuning: `config.model.backbone_weights` may name a trained-model directory (the shipped
model's included); the run starts from its backbone (copied into the run folder, then loaded
like any backbone weights file), once its training faces are found to be aligned like the
training data's (`ModelInfo.check_alignment`).

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
from keras import tree

from keras_emotion.data.config import InputConfig
from keras_emotion.data.integrity import verify_shards
from keras_emotion.data.faces import AlignmentConfig
from keras_emotion.data.manifest import data_folder, manifest_path, read_manifest
from keras_emotion.data.metadata import batches_per_pass, read_class_names
from keras_emotion.data.pipeline import build_dataset, list_shards
from keras_emotion.files import atomic_write
from keras_emotion.models import ModelConfig, backbone_variables, build_model, head_variables
from keras_emotion.models.backbones import BACKBONE_NAME, KERAS3_WEIGHTS_SUFFIX
from keras_emotion.models.info import MODEL_INFO_FILE
from keras_emotion.models.saving import load_trained_model, save_trained_model
from keras_emotion.training.config import TrainConfig
from keras_emotion.training.distribution import get_strategy, is_multi_worker, worker_output_dir
from keras_emotion.training.optimizers import group_learning_rates, two_rate_sgd
from keras_emotion.training.run_folder import RunFolder


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
    run = RunFolder(worker_output_dir(strategy, config.output_dir))
    with run.lock("train"):
        return _train_in_locked_dir(config, callbacks, verbose, strategy, run)


def _train_in_locked_dir(config: TrainConfig, callbacks, verbose, strategy, run: RunFolder) -> tuple:
    """`train` once `run`, the folder of this worker, is locked."""
    for input_config in filter(None, (config.train_data, config.val_data)):
        verify_shards(list_shards(input_config), config.allow_incomplete)
    config.to_json(run.config_path)

    train_input = dataclasses.replace(config.train_data, repeat=True)
    class_names = read_class_names(train_input, config.model.num_classes)
    steps_per_epoch = config.steps_per_epoch or batches_per_pass(train_input)
    manifest = read_manifest(train_input)
    data_alignment = None if manifest is None else manifest.alignment
    backbone_weights = _backbone_weights_file(config.model, data_alignment, manifest_path(train_input), run)

    keras.utils.set_random_seed(config.seed)
    with _global_dtype_policy(config.mixed_precision), strategy.scope():
        model = build_model(dataclasses.replace(config.model, backbone_weights=backbone_weights))
        training_model = probabilities_model(model)
        training_model.compile(
            optimizer=two_rate_sgd(config, backbone_variables(model), head_variables(model), steps_per_epoch),
            loss=classification_loss(),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )

    def distribute(input_config: InputConfig):
        return strategy.distribute_datasets_from_function(lambda context: build_dataset(input_config, context))

    task_callbacks = [
        LearningRateLogger(),
        keras.callbacks.TensorBoard(run.logs_dir, write_graph=False),
        *run.callbacks("val_accuracy" if config.val_data else "accuracy"),
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
    training_model.load_weights(run.best_weights)
    save_trained_model(
        model,
        os.path.join(run.path, "trained"),
        config.model,
        train_input,
        class_names,
        alignment=data_alignment,
        training_data=[data_folder(train_input)],
    )
    run.finish()
    return model, history


def _backbone_weights_file(
    config: ModelConfig, data_alignment: Optional[AlignmentConfig], data: str, run: RunFolder
) -> Optional[str]:
    """`config.backbone_weights`, or, where it names a trained-model directory, that model's
    backbone weights written to `run.initial_backbone_weights` once its training
    faces are found to be framed like the training data's; `data_alignment` is the training
    data's (None: unknown), `data` names the data.

    Raises:
        models.info.AlignmentMismatchError: the faces are framed otherwise (naming both).
        ValueError: the trained model has another backbone (naming it and both backbones).
    """
    source = config.backbone_weights
    if not source or not os.path.isfile(os.path.join(source, MODEL_INFO_FILE)):
        return source
    trained = load_trained_model(source)
    trained.info.check_alignment(data_alignment, data, source)
    source_backbone = trained.info.model_config.backbone if trained.info.model_config else "unknown"
    if source_backbone != config.backbone:
        raise ValueError(f"{source}: its backbone is {source_backbone}, not {config.backbone}; give --backbone {source_backbone}")
    weights_file = run.initial_backbone_weights
    with atomic_write(weights_file, keep_suffix=KERAS3_WEIGHTS_SUFFIX) as temp:
        trained.model.get_layer(BACKBONE_NAME).save_weights(temp)
    return weights_file


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


@contextlib.contextmanager
def _global_dtype_policy(name: str):
    """Sets Keras' global dtype policy ("none" = float32) while the model is built."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32" if name == "none" else name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
