"""The crash-proof training callbacks: backups, history.csv and best weights that survive
kills (in-process here with a tiny Dense model; with real SIGKILLs of scripts/train.py in
test_train_kills.py)."""

import csv
import os

import keras
import numpy as np
import pytest

from keras_emotion.training.callbacks import (
    BROKEN_SUFFIX,
    BestWeightsCheckpoint,
    EpochBackup,
    EpochCSVLogger,
    backup_name,
    read_history,
)

INPUTS = np.linspace(-1.0, 1.0, 32, dtype=np.float32).reshape(16, 2)
TARGETS = INPUTS.sum(axis=1, keepdims=True)


class StopAtEpoch(keras.callbacks.Callback):
    """Raises when epoch `epoch` begins (a crash); records the epochs begun."""

    def __init__(self, epoch=None):
        super().__init__()
        self.epoch, self.begun = epoch, []

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError(f"crash at epoch {epoch}")
        self.begun.append(epoch)


def fit(callbacks, epochs=5):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    model.fit(INPUTS, TARGETS, batch_size=8, epochs=epochs, callbacks=callbacks, verbose=0)
    return model


def test_a_broken_backup_is_set_aside_with_a_warning_and_training_resumes_from_the_one_before(tmp_path):
    backup_dir = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="crash at epoch 3"):
        fit([EpochBackup(backup_dir), StopAtEpoch(3)])
    assert sorted(os.listdir(backup_dir)) == [backup_name(2), backup_name(3)], "this backup and the one before"
    latest = os.path.join(backup_dir, backup_name(3))
    with open(latest, "r+b") as file:
        file.truncate(os.path.getsize(latest) // 2)

    recorder = StopAtEpoch()
    with pytest.warns(UserWarning) as warned:
        fit([EpochBackup(backup_dir), recorder])
    (warning,) = [w for w in warned if "broken backup" in str(w.message)]
    assert str(warning.message).startswith(f"{latest}: broken backup (OSError: ")
    assert str(warning.message).endswith(f"set aside as {latest}{BROKEN_SUFFIX}; resuming from the previous backup, if any")
    assert recorder.begun == [2, 3, 4]
    assert not os.path.exists(backup_dir), "removed when training completes"


def test_a_resumed_run_continues_with_the_weights_of_the_backup(tmp_path):
    uninterrupted = fit([], epochs=4)
    backup_dir = str(tmp_path / "backup")
    with pytest.raises(RuntimeError):
        fit([EpochBackup(backup_dir), StopAtEpoch(2)], epochs=4)
    temp_file = os.path.join(backup_dir, ".epoch-00003.tmp.weights.h5")
    with open(temp_file, "wb") as file:
        file.write(b"half a backup")  # what a kill while writing leaves
    resumed = fit([EpochBackup(backup_dir)], epochs=4)
    for expected, found in zip(uninterrupted.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(found, expected, rtol=1e-6)


def test_history_rows_are_keyed_by_epoch_so_repeated_epochs_replace_their_rows(tmp_path):
    path = str(tmp_path / "history.csv")
    logger = EpochCSVLogger(path)
    for epoch, loss in [(0, 1.0), (1, 0.5), (2, 0.25), (1, 0.75), (2, 0.5), (3, np.float32(0.125))]:
        logger.on_epoch_end(epoch, {"loss": loss, "accuracy": 0.5})
    with open(path, newline="") as file:
        assert list(csv.reader(file)) == [
            ["epoch", "accuracy", "loss"],
            ["0", "0.5", "1.0"],
            ["1", "0.5", "0.75"],
            ["2", "0.5", "0.5"],
            ["3", "0.5", "0.125"],
        ]
    logger.on_epoch_end(0, {"loss": 2.0})  # a fresh run in the same folder starts the file again
    assert read_history(path) == [{"epoch": "0", "loss": "2.0"}]
    assert os.listdir(tmp_path) == ["history.csv"]


def test_best_weights_of_a_resumed_run_must_beat_the_earlier_epochs(tmp_path):
    history = str(tmp_path / "history.csv")
    weights = str(tmp_path / "checkpoints" / "best.weights.h5")
    logger = EpochCSVLogger(history)
    for epoch, accuracy in enumerate([0.25, 0.75, 0.5, 0.9]):
        logger.on_epoch_end(epoch, {"accuracy": accuracy})
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    os.makedirs(os.path.dirname(weights))
    model.save_weights(weights)
    saved = os.stat(weights).st_ino

    checkpoint = BestWeightsCheckpoint(weights, "accuracy", history)
    checkpoint.set_model(model)
    checkpoint.on_epoch_begin(3)  # resumed at epoch 3: epochs 0..2 count, the lost epoch 3 not
    checkpoint.on_epoch_end(3, {"accuracy": 0.7})
    assert (checkpoint.best, os.stat(weights).st_ino) == (0.75, saved)
    checkpoint.on_epoch_end(4, {"accuracy": 0.8})
    assert checkpoint.best == 0.8 and os.stat(weights).st_ino != saved, "a new file renamed into place"
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["best.weights.h5"]

    fresh = BestWeightsCheckpoint(weights, "accuracy", history)
    fresh.set_model(model)
    fresh.on_epoch_begin(0)
    assert fresh.best is None, "a run from epoch 0 ignores an earlier run's history"
