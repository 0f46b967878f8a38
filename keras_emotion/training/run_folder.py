"""The folder of a training run, one layout for the three training loops (`task.train`,
`pretrain.pretrain`, `face_clips.train_face_clips`):

    .lock                         `files.OutputDirLock` while the run goes on: one run per folder
    train_config.json             the TrainConfig of a `task` run (the other loops keep their
                                  config in their report)
    history.csv                   one row per epoch (`callbacks.EpochCSVLogger`)
    checkpoints/best.weights.h5   weights of the best epoch (`callbacks.BestWeightsCheckpoint`);
                                  a loop may name another file (pre-training: the backbone's)
    backup/                       `callbacks.EpochBackup`: a rerun of the same config resumes
                                  from it; deleted by `finish` once the loop's outputs are
                                  written (a rerun after `fit` ended trains no epoch again)
    logs/                         TensorBoard (`task`)
    initial_backbone.weights.h5   the backbone a `task` run fine-tunes, when it starts from a
                                  trained model (`task.train --backbone_weights MODEL_DIR`)

A loop locks the folder before anything else (`RunFolder.lock`) and gives `fit`
`RunFolder.callbacks` after the callbacks that add to the epoch's logs: history row, best
weights, then backup, so that a kill between two of them makes the rerun repeat the epoch whose
backup is missing, which rewrites its row and checkpoint (see `training.callbacks`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Optional

import keras

from keras_emotion.files import OutputDirLock
from keras_emotion.training.callbacks import BestWeightsCheckpoint, EpochBackup, EpochCSVLogger

BACKUP_DIR = "backup"
BEST_WEIGHTS_FILE = os.path.join("checkpoints", "best.weights.h5")
CONFIG_FILE = "train_config.json"
HISTORY_FILE = "history.csv"
INITIAL_BACKBONE_FILE = "initial_backbone.weights.h5"
LOGS_DIR = "logs"


@dataclasses.dataclass(frozen=True)
class RunFolder:
    """The files of a training run under `path` (see the module docstring).

    Attributes:
        path: the run's output folder.
        best_weights_file: the best epoch's weights file, relative to `path`.
    """

    path: str
    best_weights_file: str = BEST_WEIGHTS_FILE

    @property
    def backup_dir(self) -> str:
        """`callbacks.EpochBackup`'s folder."""
        return os.path.join(self.path, BACKUP_DIR)

    @property
    def best_weights(self) -> str:
        """The weights file of the best epoch."""
        return os.path.join(self.path, self.best_weights_file)

    @property
    def config_path(self) -> str:
        """The run's config (TrainConfig JSON)."""
        return os.path.join(self.path, CONFIG_FILE)

    @property
    def history_csv(self) -> str:
        """One row per epoch."""
        return os.path.join(self.path, HISTORY_FILE)

    @property
    def initial_backbone_weights(self) -> str:
        """The backbone weights a run starts from, taken out of a trained model."""
        return os.path.join(self.path, INITIAL_BACKBONE_FILE)

    @property
    def logs_dir(self) -> str:
        """TensorBoard's folder."""
        return os.path.join(self.path, LOGS_DIR)

    def lock(self, command: str) -> OutputDirLock:
        """The folder's `files.OutputDirLock`, a context manager; `command` names the run for the
        error a second run gets (`files.OutputDirInUseError`)."""
        return OutputDirLock(self.path, command)

    def finish(self) -> None:
        """Deletes the backup: called by a loop once everything it writes after `fit` is written."""
        shutil.rmtree(self.backup_dir, ignore_errors=True)

    def callbacks(self, monitor: str, weights_of: Optional[keras.Model] = None) -> list:
        """History row, best weights and backup callbacks, in this order (the module docstring).

        Args:
            monitor: the log whose largest value makes the best epoch (e.g. "val_accuracy").
            weights_of: the model whose weights `best_weights` receives; None: the model fitted.
        """
        return [
            EpochCSVLogger(self.history_csv),
            BestWeightsCheckpoint(self.best_weights, monitor, self.history_csv, weights_of),
            EpochBackup(self.backup_dir),
        ]
