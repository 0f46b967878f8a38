"""The one description of a trained model that travels with it: `model_info.json`.

A trained-model directory (`models.saving`) holds it beside the weights; an exported SavedModel
holds the same file under `assets.extra/` (TF Serving ignores that folder). Training writes it,
and export, prediction and evaluation read it through this module only:

    {"format_version": 3,
     "class_names": [E names, index = class index],
     "preprocessing": {"image_size": S, "crop_fraction": S / R, "resize_size": R},
     "num_frames": F the model was trained with (or null),
     "model_config": the ModelConfig (or null for a model exported without one),
     "alignment": the AlignmentConfig of the faces it was trained on (or null: unknown),
     "training_data": [descriptions of the training data],
     "keras_version": "..."}

Version 2 files (the training data's whole manifest under "dataset_manifest") are read too.

The face alignment is the contract between a model and the data given to it: a face framed
otherwise (eyes higher, closer) is another input distribution, and accuracy drops without any
error. `ModelInfo.check_alignment` refuses such data, naming both framings.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

from keras_emotion.data import config as data_config
from keras_emotion.data.faces import AlignmentConfig
from keras_emotion.files import read_json, write_json_atomically
from keras_emotion.models.config import ModelConfig

MODEL_INFO_FILE = "model_info.json"
MODEL_INFO_VERSION = 3
READABLE_VERSIONS = (2, 3)
# The AlignmentConfig fields that decide where a face lies in the aligned image. The others
# (detector settings, JPEG quality, the stored side) change which faces are found or their
# resolution, not their framing.
FRAMING_FIELDS = ("landmarks", "eye_level", "eye_distance")


class AlignmentMismatchError(ValueError):
    """Data whose faces are framed otherwise than those a model was trained on."""


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
        alignment: the AlignmentConfig of the faces it was trained on (`output_size` = the
            aligned face side), or None when unknown.
        training_data: descriptions of its training data (corpus folders, named datasets).
        keras_version: the Keras version that saved it.
    """

    class_names: list
    preprocessing: Preprocessing
    num_frames: Optional[int] = None
    model_config: Optional[ModelConfig] = None
    alignment: Optional[AlignmentConfig] = None
    training_data: tuple = ()
    keras_version: str = ""

    def __post_init__(self):
        object.__setattr__(self, "class_names", [str(name) for name in self.class_names])
        object.__setattr__(self, "training_data", tuple(str(source) for source in self.training_data))
        if self.model_config is not None:
            check_class_count(self.class_names, self.model_config.num_classes, "ModelInfo")

    def check_alignment(self, data_alignment: Optional[AlignmentConfig], data: str, model: str) -> None:
        """Refuses data whose faces are framed otherwise than this model's training faces.

        Args:
            data_alignment: how the data's faces were aligned (its manifest's), None: unknown.
            data: names the data in the message (e.g. its manifest.json).
            model: names the model in the message (e.g. its folder).

        Raises:
            AlignmentMismatchError: both alignments are known and differ in `FRAMING_FIELDS`;
                the message names both and how to preprocess the data for the model.
        """
        if data_alignment is None or self.alignment is None:
            return
        differing = [name for name in FRAMING_FIELDS if getattr(data_alignment, name) != getattr(self.alignment, name)]
        if differing:
            raise AlignmentMismatchError(
                f"{data}: faces aligned with {framing(data_alignment, differing)}, but the model {model} was "
                f"trained on faces aligned with {framing(self.alignment, differing)}; preprocess the data for "
                f"this model: keras-emotion preprocess --like_model {model} ..."
            )

    def known_alignment(self, model: str) -> AlignmentConfig:
        """The alignment of this model's training faces, to cut new faces with.

        Raises:
            ValueError: it records none; the message names `model` (e.g. its folder).
        """
        if self.alignment is None:
            raise ValueError(
                f"model {model!r} records no face alignment (model_info.json \"alignment\": null): the framing "
                "to align the faces to is unknown"
            )
        return self.alignment

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
            "alignment": None if self.alignment is None else dataclasses.asdict(self.alignment),
            "training_data": list(self.training_data),
            "keras_version": self.keras_version,
        }

    @classmethod
    def from_dict(cls, values: dict) -> "ModelInfo":
        """The ModelInfo of a model_info.json object of format version 3 (or 2)."""
        preprocessing = dict(values["preprocessing"])
        preprocessing.pop("resize_size", None)
        if values.get("format_version") == 2:
            alignment, training_data = _alignment_of_version_2(values.get("dataset_manifest"))
        else:
            alignment = None if values["alignment"] is None else AlignmentConfig(**values["alignment"])
            training_data = values["training_data"]
        return cls(
            class_names=values["class_names"],
            preprocessing=Preprocessing(**preprocessing),
            num_frames=values.get("num_frames"),
            model_config=None if values.get("model_config") is None else ModelConfig.from_dict(values["model_config"]),
            alignment=alignment,
            training_data=training_data,
            keras_version=values.get("keras_version", ""),
        )


def _alignment_of_version_2(manifest: Optional[dict]) -> tuple:
    """(AlignmentConfig or None, training data) of a version 2 file's "dataset_manifest"."""
    if not manifest or "alignment" not in manifest.get("preprocessing", {}):
        return None, tuple((manifest or {}).get("sources", ()))
    alignment = dict(manifest["preprocessing"]["alignment"])
    alignment.setdefault("output_size", manifest.get("image_size", AlignmentConfig.output_size))
    return AlignmentConfig(**alignment), tuple(manifest.get("sources", ()))


def framing(alignment: AlignmentConfig, fields: Sequence[str] = FRAMING_FIELDS) -> str:
    """`fields` of `alignment` as "name=value, ..." (for messages)."""
    return ", ".join(f"{name}={getattr(alignment, name)}" for name in fields)


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
    values = read_json(path, format_version=READABLE_VERSIONS)
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
