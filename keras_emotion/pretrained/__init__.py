"""The emotion model that ships inside the package (its model card: MODEL_CARD.md here).

    trained = keras_emotion.load_pretrained()
    trained.model        # {"frames": (B, F, 112, 112, 3) 0..255, "frame_mask": (B, F)} -> p(c) ...
    trained.info         # class names (the 7 of `data.emotions.EMOTIONS`), preprocessing

The folder is a trained-model directory (model_info.json + model.float16.npz), so every tool
that takes `--model` reads it too; they use it when none is given. Loading
reads only these files: nothing is downloaded.
"""

import os

from keras_emotion.models.saving import TrainedModel, load_trained_model

PRETRAINED_MODEL_DIR = os.path.dirname(os.path.abspath(__file__))


def load_pretrained() -> TrainedModel:
    """The shipped emotion model and its ModelInfo (for inference: not compiled)."""
    return load_trained_model(PRETRAINED_MODEL_DIR)
