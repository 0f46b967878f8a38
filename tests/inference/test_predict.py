"""Tests of keras_emotion.inference.predictor and scripts/predict.py on the synthetic demo video.

References are computed independently: faces aligned by `FaceAligner.align_clip` (the
preprocessing path), resized with OpenCV's area interpolation, and the Keras model called
directly.
"""

import json
import os
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest
from demo_video import ALIGNMENT, CLASS_NAMES

from keras_emotion.data.video import InputError, read_frames
from keras_emotion.inference.clip_model import load_clip_model
from keras_emotion.inference.predictor import PredictConfig, predict_video, write_prediction
from keras_emotion.models.saving import load_trained_model

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sequence_prediction(sequence_path, keras_model) -> dict:
    return predict_video(sequence_path, keras_model, PredictConfig(window=8, stride=8, detect_every=1), ALIGNMENT)


def reference_outputs(trained, faces: np.ndarray) -> dict:
    """The Keras model called on (8, 256, 256, 3) faces resized to 73 px by OpenCV and centre cropped to 64."""
    resized = np.stack([cv2.resize(face.astype(np.float32), (73, 73), interpolation=cv2.INTER_AREA) for face in faces])
    frames = resized[np.newaxis, :, 4:68, 4:68, :]
    outputs = trained.model.predict_on_batch({"frames": frames, "frame_mask": np.ones((1, len(faces)), np.float32)})
    return {name: np.asarray(value[0]) for name, value in outputs.items()}


def test_prediction_matches_the_model_called_on_aligned_windows(
    sequence_prediction, sequence_faces, tiny_trained_model_dir
):
    prediction = sequence_prediction
    assert prediction["model"]["class_names"] == CLASS_NAMES and prediction["model"]["format"] == "keras"
    assert prediction["fps"] == 25.0 and (prediction["window"], prediction["stride"]) == (8, 8)
    assert [record["faces"] for record in prediction["frames"]] == [1] * 134
    (track,) = prediction["tracks"]
    assert (track["first_frame"], track["last_frame"], track["num_frames"]) == (0, 133, 134)
    assert track["detected_frames"] == 134 and track["missed_frames"] == []
    # 16 full windows, then the last 8 frames for the 6 frames no window covered yet.
    starts = [window["first_frame"] for window in track["windows"]]
    assert starts == list(range(0, 128, 8)) + [126]
    trained = load_trained_model(tiny_trained_model_dir)
    for window in track["windows"]:
        first, last = window["first_frame"], window["last_frame"]
        assert last - first == 7
        expected = reference_outputs(trained, sequence_faces[first : last + 1])
        probabilities = np.array([window["probabilities"][name] for name in CLASS_NAMES])
        np.testing.assert_allclose(probabilities, expected["probabilities"], atol=2e-3)
        np.testing.assert_allclose(window["frame_importance"], expected["frame_importance"], atol=2e-3)
        assert window["label"] == CLASS_NAMES[int(np.argmax(expected["probabilities"]))]
    window_probabilities = np.array([[w["probabilities"][name] for name in CLASS_NAMES] for w in track["windows"]])
    assert np.ptp(window_probabilities, axis=0).max() > 0.02, "the windows should not all look alike to the model"
    track_probabilities = np.array([track["probabilities"][name] for name in CLASS_NAMES])
    np.testing.assert_allclose(track_probabilities, window_probabilities.mean(axis=0), atol=1e-5)
    assert track["label"] == CLASS_NAMES[int(np.argmax(track_probabilities))]
    assert len(track["frame_importance"]) == 134
    assert sum(track["frame_importance"]) == pytest.approx(1.0, abs=1e-4)
    # Frames 126..127 are in two windows: their importance is the sum of both shares / 17.
    overlap = track["windows"][-2]["frame_importance"][6] + track["windows"][-1]["frame_importance"][0]
    assert track["frame_importance"][126] == pytest.approx(overlap / 17, abs=1e-5)


