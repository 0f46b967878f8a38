"""Trained-model directories: the one place that saves and loads a trained model.

A trained-model directory holds `model_info.json` (`models.info.ModelInfo`: class names, the
frame preprocessing, F, the ModelConfig, the face alignment of the training data) and either

    model.keras          the whole Keras model (`save_trained_model`, what training writes), or
    model.float16.npz    every weight in float16 (`save_float16_weights`, half the size; the
                         model that ships inside the package), rebuilt from the ModelConfig
                         when loaded.

Training writes these folders; inference, export, evaluation and `keras_emotion.pretrained`
read them through `load_trained_model`, without importing the training code.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

import keras
import numpy as np

from keras_emotion.data.config import InputConfig
from keras_emotion.data.faces import AlignmentConfig
from keras_emotion.files import atomic_write
from keras_emotion.models.builder import build_model, with_any_number_of_frames
from keras_emotion.models.config import ModelConfig
from keras_emotion.models.info import ModelInfo, Preprocessing, read_model_info, write_model_info

MODEL_FILE = "model.keras"
FLOAT16_WEIGHTS_FILE = "model.float16.npz"


@dataclasses.dataclass
class TrainedModel:
    """A model saved by `save_trained_model`, with what is needed to feed it.

    Attributes:
        model: the Keras model; inputs {"frames": (B, F, S, S, 3) float32 0..255,
            "frame_mask": (B, F) float32}, outputs {"probabilities": (B, E), ...}.
        info: its `models.info.ModelInfo` (class names, preprocessing, F, ModelConfig, the
            face alignment of its training data).
        path: the directory it was loaded from ("" for a model built in this process).
    """

    model: keras.Model
    info: ModelInfo
    path: str = ""

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


def save_trained_model(
    model: keras.Model,
    directory: str,
    model_config: ModelConfig,
    input_config: InputConfig,
    class_names: Sequence[str],
    alignment: Optional[AlignmentConfig] = None,
    training_data: Sequence[str] = (),
) -> str:
    """Saves `model` (without optimizer) and its `ModelInfo` (`models.info`: class names, the
    preprocessing and num_frames of `input_config`, the model config, the face alignment and a
    description of the training data).

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
        alignment=alignment,
        training_data=training_data,
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
        return TrainedModel(model=keras.models.load_model(model_path, compile=False), info=info, path=directory)
    if os.path.isfile(float16_path):
        return TrainedModel(model=_load_float16_weights(float16_path, info), info=info, path=directory)
    raise FileNotFoundError(f"{model_path} not found: {directory} is not {what}")


