"""The default fast path of predict_video (detect every k-th frame, follow faces in between)
against the every-frame path (detect_every=1), on the demo video and on a real-face video made of
CK+48 frames, and what happens when a followed face disappears."""

import cv2
import numpy as np
import pytest
from demo_video import ALIGNMENT

from keras_emotion.data.video import read_frames
from keras_emotion.inference import default_alignment, load_clip_model
from keras_emotion.inference.predictor import PredictConfig, predict_video
from keras_emotion.pretrained import PRETRAINED_MODEL_DIR

CLEAR_MARGIN = 0.1
"""A window's label is clear when its top probability exceeds the second by this much."""
CK48_SEQUENCES = ["S010_004", "S011_006", "S022_001", "S026_006", "S032_006", "S046_004", "S052_004", "S055_004"]


def window_labels(prediction: dict) -> dict:
    """{(track, first frame, last frame): label} of every window."""
    return {
        (track["track"], window["first_frame"], window["last_frame"]): window["label"]
        for track in prediction["tracks"]
        for window in track["windows"]
    }


def window_probabilities(prediction: dict) -> dict:
    """{(track, first frame, last frame): (E,) probabilities} of every window."""
    return {
        (track["track"], window["first_frame"], window["last_frame"]): np.array(list(window["probabilities"].values()))
        for track in prediction["tracks"]
        for window in track["windows"]
    }


def assert_fast_path_agrees(path: str, model, window: int, stride: int, alignment=ALIGNMENT) -> dict:
    """Runs both paths on `path`; checks the fast one detects on fewer frames, gives the
    every-frame path's label on every window that path names by a clear margin (at least 80% of
    them) and nearly its probabilities. Returns the fast prediction."""
    every_frame = predict_video(path, model, PredictConfig(window=window, stride=stride, detect_every=1), alignment)
    fast = predict_video(path, model, PredictConfig(window=window, stride=stride), alignment)
    frames = every_frame["stats"]["frames_processed"]
    assert every_frame["stats"]["detector_frames"] == frames
    assert fast["stats"]["detector_frames"] < frames / 2
    expected, found = window_labels(every_frame), window_labels(fast)
    assert len(expected) >= 8 and set(found) == set(expected)
    expected_probabilities, found_probabilities = window_probabilities(every_frame), window_probabilities(fast)
    # A window whose two likeliest classes are nearly tied (one spanning two expressions) may
    # flip; every window named by a clear margin keeps its label, and most windows are clear.
    clear = [key for key, value in expected_probabilities.items() if np.diff(np.sort(value)[-2:])[0] >= CLEAR_MARGIN]
    assert len(clear) >= 0.8 * len(expected), f"only {len(clear)} of {len(expected)} windows have a clear label"
    disagreeing = {
        key: (expected[key], found[key], np.round(expected_probabilities[key], 3), np.round(found_probabilities[key], 3))
        for key in clear
        if found[key] != expected[key]
    }
    assert not disagreeing, f"{len(disagreeing)} of {len(clear)} clear window labels differ: {disagreeing}"
    # The tiny model may give most windows one label: the probabilities must agree too, far
    # closer than they vary from window to window.
    spread = np.ptp(np.stack(list(expected_probabilities.values())), axis=0).max()
    largest_difference = max(np.abs(found_probabilities[key] - value).max() for key, value in expected_probabilities.items())
    assert spread > 0.02, "the windows should not all look alike to the model"
    assert largest_difference < 0.2 * spread, (largest_difference, spread)
    assert [track["label"] for track in fast["tracks"]] == [track["label"] for track in every_frame["tracks"]]
    return fast


def test_fast_path_agrees_with_every_frame_path_on_the_demo_video(sequence_path, keras_model):
    fast = assert_fast_path_agrees(sequence_path, keras_model, window=8, stride=4)
    (track,) = fast["tracks"]
    assert track["detected_frames"] == track["num_frames"] == 134  # detected or followed


@pytest.fixture(scope="module")
def ck48_video(shared_dir, tmp_path_factory, write_avi) -> str:
    """72 frames of 320 x 240: 8 CK+48 sequences (3 frames each, 8 subjects) shown 3 video
    frames per image, the 48 px face upscaled to 160 px and drifting right 1 px a frame."""
    ck48_dir = shared_dir / "data" / "ck48" / "CK+48"
    frames = []
    for sequence in CK48_SEQUENCES:
        paths = sorted(ck48_dir.glob(f"*/{sequence}_*.png"))
        assert len(paths) == 3, sequence
        for path in paths:
            face = cv2.resize(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), (160, 160), interpolation=cv2.INTER_CUBIC)
            for _ in range(3):
                frame = np.full((240, 320), 96, np.uint8)
                left = 40 + len(frames)
                frame[40:200, left : left + 160] = face
                frames.append(np.repeat(frame[..., None], 3, axis=2))
    path = tmp_path_factory.mktemp("ck48_video") / "ck48.avi"
    write_avi(path, frames, fps=25.0)
    return str(path)


def test_fast_path_agrees_with_every_frame_path_on_real_faces(ck48_video, keras_model):
    assert_fast_path_agrees(ck48_video, keras_model, window=8, stride=4)


@pytest.mark.parametrize("video", ["demo", "ck48"])
def test_the_shipped_model_labels_windows_alike_on_both_paths(video, sequence_path, ck48_video):
    """The trained model in the package, whose labels change from window to window on real
    faces: agreement is not a matter of one label for everything."""
    model = load_clip_model(PRETRAINED_MODEL_DIR)
    path = {"demo": sequence_path, "ck48": ck48_video}[video]
    fast = assert_fast_path_agrees(path, model, window=8, stride=4, alignment=default_alignment(model))
    if video == "ck48":
        assert len(set(window_labels(fast).values())) >= 3


def test_a_lost_face_is_detected_again_at_once(tmp_path, sequence_path, keras_model, write_avi):
    """Faces in frames 0-21 and 32-51, a face-less picture in 22-31: frame 22 is a detection
    frame (due only at 25), the face comes back at the next detection after 32."""
    frames, _ = read_frames(sequence_path)
    empty = np.full_like(frames[0], 128)
    empty[::16] = 0  # some texture, no face
    video = tmp_path / "gap.avi"
    write_avi(video, list(frames[:22]) + [empty] * 10 + list(frames[22:42]), fps=25.0)

    prediction = predict_video(str(video), keras_model, PredictConfig(window=8, stride=4, detect_every=5), ALIGNMENT)

    records = prediction["frames"]
    detector_frames = [record["frame"] for record in records if record["detector"]]
    assert detector_frames[:6] == [0, 5, 10, 15, 20, 22]
    assert [record["faces"] for record in records] == [1] * 22 + [0] * 10 + [1] * 20
    first_back = next(frame for frame in detector_frames if frame >= 32)
    assert first_back <= 36
    assert all(records[frame]["faces"] == 1 and records[frame]["tracks"] for frame in range(first_back, 52))
    (track,) = prediction["tracks"]  # the gap is within max_missed: the track goes on
    assert track["missed_frames"] == list(range(22, first_back))
