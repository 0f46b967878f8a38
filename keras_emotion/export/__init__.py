"""SavedModel export for TensorFlow Serving (see `saved_model`)."""

from keras_emotion.export.saved_model import (
    export_saved_model,
    export_trained_model,
    next_version,
)

__all__ = [
    "export_saved_model",
    "export_trained_model",
    "next_version",
]
