"""The crash-proof training callbacks: backups, history.csv and best weights that survive
kills: in-process with a tiny Dense model, and real SIGKILLs of scripts/train.py."""

import csv
import json
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_emotion.training.callbacks import (
    BACKUP_PATTERN,
    BROKEN_SUFFIX,
    BestWeightsCheckpoint,
    EpochBackup,
    EpochCSVLogger,
    backup_name,
    read_history,
)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
TRAIN_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}  # a killed run's log is complete
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
    assert str(warning.message).endswith(
        f"set aside as {latest}{BROKEN_SUFFIX}; resuming from the previous backup, if any"
    )
    assert recorder.begun == [2, 3, 4]
    assert sorted(os.listdir(backup_dir)) == [f"{backup_name(3)}{BROKEN_SUFFIX}", backup_name(4), backup_name(5)]


def test_a_rerun_after_fit_ended_trains_no_epoch_and_keeps_the_weights(tmp_path):
    """The last backup stays when fit returns (the loop deletes it once its outputs are written):
    a run killed after fit and before them resumes with no epoch left to train."""
    backup_dir = str(tmp_path / "backup")
    trained = fit([EpochBackup(backup_dir)], epochs=3)
    assert sorted(os.listdir(backup_dir)) == [backup_name(2), backup_name(3)]
    recorder = StopAtEpoch()
    rerun = fit([EpochBackup(backup_dir), recorder], epochs=3)
    assert recorder.begun == []
    for expected, found in zip(trained.get_weights(), rerun.get_weights()):
        np.testing.assert_array_equal(found, expected)


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


EPOCHS = 24
CK48_CLASSES = ["anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"]


@pytest.fixture(scope="module")
def tiny_data(ck48_raw_tfrecords, tmp_path_factory) -> str:
    """The unaligned CK+48 shards with a manifest naming the 7 classes."""
    directory = tmp_path_factory.mktemp("tiny_data")
    for name in os.listdir(ck48_raw_tfrecords):
        shutil.copy(os.path.join(ck48_raw_tfrecords, name), directory)
    (directory / "manifest.json").write_text(json.dumps({"complete": True, "class_names": CK48_CLASSES}))
    return str(directory)


def start_training(tmp_path, train_dir, run: str) -> tuple:
    """scripts/train.py of a tiny model on tiny clips (epochs of about 0.1 s) into tmp_path/out,
    in the background; (process, its log file)."""
    log = tmp_path / f"{run}.log"
    command = [
        sys.executable, str(REPO_ROOT / "scripts" / "train.py"), f"--data={train_dir}",
        "--val_split=", "--num_frames=3", "--image_size=16", "--batch_size=4",
        "--steps_per_epoch=2", f"--epochs={EPOCHS}",
        f"--restart_epochs={EPOCHS}", "--verbose=2", f"--output_dir={tmp_path / 'out'}",
    ]
    with open(log, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=TRAIN_ENV)
    return process, log


def wait_for(condition, process, log, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"train.py ended before {what}: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def history_epochs(output_dir) -> list:
    return [int(row["epoch"]) for row in read_history(str(output_dir / "history.csv"))]


def newest_backup(output_dir) -> int:
    """Epochs done by the newest backup in output_dir/backup (0 without one)."""
    backup_dir = output_dir / "backup"
    names = os.listdir(backup_dir) if backup_dir.is_dir() else []
    return max((int(match.group("epoch")) for name in names if (match := BACKUP_PATTERN.match(name))), default=0)


def first_epoch_run(log) -> int:
    """The 0-based first epoch a train.py run started (Keras prints "Epoch 5/24" for epoch 4)."""
    return int(re.search(r"^Epoch (\d+)/", log.read_text(), re.MULTILINE).group(1)) - 1


def test_train_killed_at_random_moments_resumes_and_logs_every_epoch_once(tiny_data, tmp_path):
    """3 SIGKILLs at random moments of random epochs (backups being written included), then a
    run to the end."""
    output_dir = tmp_path / "out"
    moments = random.Random(3)
    for kill in range(3):
        process, log = start_training(tmp_path, tiny_data, f"killed{kill}")
        resumes_at = newest_backup(output_dir)
        wait_for(lambda: newest_backup(output_dir) > resumes_at, process, log, 60, "an epoch of the new run")
        started = time.monotonic()
        wait_for(lambda: newest_backup(output_dir) > resumes_at + 1, process, log, 60, "a second epoch")
        epoch_seconds = time.monotonic() - started
        time.sleep(moments.uniform(0.0, epoch_seconds))  # anywhere in the next epoch: its row, best weights, backup
        assert process.poll() is None
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        assert first_epoch_run(log) == resumes_at, "each rerun resumes from the newest backup"
        logged = history_epochs(output_dir)
        assert logged == list(range(len(logged))), "each epoch once, no gap"
        assert newest_backup(output_dir) <= len(logged), "an epoch's row is written before its backup"
        assert not os.path.exists(f"/proc/{process.pid}"), "killed"

    resumes_at = newest_backup(output_dir)
    assert resumes_at > 0
    process, log = start_training(tmp_path, tiny_data, "final")
    assert process.wait(timeout=120) == 0, log.read_text()[-3000:]
    assert first_epoch_run(log) == resumes_at
    assert "taking over the stale lock of PID" in log.read_text()
    assert history_epochs(output_dir) == list(range(EPOCHS))
    leftovers = [os.path.join(folder, name) for folder, _, names in os.walk(output_dir) for name in names]
    assert not [path for path in leftovers if ".tmp" in path or path.endswith(".lock")], leftovers
    assert not (output_dir / "backup").exists()
    assert (output_dir / "trained" / "model.keras").is_file()