def test_long_input_streams_with_a_bounded_buffer(sequence_prediction):
    stats = sequence_prediction["stats"]
    assert stats["frames_read"] == stats["frames_processed"] == 134
    assert 0 < stats["peak_buffered_faces"] <= 8  # one window of the one face, not the video


def test_overlapping_windows_reuse_each_frames_backbone_map(sequence_path, sequence_faces, keras_model, monkeypatch):
    featured = []  # the number of faces of each frame_features call
    frame_features = keras_model.frame_features

    def counted_frame_features(faces):
        featured.append(len(faces))
        return frame_features(faces)

    monkeypatch.setattr(keras_model, "frame_features", counted_frame_features)
    config = PredictConfig(window=8, stride=4, detect_every=1)
    (track,) = predict_video(sequence_path, keras_model, config, ALIGNMENT)["tracks"]

    starts = [window["first_frame"] for window in track["windows"]]
    assert starts == list(range(0, 127, 4)) + [126]  # every frame but the first 4 and last 4 is in 2 windows
    # Each frame through the backbone once, in batches of `stride` (the last window's 2 new frames padded to 4).
    assert set(featured) == {4} and sum(featured) == 134 + 2
    whole_model = keras_model.trained.model
    for window in track["windows"]:
        faces = sequence_faces[window["first_frame"] : window["last_frame"] + 1]
        expected = whole_model.predict_on_batch(keras_model.model_inputs(faces[np.newaxis]))
        probabilities = [window["probabilities"][name] for name in CLASS_NAMES]
        np.testing.assert_allclose(probabilities, expected["probabilities"][0], atol=2e-3)
        np.testing.assert_allclose(window["frame_importance"], expected["frame_importance"][0], atol=2e-3)


def test_two_faces_side_by_side_give_two_tracks(tmp_path, sequence_path, keras_model, write_avi):
    frames, _ = read_frames(sequence_path)
    side_by_side = [np.concatenate([frames[i], frames[46 + i][:, ::-1]], axis=1) for i in range(20)]
    video = tmp_path / "two_faces.avi"
    write_avi(video, side_by_side, fps=25.0)
    prediction = predict_video(str(video), keras_model, PredictConfig(window=8, stride=4), ALIGNMENT)

    assert [record["faces"] for record in prediction["frames"]] == [2] * 20
    assert len(prediction["tracks"]) == 2
    sides = {}
    for track in prediction["tracks"]:
        assert (track["first_frame"], track["last_frame"], track["detected_frames"]) == (0, 19, 20)
        assert [w["first_frame"] for w in track["windows"]] == [0, 4, 8, 12]
        centres = [np.mean(record["tracks"][str(track["track"])][0::2]) for record in prediction["frames"]]
        assert max(centres) < 256 or min(centres) >= 256, "a track jumped between the two faces"
        sides["left" if max(centres) < 256 else "right"] = track
    assert set(sides) == {"left", "right"}
    assert sides["left"]["probabilities"] != sides["right"]["probabilities"]


def test_frame_step_processes_every_nth_frame(sequence_path, keras_model):
    prediction = predict_video(sequence_path, keras_model, PredictConfig(window=8, frame_step=3), ALIGNMENT)
    assert [record["frame"] for record in prediction["frames"]] == list(range(0, 134, 3))
    assert prediction["stats"]["frames_read"] == 134
    (track,) = prediction["tracks"]
    assert (track["first_frame"], track["last_frame"], track["num_frames"]) == (0, 132, 45)
    assert prediction["stride"] == 4


def test_missing_or_corrupt_videos_and_model_folders_are_named(tmp_path, keras_model):
    missing = tmp_path / "missing.avi"
    with pytest.raises(InputError, match=f"^{missing}: no such file"):
        predict_video(str(missing), keras_model)
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(b"this is not a video" * 100)
    with pytest.raises(InputError, match=f"^{corrupt}: cannot open video"):
        predict_video(str(corrupt), keras_model)
    with pytest.raises(FileNotFoundError, match=f"^{tmp_path}: not a model directory"):
        load_clip_model(str(tmp_path))


