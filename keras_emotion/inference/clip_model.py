"""Trained models seen as one interface for inference: aligned faces of one clip in, the
clip's class probabilities, frame importance and spatial attention out.

`load_clip_model` opens a trained-model directory (model.keras + model_info.json, written by
`models.saving.save_trained_model`), an exported SavedModel (its serving_default signature) or
a TF Serving model folder (its highest version).
"""

from __future__ import annotations

import abc
import dataclasses
import os
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from keras_emotion.data import schema
from keras_emotion.data.faces import AlignmentConfig, video_alignment
from keras_emotion.data.model_input import resize_and_crop_pixels
from keras_emotion.data.pipeline import sample_frame_indices
from keras_emotion.export.saved_model import read_export_info
from keras_emotion.models.builder import split_at_backbone
from keras_emotion.models.info import MODEL_INFO_FILE, ModelInfo, check_class_count, read_model_info
from keras_emotion.models.saving import load_trained_model

SAVED_MODEL_FILE = "saved_model.pb"
SERVING_SIGNATURE = "serving_default"


@dataclasses.dataclass
class ClipPrediction:
    """The model's answer for one clip of F frames (E classes, N heads, L regions).

    Attributes:
        probabilities: float32 (E,) clip class probabilities.
        frame_importance: float32 (F,) each frame's share, summing to 1.
        spatial_attention: float32 (F, N, L), or None for models without spatial attention.
    """

    probabilities: np.ndarray
    frame_importance: np.ndarray
    spatial_attention: Optional[np.ndarray]


class ClipModel(abc.ABC):
    """A trained model seen as: aligned faces of one clip (uint8) -> ClipPrediction.

    Attributes:
        class_names: E names, index = class index.
        num_frames: F, the frames it is given per clip (chosen from a window like evaluation
            chooses them from a clip), or None: it is given every frame of a window.
        face_size: side of the aligned faces it expects.
        alignment: how the faces of its training data were aligned (defaults if unknown).
        info: its ModelInfo, or None when it has none (a SavedModel given its class names).
        description: {"path", "format"} for the prediction JSON.
    """

    class_names: list
    num_frames: Optional[int]
    face_size: int
    alignment: AlignmentConfig
    info: Optional[ModelInfo]
    description: dict

    def check_alignment(self, data_alignment: Optional[AlignmentConfig], data: str) -> None:
        """Refuses faces of `data` aligned otherwise than this model's training faces
        (`ModelInfo.check_alignment`); nothing is checked where either alignment is unknown."""
        if self.info is not None:
            self.info.check_alignment(data_alignment, data, self.description["path"])

    def predict(self, faces: np.ndarray) -> ClipPrediction:
        """Classifies one clip: `faces` uint8 (F, face_size, face_size, 3) RGB aligned faces."""
        return self.predict_batch([faces])[0]

    def predict_batch(self, clips: Sequence[np.ndarray]) -> list:
        """Classifies B clips of the same shape, each uint8 (F, face_size, face_size, 3):
        B `ClipPrediction`s, from one call of the model."""
        clips = np.stack([np.asarray(faces, np.uint8) for faces in clips])
        features = self.frame_features(clips.reshape(-1, *clips.shape[2:]))
        return self.predict_features(features.reshape(*clips.shape[:2], *features.shape[1:]))

    def frame_features(self, faces: np.ndarray) -> np.ndarray:
        """What the model computes from each frame alone, for N uint8 (N, A, A, 3) aligned faces:
        an (N, ...) array. Overlapping windows share frames: `VideoPredictor` computes each
        frame's features once and gives every window holding it the same (`predict_features`).

        This default keeps the faces as they are (a SavedModel is called whole)."""
        return np.asarray(faces, np.uint8)

    def predict_features(self, features: np.ndarray) -> list:
        """Classifies B clips given as their frames' `frame_features`, (B, F, ...): B
        `ClipPrediction`s, from one call of the model."""
        outputs = self._call(np.asarray(features))
        return [_clip_prediction(outputs, index) for index in range(len(features))]

    @abc.abstractmethod
    def _call(self, features: np.ndarray) -> dict:
        """The model's outputs (NumPy arrays with the batch first) for (B, F, ...) `frame_features`."""


