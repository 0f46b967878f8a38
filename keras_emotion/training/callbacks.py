"""Training callbacks that survive being killed at any moment (SIGKILL included).

`EpochBackup`        backs the training state (model and optimizer weights) up at the end of
                     every epoch and restores it when a run of the same config starts again.
                     Each backup is a new file `epoch-NNNNN.weights.h5` (N = epochs done)
                     written under a temporary name and renamed, so the epoch always matches
                     the weights; the previous one is kept until the next is complete. A
                     backup whose file cannot be read in full (a disk fault, an older writer)
                     is renamed `<name>.broken` with a warning naming it, and the next older
                     one is tried; weights that do not fit the model (another config) raise.
                     The last backup stays when `fit` returns: the training loop deletes the
                     folder once the model and report it writes after `fit` are complete
                     (`run_folder.RunFolder.finish`), so a run killed between the two resumes
                     with zero epochs left to train instead of training again.
`EpochCSVLogger`     history.csv with one row per epoch: at the end of epoch e it rewrites the
                     file (atomically) with the rows of epochs before e and the row of e. A
                     rerun that repeats epochs overwrites their rows, so after any number of
                     kills and reruns every epoch is there exactly once.
`BestWeightsCheckpoint`  the weights of the best epoch so far, written atomically; a
                     resumed run must beat the best value history.csv holds for the epochs
                     before the one it starts at.

Order them logger, checkpoint, then backup: a kill between them makes the rerun repeat the
epoch whose backup is missing, which rewrites its row and checkpoint.
"""

from __future__ import annotations

import csv
import glob
import math
import os
import re
import warnings
from typing import Optional

import h5py
import keras

from keras_emotion.files import atomic_write

BACKUP_PATTERN = re.compile(r"^epoch-(?P<epoch>\d{5})\.weights\.h5$")
BROKEN_SUFFIX = ".broken"


def backup_name(epochs_done: int) -> str:
    """File name of the backup taken after `epochs_done` epochs."""
    return f"epoch-{epochs_done:05d}.weights.h5"


class EpochBackup(keras.callbacks.Callback):
    """Backs up the training state after every epoch and resumes from it (see the module doc).

    Args:
        backup_dir: folder of the backups, used by nothing else; the training loop deletes it
            once the outputs it writes after `fit` are complete.
    """

    def __init__(self, backup_dir: str):
        super().__init__()
        self.backup_dir = backup_dir

    def on_train_begin(self, logs=None):
        if not os.path.isdir(self.backup_dir):
            return
        for leftover in glob.glob(os.path.join(self.backup_dir, ".*")):
            os.remove(leftover)  # temporary files of a backup that was being written when killed
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        for epochs_done, path in sorted(self._backups(), reverse=True):
            problem = unreadable_weights_file(path)
            if problem is not None:
                os.replace(path, path + BROKEN_SUFFIX)
                warnings.warn(
                    f"{path}: broken backup ({problem}), set aside as {path + BROKEN_SUFFIX}; "
                    "resuming from the previous backup, if any",
                    stacklevel=2,
                )
                continue
            self.model.load_weights(path)
            self.model._initial_epoch = epochs_done  # what keras.callbacks.BackupAndRestore sets
            return

    def on_epoch_end(self, epoch, logs=None):
        path = os.path.join(self.backup_dir, backup_name(epoch + 1))
        with atomic_write(path, keep_suffix=".weights.h5") as temp:
            self.model.save_weights(temp)
        for epochs_done, older in self._backups():
            if epochs_done < epoch:
                os.remove(older)  # keeps this backup and the one before it

    def _backups(self) -> list:
        """(epochs done, path) of every backup file."""
        if not os.path.isdir(self.backup_dir):
            return []
        return [
            (int(match.group("epoch")), os.path.join(self.backup_dir, name))
            for name in os.listdir(self.backup_dir)
            if (match := BACKUP_PATTERN.match(name))
        ]


def unreadable_weights_file(path: str) -> Optional[str]:
    """Why the HDF5 file `path` cannot be read in full (truncated, not HDF5, a damaged
    object), or None when every dataset in it reads back."""

    def read_dataset(_, item):
        if isinstance(item, h5py.Dataset):
            item[()]

    try:
        with h5py.File(path, "r") as file:
            file.visititems(read_dataset)
    except Exception as error:  # noqa: BLE001 - h5py raises OSError, KeyError, RuntimeError...
        return f"{type(error).__name__}: {error}".splitlines()[0]
    return None


class EpochCSVLogger(keras.callbacks.Callback):
    """Writes `path` at the end of every epoch e: the rows of the epochs before e already in
    the file, then the row of e (columns "epoch" and the sorted log names), atomically."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        rows = [row for row in read_history(self.path) if int(row["epoch"]) < epoch]
        rows.append({"epoch": epoch, **{name: _csv_value(value) for name, value in (logs or {}).items()}})
        columns = ["epoch"] + sorted({name for row in rows for name in row} - {"epoch"})
        with atomic_write(self.path) as temp, open(temp, "w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, columns, restval="")
            writer.writeheader()
            writer.writerows(rows)


def read_history(path: str) -> list:
    """The rows of a history.csv as dicts of strings; [] when there is no such file."""
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def _csv_value(value) -> str:
    number = float(keras.ops.convert_to_numpy(value))
    return repr(number) if math.isfinite(number) else str(number)


class BestWeightsCheckpoint(keras.callbacks.Callback):
    """Saves the weights, atomically, at the end of every epoch whose `monitor` beats the best
    value so far (larger is better).

    A resumed run starting at epoch k must beat the best `monitor` of epochs 0 .. k-1 in
    `history_path` (the EpochCSVLogger's file), when the weights file exists.

    Args:
        path: the weights file (`*.weights.h5`).
        monitor: the log compared.
        history_path: the EpochCSVLogger's file.
        weights_of: the model whose weights are saved, e.g. the backbone inside the model being
            trained; None: the model being trained.
    """

    def __init__(self, path: str, monitor: str, history_path: str, weights_of: Optional[keras.Model] = None):
        super().__init__()
        self.path, self.monitor, self.history_path = path, monitor, history_path
        self.weights_of = weights_of
        self.best: Optional[float] = None
        self._started = False

    def on_epoch_begin(self, epoch, logs=None):
        if self._started:
            return
        self._started = True
        if os.path.exists(self.path):
            earlier = [
                float(row[self.monitor])
                for row in read_history(self.history_path)
                if int(row["epoch"]) < epoch and row.get(self.monitor)
            ]
            self.best = max(earlier, default=None)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise KeyError(
                f"BestWeightsCheckpoint: no {self.monitor!r} in the logs of epoch {epoch}: {sorted(logs or {})}"
            )
        value = float(keras.ops.convert_to_numpy(value))
        if self.best is not None and not value > self.best:
            return
        with atomic_write(self.path, keep_suffix=".weights.h5") as temp:
            (self.model if self.weights_of is None else self.weights_of).save_weights(temp)
        self.best = value
