"""Video emotion models: frame backbones and the model builder."""

from keras_emotion.models.backbones import build_backbone, load_backbone_weights
from keras_emotion.models.builder import (
    backbone_variables,
    build_model,
    head_variables,
    with_any_number_of_frames,
)
from keras_emotion.models.config import ModelConfig

__all__ = [
    "ModelConfig",
    "backbone_variables",
    "build_backbone",
    "build_model",
    "head_variables",
    "load_backbone_weights",
    "with_any_number_of_frames",
]
