"""`build_model`: a `ModelConfig` -> the video emotion model (backbone x spatial x temporal).

    frames (B, F, S, S, 3) 0..255 RGB          frame_mask (B, F) 1 = real frame, 0 = padding
      -> fold frames into the batch             (B*F, S, S, 3)
      -> backbone                               (B*F, S/16, S/16, D)
      -> spatial aggregation, unfold frames     "none": mean over regions   -> (B, F, D)
                                                "sa" / "shift": regions (B, F, L, D)
                                                  -> attention              -> (B, F, N*D)
      -> dropout -> Dense(E) per frame          scores (B, F, E)
      -> temporal pooling                       "tp" / "avg" / "max" on the scores,
                                                "lstm" on the descriptors (no Dense)
      -> {"probabilities": (B, E), "frame_importance": (B, F),
          "spatial_attention": (B, F, N, L) with "sa" / "shift" only}

The frame mask goes to the attention (masked frames leave the SA penalty) and to the
temporal pooling (masked frames get importance 0 and do not change the probabilities).

BatchNormalization in the backbone sees all frames of all clips as one batch (B*F). A
pre-trained backbone (`ModelConfig.pretrained_backbone`) therefore runs in inference mode
also while training (`Backbone.batchnorm_inference`): its moving statistics stay fixed and a
clip's output never depends on padded frames or on other clips. A backbone trained from
scratch uses batch statistics while training, as usual.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import keras
from keras import ops

from keras_emotion.layers import (
    AttentionClusters,
    LSTMPooling,
    SpatialAttention,
    TemporalAveragePooling,
    TemporalMaxPooling,
    TemporalSoftmaxPooling,
)
from keras_emotion.models.backbones import BACKBONE_NAME, Backbone, build_backbone
from keras_emotion.models.config import ModelConfig

SCORE_POOLINGS = {
    "tp": TemporalSoftmaxPooling,
    "avg": TemporalAveragePooling,
    "max": TemporalMaxPooling,
}


@keras.saving.register_keras_serializable(package="keras_emotion")
class FoldFrames(keras.layers.Layer):
    """Folds the frame axis into the batch: (B, F, ...) -> (B*F, ...)."""

    def call(self, frames):
        return ops.reshape(frames, (-1, *ops.shape(frames)[2:]))

    def compute_output_shape(self, frames_shape):
        batch_size, num_frames, *rest = frames_shape
        folded = None if batch_size is None or num_frames is None else batch_size * num_frames
        return (folded, *rest)


@keras.saving.register_keras_serializable(package="keras_emotion")
class UnfoldFrames(keras.layers.Layer):
    """Undoes `FoldFrames`: (B*F, ...) -> (B, F, ...), with B and F read from `frames`.

    Call args:
        folded: shape (B*F, ...).
        frames: the unfolded tensor the batch came from, shape (B, F, ...).
    """

    def call(self, folded, frames):
        batch_size, num_frames = ops.shape(frames)[:2]
        return ops.reshape(folded, (batch_size, num_frames, *ops.shape(folded)[1:]))

    def compute_output_shape(self, folded_shape, frames_shape):
        return (*frames_shape[:2], *folded_shape[1:])


def build_model(config: ModelConfig, backbone: Optional[keras.Model] = None) -> keras.Model:
    """Builds the model that `config` describes (untrained, except for backbone weights).

    `backbone`, if given, replaces the one `config` names: a model (n, ...) -> (n, h, w, D)
    whose input shape sets the frames' shape. `feature_map_backbone` is one: it lets the
    same head train on precomputed backbone maps (`training.feature_cache`).

    Inputs (a dict): "frames" (B, F, S, S, 3) float32 RGB in 0..255 and "frame_mask"
    (B, F) float32, 1 for real frames and 0 for padding; F = config.num_frames, or any
    number when it is None; S = config.image_size.

    Outputs (a dict, float32 also under a mixed-precision policy): "probabilities" (B, E)
    clip class probabilities, "frame_importance" (B, F) each frame's share p_f (0 for masked
    frames) and, with spatial "sa" or "shift", "spatial_attention" (B, F, N, L), L = (S/16)^2.

    The backbone is the nested model named "backbone" (see `backbone_variables`); with
    spatial "sa" the attention penalty is in `model.losses`.

    BatchNormalization rule (the Keras transfer-learning rule): when the backbone is
    pre-trained (`config.pretrained_backbone`: `backbone_weights` given, or "mini_xception"),
    its BatchNormalization layers run in inference mode also when the model is called with
    training=True or trained with `fit`: they normalise with their moving statistics, which
    stay fixed, while gamma and beta stay trainable. A clip's outputs then depend neither
    on its padded frames nor on the other clips of the batch. A backbone trained from
    scratch keeps the usual behaviour (batch statistics while training). The choice is
    stored in the backbone (`Backbone.batchnorm_inference`), so `model.save` /
    `keras.models.load_model` and `with_any_number_of_frames` keep it.
    """
    if backbone is None:
        backbone = build_backbone(config.backbone, config.image_size, config.backbone_weights)
        backbone.batchnorm_inference = config.pretrained_backbone
    frames = keras.Input((config.num_frames, *backbone.input_shape[1:]), name="frames")
    frame_mask = keras.Input((config.num_frames,), name="frame_mask")
    feature_map = backbone(FoldFrames(name="fold_frames")(frames))  # (B*F, h, w, D)

    outputs = {}
    if config.spatial == "none":
        pooled = keras.layers.GlobalAveragePooling2D(name="region_average")(feature_map)
        descriptors = UnfoldFrames(name="unfold_frames")(pooled, frames)  # (B, F, D)
    else:
        _, height, width, depth = feature_map.shape
        regions = keras.layers.Reshape((height * width, depth), name="regions")(feature_map)
        regions = UnfoldFrames(name="unfold_frames")(regions, frames)  # (B, F, L, D)
        if config.spatial == "sa":
            attention_layer = SpatialAttention(
                config.num_heads,
                config.attention_units,
                config.penalty,
                return_attention=True,
                name="structured_self_attention",
            )
        else:
            attention_layer = AttentionClusters(
                config.num_heads,
                config.attention_units,
                return_attention=True,
                name="attention_clusters",
            )
        descriptors, outputs["spatial_attention"] = attention_layer(regions, mask=frame_mask)
    descriptors = keras.layers.Dropout(config.dropout, name="descriptor_dropout")(descriptors)

    if config.temporal == "lstm":
        pooling = LSTMPooling(config.num_classes, config.lstm_units, name="temporal_pooling")
        pooled_inputs = descriptors
    else:
        pooling = SCORE_POOLINGS[config.temporal](name="temporal_pooling")
        pooled_inputs = keras.layers.Dense(
            config.num_classes, use_bias=config.frame_score_bias, name="frame_scores"
        )(descriptors)
    outputs["probabilities"], outputs["frame_importance"] = pooling(pooled_inputs, mask=frame_mask)

    # Identity layers give the outputs their names (model.output_names, serving signatures)
    # and make them float32 under a mixed-precision policy, for the loss and the metrics.
    named_outputs = {
        name: keras.layers.Identity(dtype="float32", name=name)(value) for name, value in outputs.items()
    }
    return keras.Model(
        inputs={"frames": frames, "frame_mask": frame_mask},
        outputs=named_outputs,
        name=f"emotion_{config.backbone}_{config.spatial}_{config.temporal}",
    )


def feature_map_backbone(map_shape) -> keras.Model:
    """A stand-in backbone for `build_model` whose "frames" are backbone maps: the identity
    on (n, h, w, D) = (n, *map_shape), named like a backbone, without variables."""
    with keras.name_scope(BACKBONE_NAME):
        maps = keras.Input(tuple(map_shape), name="feature_maps")
        return Backbone(maps, keras.layers.Identity(name="feature_map")(maps), name=BACKBONE_NAME)


def copy_head_weights(source: keras.Model, target: keras.Model) -> None:
    """Gives `target` the values of `source`'s variables outside the backbone, matched by path
    (two `build_model` models of one config, one of them on `feature_map_backbone`).

    Raises:
        ValueError: the two heads do not have the same variables (naming both lists).
    """
    values = {variable.path: variable for variable in source.weights if not variable.path.startswith(BACKBONE_NAME + "/")}
    targets = [variable for variable in target.weights if not variable.path.startswith(BACKBONE_NAME + "/")]
    if sorted(values) != sorted(variable.path for variable in targets):
        raise ValueError(
            f"copy_head_weights: the heads differ: {sorted(values)} against {sorted(v.path for v in targets)}"
        )
    for variable in targets:
        variable.assign(values[variable.path])


def split_at_backbone(model: keras.Model, config: ModelConfig) -> tuple:
    """(backbone, head) of `model`, built by `build_model(config)`, so that the backbone can run
    once per frame and the head on any clip of those frames' maps.

    backbone: the model's own backbone, (n, S, S, 3) frames -> (n, h, w, D) maps.
    head: `build_model` of `config` on `feature_map_backbone((h, w, D))` for any number of
        frames, holding the model's head weights: inputs {"frames": (B, F, h, w, D) maps,
        "frame_mask": (B, F)}, the model's outputs. head(maps of frames) == model(frames).
    """
    backbone = model.get_layer(BACKBONE_NAME)
    head = build_model(
        dataclasses.replace(config, num_frames=None, backbone_weights=None),
        backbone=feature_map_backbone(backbone.output.shape[1:]),
    )
    copy_head_weights(model, head)
    return backbone, head


def backbone_variables(model: keras.Model) -> list:
    """The trainable variables of the model's backbone (paths "backbone/...")."""
    return list(model.get_layer(BACKBONE_NAME).trainable_variables)


def head_variables(model: keras.Model) -> list:
    """The model's other trainable variables: with `backbone_variables`, a partition of
    `model.trainable_variables`."""
    in_backbone = {id(variable) for variable in backbone_variables(model)}
    return [variable for variable in model.trainable_variables if id(variable) not in in_backbone]


def with_any_number_of_frames(model: keras.Model) -> keras.Model:
    """`model` (from `build_model`) accepting clips of any number of frames.

    A model built for F frames rejects other lengths (Keras checks input shapes), but none of
    its weights depends on F. Returns `model` itself when its frame axes are already free,
    else the same graph rebuilt from its config with F = None on every input, holding the
    same weight values: inputs {"frames": (B, None, S, S, 3), "frame_mask": (B, None)}.
    """
    if all(tensor.shape[1] is None for tensor in keras.tree.flatten(model.input)):
        return model
    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer":
            batch_shape = layer["config"]["batch_shape"]
            layer["config"]["batch_shape"] = (batch_shape[0], None, *batch_shape[2:])
    rebuilt = model.__class__.from_config(config)
    rebuilt.set_weights(model.get_weights())
    return rebuilt