def uniform_frame_indices(clip_length: int, num_frames: int) -> np.ndarray:
    """The frames evaluation feeds the model from a clip of `clip_length` frames: int (num_frames,)
    (`pipeline.sample_frame_indices` with "uniform" sampling; a short clip repeats frames)."""
    return sample_frame_indices(clip_length, num_frames, "uniform", None).numpy()


def _clip_prediction(outputs: dict, index: int = 0) -> ClipPrediction:
    """Clip `index` of a batch of model / signature outputs (NumPy arrays)."""
    attention = outputs.get("spatial_attention")
    return ClipPrediction(
        probabilities=np.asarray(outputs["probabilities"][index], np.float32),
        frame_importance=np.asarray(outputs["frame_importance"][index], np.float32),
        spatial_attention=None if attention is None else np.asarray(attention[index], np.float32),
    )


class KerasClipModel(ClipModel):
    """A trained-model directory (model.keras + model_info.json, see `training.task`).

    Faces are resized and centre cropped from the full-resolution aligned face by
    `model_input.resize_and_crop_pixels`, as the exported SavedModel's serving_default signature
    does it. A frame's features are its backbone map (h, w, D), and the head
    (`builder.split_at_backbone`) classifies clips of maps; for a model whose info has no
    ModelConfig they are the resized frames, and the whole model is the head.
    """

    def __init__(self, trained, path: str = ""):
        """`trained`: a `models.saving.TrainedModel`; `path`: where it was loaded from."""
        self.trained = trained
        self.info = trained.info
        self.preprocessing = trained.info.preprocessing
        self.class_names = list(trained.info.class_names)
        self.num_frames = int(trained.info.num_frames)
        self.face_size, self.alignment = _aligned_faces_of(trained.info)
        self.description = {"path": os.fspath(path), "format": "keras"}
        self._backbone, self._head = None, trained.model
        if trained.info.model_config is not None:
            self._backbone, self._head = split_at_backbone(trained.model, trained.info.model_config)

    def model_inputs(self, faces: np.ndarray) -> dict:
        """The model's inputs for uint8 (B, F, A, A, 3) aligned faces: {"frames": float32
        (B, F, S, S, 3) in 0..255, "frame_mask": ones (B, F)}."""
        return _clip_inputs(self._frames(faces))

    def frame_features(self, faces: np.ndarray) -> np.ndarray:
        """float32 (N, h, w, D) backbone maps of uint8 (N, A, A, 3) faces (the resized (N, S, S, 3)
        frames for a model without a ModelConfig)."""
        frames = self._frames(np.asarray(faces)[np.newaxis])[0]
        return frames if self._backbone is None else self._backbone.predict_on_batch(frames)

    def _frames(self, faces: np.ndarray) -> np.ndarray:
        """float32 (B, F, S, S, 3) in 0..255: uint8 (B, F, A, A, 3) faces resized and cropped."""
        resize_size, image_size = self.preprocessing.resize_size, self.preprocessing.image_size
        return resize_and_crop_pixels(np.asarray(faces, np.uint8), resize_size, image_size).numpy()

    def _call(self, features: np.ndarray) -> dict:
        return self._head.predict_on_batch(_clip_inputs(features))


def _clip_inputs(frames: np.ndarray) -> dict:
    """{"frames": `frames` (B, F, ...), "frame_mask": float32 ones (B, F)}: a whole clip of each."""
    return {"frames": frames, "frame_mask": np.ones(frames.shape[:2], np.float32)}


