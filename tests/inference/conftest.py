"""Fixtures of the inference tests: the synthetic demo video, aligned, and the tiny trained model."""

import numpy as np
import pytest
from demo_video import ALIGNMENT

from keras_emotion.data.faces import FaceAligner
from keras_emotion.data.video import read_frames
from keras_emotion.inference.clip_model import load_clip_model


@pytest.fixture(scope="module")
def sequence_path(small_demo_corpus) -> str:
    return str(small_demo_corpus / "demo_sequence.avi")


@pytest.fixture(scope="module")
def sequence_faces(sequence_path) -> np.ndarray:
    """uint8 (134, 256, 256, 3): the sequence aligned as preprocessing aligns a clip."""
    frames, _ = read_frames(sequence_path)
    aligned = FaceAligner(ALIGNMENT).align_clip(frames)
    assert aligned.detected.all()
    return aligned.faces


@pytest.fixture(scope="module")
def keras_model(tiny_trained_model_dir):
    return load_clip_model(tiny_trained_model_dir)
