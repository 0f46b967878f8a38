"""Keras layers of the paper: spatial attention over face regions and temporal poolings.

All layers use `keras.ops` only, so they run under the TensorFlow and JAX backends.
"""

from keras_emotion.layers.attention_clusters import AttentionClusters
from keras_emotion.layers.spatial_attention import SpatialAttention, attention_penalty
from keras_emotion.layers.temporal_pooling import (
    LSTMPooling,
    TemporalAveragePooling,
    TemporalMaxPooling,
    TemporalSoftmaxPooling,
)

__all__ = [
    "AttentionClusters",
    "LSTMPooling",
    "SpatialAttention",
    "TemporalAveragePooling",
    "TemporalMaxPooling",
    "TemporalSoftmaxPooling",
    "attention_penalty",
]