class SavedModelClipModel(ClipModel):
    """An exported SavedModel (`saved_model.export_saved_model`), called through its
    serving_default signature, which resizes and crops the aligned faces itself.

    The signature takes any number of frames, so by default it is given every frame of a
    window (num_frames None). Class names: `class_names` if given, else those the export wrote
    to `assets.extra/model_info.json` (`saved_model.read_export_info`), which also gives the
    aligned face size and alignment of the training data.
    """

    def __init__(self, directory: str, num_frames: Optional[int] = None, class_names: Optional[Sequence[str]] = None):
        info = read_export_info(directory) if class_names is None else None
        self.info = info
        class_names = list(info.class_names if class_names is None else class_names)
        self._signature = tf.saved_model.load(directory).signatures[SERVING_SIGNATURE]
        check_class_count(class_names, self._signature.structured_outputs["probabilities"].shape[-1], directory)
        self.class_names = class_names
        self.num_frames = num_frames or self._signature.structured_input_signature[1]["frames"].shape[1]
        self.face_size, self.alignment = _aligned_faces_of(info)
        self.description = {"path": os.fspath(directory), "format": "saved_model"}

    def _call(self, faces: np.ndarray) -> dict:
        outputs = self._signature(frames=tf.constant(faces), num_frames=tf.fill([faces.shape[0]], faces.shape[1]))
        return {name: value.numpy() for name, value in outputs.items()}


def _aligned_faces_of(info: Optional[ModelInfo]) -> tuple:
    """(face side, AlignmentConfig) of the faces `info`'s model was trained on, else the
    defaults of preprocessing."""
    alignment = (info.alignment if info is not None else None) or AlignmentConfig(output_size=schema.IMAGE_SIZE)
    return alignment.output_size, alignment


def _model_directory(path: str) -> tuple:
    """("saved_model" or "keras", directory) of the model at `path` (see `load_clip_model`).

    Raises:
        FileNotFoundError: `path` is no model directory (the message names it).
    """
    if os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
        return "saved_model", path
    if os.path.isfile(os.path.join(path, MODEL_INFO_FILE)):
        return "keras", path
    versions = sorted((int(name) for name in (os.listdir(path) if os.path.isdir(path) else []) if name.isdigit()))
    for version in reversed(versions):
        if os.path.isfile(os.path.join(path, str(version), SAVED_MODEL_FILE)):
            return "saved_model", os.path.join(path, str(version))
    raise FileNotFoundError(
        f"{path}: not a model directory (no {MODEL_INFO_FILE}, no {SAVED_MODEL_FILE}, "
        "no numbered version folder holding one)"
    )


def load_clip_model(
    path: str, num_frames: Optional[int] = None, class_names: Optional[Sequence[str]] = None
) -> ClipModel:
    """The model at `path`: a trained-model directory (model_info.json + model.keras), a
    SavedModel directory (saved_model.pb), or a TF Serving model directory (numbered
    version folders; the highest one holding a SavedModel is used).

    Args:
        path: the directory.
        num_frames, class_names: for a SavedModel, see `SavedModelClipModel` (a trained-model
            directory knows both).

    Raises:
        FileNotFoundError: `path` is none of these (the message names it).
    """
    path = os.fspath(path)
    kind, directory = _model_directory(path)
    if kind == "saved_model":
        return SavedModelClipModel(directory, num_frames, class_names)
    return KerasClipModel(load_trained_model(directory), path)


def read_clip_model_info(path: str) -> ModelInfo:
    """The ModelInfo of the model at `path` (any directory `load_clip_model` opens), without
    loading the model.

    Raises:
        FileNotFoundError: `path` is no model directory, or a SavedModel without the
            assets.extra/model_info.json of an export of this library (naming it).
        ValueError: the file is not a model info (naming it).
    """
    kind, directory = _model_directory(os.fspath(path))
    return read_export_info(directory) if kind == "saved_model" else read_model_info(directory)


def default_alignment(model: ClipModel) -> AlignmentConfig:
    """The alignment `model` was trained with (its training data's manifest), else the
    defaults, for faces of `model.face_size`, as videos are aligned (`faces.video_alignment`)."""
    return video_alignment(dataclasses.replace(model.alignment, output_size=model.face_size))
