"""The one description of a trained model that travels with it: `model_info.json`.

A trained-model directory (`training.task.save_trained_model`) holds it beside `model.keras`; an
exported SavedModel holds the same file under `assets.extra/` (TF Serving ignores that folder).
Training writes it, and export, prediction and evaluation read it through this module only:

    {"format_version": 2,
     "class_names": [E names, index = class index],
     "preprocessing": {"image_size": S, "crop_fraction": S / R, "resize_size": R},
     "num_frames": F the model was trained with (or null),
     "model_config": the ModelConfig (or null for a model exported without one),
     "dataset_manifest": the training data's manifest.json (or null),
     "keras_version": "..."}
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

from keras_emotion.data import config as data_config
from keras_emotion.files import read_json, write_json_atomically
from keras_emotion.models.config import ModelConfig

MODEL_INFO_FILE = "model_info.json"
MODEL_INFO_VERSION = 2


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How frames are prepared for the model (as the evaluation pipeline does it).

    Attributes:
        image_size: S, side of the square crop fed to the model.
        crop_fraction: S / R, R the side a frame is resized to before the centre crop, in (0, 1].
    """

    image_size: int
    crop_fraction: float

    def __post_init__(self):
        if self.image_size < 1:
            raise ValueError(f"Preprocessing.image_size={self.image_size}; must be >= 1")
        if not 0.0 < self.crop_fraction <= 1.0:
            raise ValueError(f"Preprocessing.crop_fraction={self.crop_fraction}; must be in (0, 1]")

    @property
    def resize_size(self) -> int:
        """R, the side every frame is resized to (`data.config.resize_size`, as `InputConfig`)."""
        return data_config.resize_size(self.image_size, self.crop_fraction)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What is needed to feed a trained model and name its outputs.

    Attributes:
        class_names: E names, index = class index of "probabilities".
        preprocessing: the frame preprocessing it was trained and evaluated with.
        num_frames: F it was trained with, or None when unknown.
        model_config: the ModelConfig it was built from, or None when unknown.
        dataset_manifest: the training data's manifest.json (alignment parameters under
            "preprocessing", aligned face size under "image_size"), or None.
        keras_version: the Keras version that saved it.
    """

    class_names: list
    preprocessing: Preprocessing
    num_frames: Optional[int] = None
    model_config: Optional[ModelConfig] = None
    dataset_manifest: Optional[dict] = None
    keras_version: str = ""

    def __post_init__(self):
        object.__setattr__(self, "class_names", [str(name) for name in self.class_names])
        if self.model_config is not None:
            check_class_count(self.class_names, self.model_config.num_classes, "ModelInfo")

    def to_dict(self) -> dict:
        """The JSON object of the module docstring."""
        return {
            "format_version": MODEL_INFO_VERSION,
            "class_names": list(self.class_names),
            "preprocessing": {
                **dataclasses.asdict(self.preprocessing),
                "resize_size": self.preprocessing.resize_size,
            },
            "num_frames": self.num_frames,
            "model_config": None if self.model_config is None else self.model_config.to_dict(),
            "dataset_manifest": self.dataset_manifest,
            "keras_version": self.keras_version,
        }

    @classmethod
    def from_dict(cls, values: dict) -> "ModelInfo":
        preprocessing = dict(values["preprocessing"])
        preprocessing.pop("resize_size", None)
        return cls(
            class_names=values["class_names"],
            preprocessing=Preprocessing(**preprocessing),
            num_frames=values.get("num_frames"),
            model_config=None if values.get("model_config") is None else ModelConfig.from_dict(values["model_config"]),
            dataset_manifest=values.get("dataset_manifest"),
            keras_version=values.get("keras_version", ""),
        )


def write_model_info(directory: str, info: ModelInfo, relative_path: str = MODEL_INFO_FILE) -> str:
    """Writes `info` to `directory/relative_path` atomically. Returns the file's path."""
    return write_json_atomically(os.path.join(directory, relative_path), info.to_dict())


def read_model_info(directory: str, relative_path: str = MODEL_INFO_FILE, what: str = "a trained-model directory") -> ModelInfo:
    """The ModelInfo stored in `directory/relative_path`.

    Raises:
        FileNotFoundError: the file is missing ("<path> not found: <directory> is not <what>").
        ValueError: not valid JSON, another format version, or bad fields (naming the file).
    """
    path = os.path.join(directory, relative_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: {directory} is not {what}")
    values = read_json(path, format_version=MODEL_INFO_VERSION)
    try:
        return ModelInfo.from_dict(values)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error!r}") from error


def check_class_count(class_names: Sequence[str], num_classes: int, source: str) -> None:
    """Checks that `class_names` holds `num_classes` names.

    Raises:
        ValueError: "<source>: N class names [...] for a model with E classes".
    """
    if len(class_names) != num_classes:
        raise ValueError(f"{source}: {len(class_names)} class names {list(class_names)} for a model with {num_classes} classes")
