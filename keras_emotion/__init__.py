"""keras_emotion: emotion recognition in face videos with spatial attention and
temporal softmax pooling (Keras 3 / TensorFlow).

`keras_emotion.predict("video.mp4")` gives the emotions of every face of a video (tables,
timeline, annotated video: `inference.results.VideoPrediction`); `keras_emotion.load_pretrained()`
loads the model that ships with the package. Both are imported on first use, so that
`import keras_emotion.data.config` and the other light modules do not load TensorFlow.
"""

import importlib

__version__ = "0.1.0"

_LAZY_ATTRIBUTES = {
    "load_pretrained": "keras_emotion.pretrained",
    "PRETRAINED_MODEL_DIR": "keras_emotion.pretrained",
    "predict": "keras_emotion.inference.api",
}


def __getattr__(name):
    if name in _LAZY_ATTRIBUTES:
        return getattr(importlib.import_module(_LAZY_ATTRIBUTES[name]), name)
    raise AttributeError(f"module 'keras_emotion' has no attribute {name!r}")
