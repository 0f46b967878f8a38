"""Import-time guards of the package."""

import os
import subprocess
import sys

GRADIENT_OF_STRIDED_1X1_CONV = """
import keras_emotion  # must come first: it disables TensorFlow's crashing oneDNN kernels
import numpy as np
import tensorflow as tf

rng = np.random.default_rng(0)
inputs = rng.normal(size=(8, 64, 64, 8)).astype("float32")
output_gradient = rng.normal(size=(8, 32, 32, 16)).astype("float32")
filter_gradient = tf.raw_ops.Conv2DBackpropFilter(
    input=inputs, filter_sizes=[1, 1, 8, 16], out_backprop=output_gradient,
    strides=[1, 2, 2, 1], padding="SAME")
expected = np.einsum("bhwc,bhwd->cd", inputs[:, ::2, ::2, :], output_gradient)
np.testing.assert_allclose(filter_gradient.numpy()[0, 0], expected, rtol=1e-4, atol=1e-3)
print("ok")
"""


def test_importing_the_package_first_avoids_the_onednn_crash():
    """TF 2.21 with oneDNN segfaults on this gradient (mini-Xception's residual 1x1 stride-2
    convolutions); importing keras_emotion first must make it run and be right."""
    environment = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    result = subprocess.run(
        [sys.executable, "-c", GRADIENT_OF_STRIDED_1X1_CONV],
        capture_output=True, text=True, env=environment, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
