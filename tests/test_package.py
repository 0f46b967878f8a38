"""The package leaves TensorFlow's oneDNN kernels on, and its backbones train under them."""

import os
import subprocess
import sys

import keras
import numpy as np

from keras_emotion.models.backbones import SubsampledPointwiseConv2D

# Runs in a fresh process so that TF_ENABLE_ONEDNN_OPTS=1 applies when TensorFlow loads. Before
# SubsampledPointwiseConv2D, this step crashed (segmentation fault) in the filter gradient of the
# mini-Xception's residual 1x1 stride-2 convolutions at 64 px.
TRAIN_ONE_STEP_OF_MINI_XCEPTION = """
import keras
import numpy as np

import keras_emotion
from keras_emotion.models.backbones import build_backbone

backbone = build_backbone("mini_xception", 64)
model = keras.Sequential([backbone, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(7)])
model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
rng = np.random.default_rng(0)
frames = rng.uniform(0, 255, (4, 64, 64, 3)).astype("float32")
before = [keras.ops.convert_to_numpy(weight) for weight in backbone.trainable_weights]
loss = model.train_on_batch(frames, rng.integers(0, 7, 4))
changed = sum(
    not np.array_equal(old, keras.ops.convert_to_numpy(new)) for old, new in zip(before, backbone.trainable_weights)
)
assert np.isfinite(loss), loss
assert changed == len(before), f"{changed} of {len(before)} backbone weights changed"
print("ok")
"""


def test_package_import_leaves_onednn_setting_alone():
    environment = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    result = subprocess.run(
        [sys.executable, "-c", "import os, keras_emotion; print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))"],
        capture_output=True, text=True, env=environment, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "None"


def test_mini_xception_trains_a_step_under_onednn():
    environment = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", TRAIN_ONE_STEP_OF_MINI_XCEPTION],
        capture_output=True, text=True, env=environment, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_subsampled_pointwise_conv_equals_strided_conv():
    """Same weights, same outputs as the 1x1 stride-2 Conv2D, on even and odd sizes, and the
    outputs match a NumPy reference: rows and columns 0, 2, 4, ... times the kernel plus bias."""
    rng = np.random.default_rng(0)
    for size in (64, 33):
        inputs = rng.normal(size=(2, size, size, 8)).astype("float32")
        strided = keras.layers.Conv2D(16, 1, strides=2, padding="same")
        expected = keras.ops.convert_to_numpy(strided(inputs))
        subsampled = SubsampledPointwiseConv2D.from_strided(strided)
        subsampled.build(inputs.shape)
        subsampled.set_weights(strided.get_weights())

        outputs = keras.ops.convert_to_numpy(subsampled(inputs))

        kernel, bias = strided.get_weights()
        reference = inputs[:, ::2, ::2, :] @ kernel[0, 0] + bias
        assert outputs.shape == (2, (size + 1) // 2, (size + 1) // 2, 16)
        assert tuple(subsampled.compute_output_shape(inputs.shape)) == outputs.shape
        np.testing.assert_allclose(outputs, expected, atol=1e-5)
        np.testing.assert_allclose(outputs, reference, atol=1e-5)


def test_subsampled_pointwise_conv_round_trips_through_config():
    layer = SubsampledPointwiseConv2D(subsample=2, filters=4, kernel_size=1, name="residual")
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(restored, SubsampledPointwiseConv2D)
    assert restored.subsample == 2 and restored.strides == (1, 1)
