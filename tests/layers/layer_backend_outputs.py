"""Runs every layer with fixed NumPy weights and inputs; saves the outputs to an .npz file.

Usage: KERAS_BACKEND=<backend> python layer_backend_outputs.py OUTPUT.npz
test_backend_parity.py runs it under TensorFlow and JAX and compares the files.
"""

import sys

import keras
import numpy as np

from keras_emotion.layers import (
    AttentionClusters,
    LSTMPooling,
    SpatialAttention,
    TemporalAveragePooling,
    TemporalMaxPooling,
    TemporalSoftmaxPooling,
)

BATCH, FRAMES, REGIONS, FEATURES, UNITS, CLASSES = 2, 4, 5, 3, 6, 3
FRAME_MASK = np.array([[1, 1, 1, 0], [0, 0, 0, 0]], bool)


def _call_with_random_weights(layer, inputs, rng):
    """Builds `layer`, sets every weight from `rng`, and calls it on `inputs` with FRAME_MASK."""
    layer.build(inputs.shape)
    layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.weights])
    return layer(inputs, mask=FRAME_MASK)


def layer_outputs():
    """Returns {name: NumPy array} of the outputs and losses of every layer."""
    rng = np.random.default_rng(0)
    regions = rng.normal(size=(BATCH, FRAMES, REGIONS, FEATURES)).astype("float32")
    scores = (5.0 * rng.normal(size=(BATCH, FRAMES, CLASSES))).astype("float32")
    outputs = {}

    attention_layer = SpatialAttention(num_heads=2, units=UNITS, penalty=0.5, return_attention=True)
    outputs["sa_vectors"], outputs["sa_attention"] = _call_with_random_weights(attention_layer, regions, rng)
    outputs["sa_penalty"] = attention_layer.losses[0]
    outputs["shift_vectors"], outputs["shift_attention"] = _call_with_random_weights(
        AttentionClusters(num_clusters=3, units=UNITS, return_attention=True), regions, rng
    )
    for name, layer in (
        ("tp", TemporalSoftmaxPooling()),
        ("avg", TemporalAveragePooling()),
        ("max", TemporalMaxPooling()),
    ):
        outputs[f"{name}_p_c"], outputs[f"{name}_p_f"] = layer(scores, mask=FRAME_MASK)
    outputs["lstm_p_c"], outputs["lstm_p_f"] = _call_with_random_weights(
        LSTMPooling(CLASSES, units=UNITS), regions[:, :, 0, :], rng
    )
    return {name: keras.ops.convert_to_numpy(value) for name, value in outputs.items()}


if __name__ == "__main__":
    np.savez(sys.argv[1], backend=keras.backend.backend(), **layer_outputs())
