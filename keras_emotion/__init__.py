"""keras_emotion: emotion recognition in face videos with spatial attention and
temporal softmax pooling (Keras 3 / TensorFlow)."""

__version__ = "0.1.0"
