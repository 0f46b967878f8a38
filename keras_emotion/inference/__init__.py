"""Inference on raw videos and pictures: trained models behind one interface (`clip_model`),
faces tracked across frames and cut into windows (`tracking`), the video predictor and its JSON
(`predictor`), its tables, timeline and annotated video (`results`), the one-call
`keras_emotion.predict` (`api`), and the paper's Fig. 2 pictures (`visualize`)."""

from keras_emotion.inference.clip_model import ClipModel, ClipPrediction, default_alignment, load_clip_model
from keras_emotion.inference.predictor import PredictConfig, predict_video, write_prediction
from keras_emotion.inference.results import VideoPrediction
from keras_emotion.inference.tracking import FaceTracker, SlidingWindows

__all__ = [
    "ClipModel",
    "ClipPrediction",
    "FaceTracker",
    "PredictConfig",
    "SlidingWindows",
    "VideoPrediction",
    "default_alignment",
    "load_clip_model",
    "predict_video",
    "write_prediction",
]
