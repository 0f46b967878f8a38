"""keras_emotion: emotion recognition in face videos with spatial attention and
temporal softmax pooling (Keras 3 / TensorFlow)."""

import os

# TensorFlow 2.21's oneDNN CPU kernels crash (segmentation fault) on the filter gradient of a
# 1x1 stride-2 convolution over inputs of about 60 px or more, as in the mini-Xception backbone's
# residual branches (uxlfoundation/oneDNN#6035 reports silently wrong gradients too). TensorFlow
# reads this variable when it loads, so it takes effect when keras_emotion is imported before
# TensorFlow; set TF_ENABLE_ONEDNN_OPTS=1 yourself to opt back in.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

__version__ = "0.1.0"
