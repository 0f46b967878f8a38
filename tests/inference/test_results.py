"""`keras_emotion.predict` and its tables, timeline and annotated video, on real faces (CK+48
sequences played side by side as a video) with the shipped model."""

import dataclasses
import glob
import json
import os
import pathlib
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest

import keras_emotion
from keras_emotion.data.video import InputError, read_frames
from keras_emotion.inference import PredictConfig, batch, default_alignment, load_clip_model
from keras_emotion.inference.results import BOX_COLUMNS, CSV_FILES, TRACK_COLOURS, VideoPrediction
from keras_emotion.pretrained import PRETRAINED_MODEL_DIR

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
FPS = 10.0
FRAMES = 40


def _sequence(ck48_dir, emotion, subject_index):
    """The gray frames of one CK+48 sequence of `emotion` (neutral to peak)."""
    paths = sorted(glob.glob(os.path.join(ck48_dir, emotion, "*.png")))
    subject = sorted({os.path.basename(path)[:8] for path in paths})[subject_index]
    return [cv2.imread(path, cv2.IMREAD_GRAYSCALE) for path in paths if os.path.basename(path).startswith(subject)]


@pytest.fixture(scope="module")
def two_faces_video(ck48_dir, tmp_path_factory, write_avi):
    """40 frames at 10 fps, 480 x 320: a happy CK+48 face on the left, a surprised one on the
    right (each sequence's 3 frames shown 13-14 frames each, upscaled to 160 px)."""
    left, right = _sequence(ck48_dir, "happy", 0), _sequence(ck48_dir, "surprise", 1)
    frames = []
    for index in range(FRAMES):
        canvas = np.full((320, 480, 3), 90, np.uint8)
        for sequence, x in ((left, 40), (right, 280)):
            face = cv2.resize(sequence[min(index // 14, len(sequence) - 1)], (160, 160), interpolation=cv2.INTER_CUBIC)
            canvas[30:190, x : x + 160] = face[:, :, np.newaxis]
        frames.append(canvas)
    path = tmp_path_factory.mktemp("two_faces") / "two_faces.avi"
    write_avi(path, frames, fps=FPS)
    return str(path)


@pytest.fixture(scope="module")
def shipped_model():
    return load_clip_model(PRETRAINED_MODEL_DIR)


@pytest.fixture(scope="module")
def result(two_faces_video, shipped_model):
    return keras_emotion.predict(two_faces_video, model=shipped_model, upsample=1)


def test_one_call_names_each_face_and_the_tables_hold_the_json(result):
    prediction = result.prediction
    assert [track["label"] for track in prediction["tracks"]] == ["happy", "surprise"]
    tracks = result.tracks
    assert list(tracks["track"]) == [0, 1] and list(tracks["label"]) == ["happy", "surprise"]
    names = result.class_names
    for track, row in zip(prediction["tracks"], tracks.itertuples(index=False)):
        row = row._asdict()
        np.testing.assert_allclose([row[name] for name in names], [track["probabilities"][name] for name in names],
                                   atol=1e-6)  # the mean of the windows' 6-decimal figures
        assert row["reidentified"] == 0 and track["segment"] == 0 and track["identity_distance"] is None
        assert (row["first_frame"], row["last_frame"], row["num_frames"]) == (0, FRAMES - 1, FRAMES)
        assert row["first_time"] == 0.0 and row["last_time"] == pytest.approx((FRAMES - 1) / FPS)
        assert row["windows"] == len(track["windows"])

    frames = result.frames
    assert len(frames) == sum(track["num_frames"] for track in prediction["tracks"])
    records = {record["frame"]: record for record in prediction["frames"]}
    for track in prediction["tracks"]:
        rows = frames[frames["track"] == track["track"]]
        np.testing.assert_array_equal(rows["frame"], np.arange(FRAMES))
        np.testing.assert_allclose(rows["importance"], track["frame_importance"])
        # A NumPy reference: each frame's probabilities are the mean of the windows holding it.
        window_probabilities = np.array([[w["probabilities"][n] for n in names] for w in track["windows"]])
        holds = np.array([[w["first_frame"] <= f <= w["last_frame"] for w in track["windows"]] for f in range(FRAMES)])
        expected = holds @ window_probabilities / holds.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(rows[names].to_numpy(), expected, rtol=1e-9)
        assert list(rows["label"]) == [names[i] for i in expected.argmax(axis=1)]
        for row in rows.itertuples(index=False):
            record = records[row.frame]
            np.testing.assert_allclose([getattr(row, c) for c in BOX_COLUMNS], record["tracks"][str(track["track"])])
            assert row.source == ("detected" if record["detector"] else "followed")
        share = np.mean(rows["label"] == track["label"])
        assert tracks.loc[tracks["track"] == track["track"], "label_share"].item() == pytest.approx(share)
    windows = result.windows
    assert len(windows) == sum(len(track["windows"]) for track in prediction["tracks"])
    assert list(windows.columns[:9]) == ["track", "segment", "window", "first_frame", "last_frame", "first_time",
                                         "last_time", "label", names[0]]
    assert "happy" in repr(result) and "surprise" in repr(result)


def test_csv_files_read_back_as_the_tables(result, tmp_path):
    paths = result.to_csv(str(tmp_path / "csv"))
    assert [os.path.basename(path) for path in paths] == list(CSV_FILES)
    for path, table in zip(paths, (result.frames, result.tracks, result.windows)):
        pd.testing.assert_frame_equal(pd.read_csv(path), table, check_dtype=False)
    assert sorted(os.listdir(tmp_path / "csv")) == sorted(CSV_FILES)  # no temporary file left
    json_path = result.to_json(str(tmp_path / "prediction.json"))
    assert VideoPrediction(json.loads(pathlib.Path(json_path).read_text())).tracks.equals(result.tracks)


def test_the_annotated_video_has_every_frame_and_the_boxes_where_the_tracks_are(result, two_faces_video, tmp_path):
    path = result.write_annotated_video(str(tmp_path / "annotated.avi"))
    annotated, fps = read_frames(path)
    original, _ = read_frames(two_faces_video)
    assert len(annotated) == len(original) == FRAMES and fps == pytest.approx(FPS)
    frames = result.frames
    for index in (0, 25, FRAMES - 1):
        for row in frames[frames["frame"] == index].itertuples(index=False):
            left, top, right, bottom = (int(round(getattr(row, c))) for c in BOX_COLUMNS)
            colour = np.array(TRACK_COLOURS[row.track % len(TRACK_COLOURS)], np.float64)
            edge = annotated[index][top, left + 5 : right - 5].astype(np.float64)  # the box's top edge
            assert np.abs(edge.mean(axis=0) - colour).max() < 40, (index, row.track, edge.mean(axis=0))
            assert np.abs(original[index][top, left + 5 : right - 5].mean(axis=0) - colour).max() > 60
        # Away from the faces and their panels, the frame is unchanged (up to MJPG).
        assert np.abs(annotated[index][300:, 200:280].astype(int) - original[index][300:, 200:280]).max() < 12
    with pytest.raises(InputError) as error:
        result.write_annotated_video(str(tmp_path / "annotated.gif"))
    assert str(error.value) == f"{tmp_path / 'annotated.gif'}: unknown video extension; expected one of ['.avi', '.mkv', '.mov', '.mp4']"


def test_the_timeline_is_a_picture_per_track(result, tmp_path):
    path = result.plot_timeline(str(tmp_path / "timeline.png"))
    picture = cv2.imread(path)
    assert picture is not None and picture.shape[0] > 600  # two tracks, two panels each


def test_frames_given_as_an_array_give_the_same_tracks(result, two_faces_video, shipped_model):
    frames, _ = read_frames(two_faces_video)
    from_array = keras_emotion.predict(np.stack(frames), model=shipped_model, fps=FPS, upsample=1)
    assert from_array.prediction["source"] == f"<array of {FRAMES} frames>"
    pd.testing.assert_frame_equal(from_array.tracks, result.tracks)
    with pytest.raises(InputError, match=r"^<array \(0, 8, 8, 3\) uint8>: no frames$"):
        keras_emotion.predict(np.zeros((0, 8, 8, 3), np.uint8), model=shipped_model)


def test_unknown_options_are_named(shipped_model):
    with pytest.raises(TypeError, match=r"^predict\(\) got unknown options \['windows'\]; known: \["):
        keras_emotion.predict("video.mp4", model=shipped_model, windows=8)


def test_the_command_line_writes_the_tables_picture_and_video(two_faces_video, tmp_path):
    command = [sys.executable, str(REPO_ROOT / "scripts" / "predict.py"), f"--input={two_faces_video}", "--upsample=1"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    nothing = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert nothing.returncode == 1
    assert nothing.stderr.strip().endswith(
        "predict: nothing to write; give at least one of --output, --csv, --timeline, --annotated_video, --jsonl"
    )
    outputs = [f"--csv={tmp_path / 'csv'}", f"--timeline={tmp_path / 't.png'}", f"--annotated_video={tmp_path / 'a.mp4'}"]
    done = subprocess.run(command + outputs, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(os.listdir(tmp_path / "csv")) == sorted(CSV_FILES)
    assert list(pd.read_csv(tmp_path / "csv" / "tracks.csv")["label"]) == ["happy", "surprise"]
    assert len(read_frames(str(tmp_path / "a.mp4"))[0]) == FRAMES
    assert cv2.imread(str(tmp_path / "t.png")) is not None
    assert "2 face track(s) -> " in done.stdout


def test_a_folder_of_videos_gives_a_result_per_video_a_summary_and_resumes(two_faces_video, shipped_model, tmp_path):
    videos = tmp_path / "videos"
    (videos / "day2").mkdir(parents=True)
    shutil.copy(two_faces_video, videos / "first.avi")
    shutil.copy(two_faces_video, videos / "day2" / "second.avi")
    (videos / "day2" / "broken.mp4").write_bytes(b"not a video")
    (videos / "notes.txt").write_text("not a video either")
    output = tmp_path / "out"
    lines = []
    summary = batch.predict_folder(str(videos), str(output), shipped_model, PredictConfig(),
                                   dataclasses.replace(default_alignment(shipped_model), upsample=1), log=lines.append)
    assert batch.list_videos(str(videos)) == ["day2/broken.mp4", "day2/second.avi", "first.avi"]
    assert lines[0] == "[1/3] day2/broken.mp4" and lines[1].startswith("  failed: cannot open video")
    assert list(summary["video"]) == ["day2/broken.mp4", "day2/second.avi", "day2/second.avi", "first.avi", "first.avi"]
    assert list(summary["label"].fillna("-")) == ["-", "happy", "surprise", "happy", "surprise"]
    assert summary["status"].iloc[0] == "failed: cannot open video (unreadable, corrupt or unsupported format)"
    pd.testing.assert_frame_equal(pd.read_csv(output / batch.SUMMARY_FILE), summary, check_dtype=False)
    for video in ("first.avi", "day2/second.avi"):
        assert sorted(os.listdir(output / video)) == sorted([*CSV_FILES, batch.PREDICTION_FILE])
    assert not (output / "day2" / "broken.mp4").exists()

    stamp = (output / "first.avi" / batch.PREDICTION_FILE).stat().st_mtime_ns
    command = [sys.executable, str(REPO_ROOT / "scripts" / "predict.py"), f"--input={videos}", f"--output={output}"]
    rerun = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "[3/3] first.avi: done before, skipped" in rerun.stdout
    assert f"{videos}: 2 video(s) done, 1 failed -> {output / batch.SUMMARY_FILE}" in rerun.stdout
    assert (output / "first.avi" / batch.PREDICTION_FILE).stat().st_mtime_ns == stamp


def test_faces_that_swap_places_and_come_back_keep_their_track_ids(ck48_dir, tmp_path, write_avi, shipped_model):
    """Frames 0-19: a happy face left, a surprised one right; 20-39: nobody; 40-59: the two
    faces again, swapped. Each keeps its track id (dlib's face descriptors), comes back once."""
    happy, surprise = _sequence(ck48_dir, "happy", 0)[-1], _sequence(ck48_dir, "surprise", 1)[-1]
    frames = []
    for index in range(60):
        canvas = np.full((320, 480, 3), 90, np.uint8)
        if not 20 <= index < 40:
            placed = (happy, surprise) if index < 20 else (surprise, happy)
            for face, x in zip(placed, (40, 280)):
                canvas[30:190, x : x + 160] = cv2.resize(face, (160, 160), interpolation=cv2.INTER_CUBIC)[:, :, None]
        frames.append(canvas)
    path = tmp_path / "swap.avi"
    write_avi(path, frames, fps=FPS)
    result = keras_emotion.predict(str(path), model=shipped_model, upsample=1)
    segments = [(t["track"], t["segment"], t["first_frame"], t["label"]) for t in result.prediction["tracks"]]
    assert segments == [(0, 0, 0, "happy"), (0, 1, 40, "happy"), (1, 0, 0, "surprise"), (1, 1, 40, "surprise")]
    assert all(t["identity_distance"] < 0.3 for t in result.prediction["tracks"] if t["segment"])
    tracks = result.tracks
    assert list(tracks["reidentified"]) == [1, 1] and list(tracks["label"]) == ["happy", "surprise"]
    for track_id in (0, 1):
        parts = [t for t in result.prediction["tracks"] if t["track"] == track_id]
        frames_of_track = result.frames[result.frames["track"] == track_id]
        assert tracks["num_frames"][track_id] == sum(part["num_frames"] for part in parts) == len(frames_of_track)
        assert not frames_of_track["frame"].between(20, 39).any()  # nobody there
    frames_table = result.frames
    happy_boxes = frames_table[frames_table["track"] == 0].set_index("frame")["left"]
    assert happy_boxes[10] < 240 < happy_boxes[50]  # left first, right after the swap

    not_reidentified = keras_emotion.predict(str(path), model=shipped_model, upsample=1, reidentify=False)
    assert [t["track"] for t in not_reidentified.prediction["tracks"]] == [0, 1, 2, 3]
    assert list(not_reidentified.tracks["reidentified"]) == [0, 0, 0, 0]