def run_predict_script(model_dir: str, video, output, *flags: str) -> subprocess.CompletedProcess:
    """scripts/predict.py on `video` (the demo face needs no detector upsampling), JSON to `output`."""
    command = [sys.executable, str(REPO_ROOT / "scripts" / "predict.py"), "--model", model_dir]
    command += ["--input", str(video), "--output", str(output), "--upsample", "0", *flags]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_write_prediction_and_the_command_line(tmp_path, sequence_path, tiny_trained_model_dir, write_avi):
    prediction = {"tracks": [{"track": 0, "probabilities": {"happy": 0.5}}], "frames": [{"frame": 0, "faces": 1}]}
    path = write_prediction(prediction, str(tmp_path / "out" / "prediction.json"))
    assert json.loads(pathlib.Path(path).read_text()) == prediction
    assert os.listdir(tmp_path / "out") == ["prediction.json"]  # no temporary file left

    frames, _ = read_frames(sequence_path)
    video = tmp_path / "short.avi"
    write_avi(video, frames[40:52], fps=25.0)
    output = tmp_path / "cli.json"
    ran = run_predict_script(tiny_trained_model_dir, video, output, "--frame_step", "2")
    assert ran.returncode == 0, ran.stderr
    assert f"{video}: 12 frames read, 6 processed, 1 face track(s) -> {output}" in ran.stdout
    written = json.loads(output.read_text())
    (track,) = written["tracks"]
    assert written["frame_step"] == 2 and written["window"] == 8 and written["stride"] == 4
    assert (track["first_frame"], track["last_frame"], track["num_frames"]) == (0, 10, 6)
    assert f"track 0: frames 0-10, 1 window(s), {track['label']}" in ran.stdout


def test_a_picture_gets_its_face_classified(tmp_path, sequence_path, tiny_trained_model_dir, keras_model):
    frames, _ = read_frames(sequence_path)
    picture = tmp_path / "picture.png"
    cv2.imwrite(str(picture), cv2.cvtColor(frames[40], cv2.COLOR_RGB2BGR))
    output = tmp_path / "picture.json"
    ran = run_predict_script(tiny_trained_model_dir, picture, output)
    assert ran.returncode == 0, ran.stderr
    written = json.loads(output.read_text())
    (track,) = written["tracks"]
    assert written["dropped_tracks"] == []
    assert (track["first_frame"], track["last_frame"], track["num_frames"], track["detected_frames"]) == (0, 0, 1, 1)
    assert f"{picture}: 1 frames read, 1 processed, 1 face track(s) -> {output}" in ran.stdout
    (from_array,) = predict_video(frames[40], keras_model, alignment=ALIGNMENT)["tracks"]  # (H, W, 3): one picture
    assert from_array["probabilities"] == pytest.approx(track["probabilities"], abs=1e-6)


@pytest.mark.parametrize(
    "blank_frames, reason",
    [
        (2, "detected in 1 frame, fewer than min_detections=3"),
        (1, "detected in 1 frame, fewer than the input's 2 frames (min_detections=3)"),
    ],
)
def test_a_face_in_too_few_frames_says_why_its_track_was_dropped(
    tmp_path, sequence_path, tiny_trained_model_dir, write_avi, blank_frames, reason
):
    frames, _ = read_frames(sequence_path)
    video = tmp_path / "short.avi"
    write_avi(video, np.concatenate([frames[40:41], np.full_like(frames[:blank_frames], 128)]), fps=25.0)
    output = tmp_path / "short.json"
    ran = run_predict_script(tiny_trained_model_dir, video, output)
    assert ran.returncode == 0, ran.stderr
    written = json.loads(output.read_text())
    assert written["tracks"] == []
    assert written["dropped_tracks"] == [{"track": 0, "first_frame": 0, "detected_frames": 1, "reason": reason}]
    assert written["frames"][0] == {"frame": 0, "faces": 1, "tracks": {}, "detector": True}
    assert ran.stdout.splitlines()[-2:] == [
        f"{video}: {1 + blank_frames} frames read, {1 + blank_frames} processed, 0 face track(s) -> {output}",
        f"  track 0 dropped (from frame 0): {reason}",
    ]
