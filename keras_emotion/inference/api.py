"""`keras_emotion.predict`: the emotions of every face in a video, picture, folder or array, in one call.

    import keras_emotion
    result = keras_emotion.predict("video.mp4")          # the shipped model
    result.tracks                                          # pandas: one row per face track
    result.frames                                          # pandas: one row per face per frame
    result.to_csv("out"); result.plot_timeline("timeline.png"); result.write_annotated_video("out.mp4")

See `results.VideoPrediction` for the tables and `predictor` for how faces are found, followed
and classified.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Union

import numpy as np

from keras_emotion.inference.clip_model import ClipModel, default_alignment, load_clip_model
from keras_emotion.inference.predictor import PredictConfig, predict_video
from keras_emotion.inference.results import VideoPrediction
from keras_emotion.pretrained import PRETRAINED_MODEL_DIR

ALIGNMENT_OPTIONS = ("upsample", "cnn_fallback")
PREDICT_OPTIONS = tuple(field.name for field in dataclasses.fields(PredictConfig)) + ALIGNMENT_OPTIONS


def predict(
    source: Union[str, np.ndarray],
    model: Union[None, str, ClipModel] = None,
    fps: Optional[float] = None,
    **options,
) -> VideoPrediction:
    """Finds, tracks and classifies every face of `source`.

    Args:
        source: a video file, an image file, a folder of frames, or uint8 RGB frames
            (N, H, W, 3) (one image: (H, W, 3)).
        model: a trained-model or SavedModel folder (`load_clip_model`), a loaded `ClipModel`,
            or None for the model shipped in the package.
        fps: the frame rate of an array `source` (times in the tables); a file's is read from it.
        **options: `PredictConfig` fields (window, stride, frame_step, max_side, detect_every,
            ...) and the face detector's `upsample` and `cnn_fallback`.

    Returns:
        A `results.VideoPrediction`.

    Raises:
        TypeError: an unknown option (the message lists the known ones).
        video.InputError: a missing, unreadable or empty source (the message names it).
    """
    unknown = sorted(set(options) - set(PREDICT_OPTIONS))
    if unknown:
        raise TypeError(f"predict() got unknown options {unknown}; known: {sorted(PREDICT_OPTIONS)}")
    if not isinstance(model, ClipModel):
        model = load_clip_model(model or PRETRAINED_MODEL_DIR)
    alignment = dataclasses.replace(
        default_alignment(model), **{name: options.pop(name) for name in ALIGNMENT_OPTIONS if name in options}
    )
    prediction = predict_video(source, model, PredictConfig(**options), alignment, fps=fps)
    return VideoPrediction(prediction)
