"""The model shipped inside the package (keras_emotion.pretrained): it loads offline, has learnt
real faces, and is the default model of predict, export and visualize."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

import keras_emotion
from keras_emotion.data.emotions import EMOTIONS
from keras_emotion.data.model_input import decode_images
from keras_emotion.inference import default_alignment, load_clip_model
from keras_emotion.inference.predictor import PredictConfig, predict_video
from keras_emotion.pretrained import PRETRAINED_MODEL_DIR
from keras_emotion.models.saving import FLOAT16_WEIGHTS_FILE

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FER_IMAGES_PER_CLASS = 40


@pytest.fixture(scope="module")
def pretrained():
    return keras_emotion.load_pretrained()


@pytest.fixture(scope="module")
def fer_validation_sample(shared_dir, pretrained) -> tuple:
    """The first 40 FER2013 validation images of each emotion (never trained on), decoded and
    resized to the model's input size as in training: (float32 (n, 1, S, S, 3) 0..255 1-frame
    clips, int (n,) indices into EMOTIONS)."""
    paths, labels = [], []
    for label, emotion in enumerate(EMOTIONS):
        folder = shared_dir / "data" / "fer2013" / "validation" / emotion
        paths += [str(path) for path in sorted(folder.iterdir())[:FER_IMAGES_PER_CLASS]]
        labels += [label] * FER_IMAGES_PER_CLASS
    frames = decode_images(paths, pretrained.info.preprocessing.image_size)
    return frames[:, None].astype(np.float32), np.array(labels)


def test_the_shipped_model_loads_offline_from_package_files(pretrained):
    assert pretrained.info.class_names == list(EMOTIONS)
    assert os.path.getsize(os.path.join(PRETRAINED_MODEL_DIR, FLOAT16_WEIGHTS_FILE)) <= 12 * 2**20
    assert os.path.isfile(os.path.join(PRETRAINED_MODEL_DIR, "MODEL_CARD.md"))
    size = pretrained.info.preprocessing.image_size
    clips = np.random.default_rng(0).uniform(0, 255, (2, 5, size, size, 3)).astype(np.float32)
    probabilities = np.asarray(pretrained.model({"frames": clips, "frame_mask": np.ones((2, 5), np.float32)})["probabilities"])
    assert probabilities.shape == (2, len(EMOTIONS))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_the_shipped_model_recognises_held_out_fer2013_faces(pretrained, fer_validation_sample):
    clips, labels = fer_validation_sample
    probabilities = np.asarray(
        pretrained.model.predict({"frames": clips, "frame_mask": np.ones(clips.shape[:2], np.float32)}, verbose=0)[
            "probabilities"
        ]
    )
    recalls = [np.mean(probabilities[labels == label].argmax(axis=1) == label) for label in range(len(EMOTIONS))]
    accuracy = np.mean(probabilities.argmax(axis=1) == labels)
    # Chance is 1/7; the model card reports the whole validation split.
    assert accuracy > 0.5, (accuracy, recalls)
    assert recalls[EMOTIONS.index("happy")] > 0.75, recalls


def test_a_one_frame_clip_and_the_same_frame_repeated_give_the_same_probabilities(pretrained, fer_validation_sample):
    """TP over F copies of one frame: every copy has the same scores, so p(c) does not depend on F."""
    frame = fer_validation_sample[0][:1]
    once = pretrained.model({"frames": frame, "frame_mask": np.ones((1, 1), np.float32)})["probabilities"]
    repeated = np.repeat(frame, 4, axis=1)
    four_times = pretrained.model({"frames": repeated, "frame_mask": np.ones((1, 4), np.float32)})["probabilities"]
    np.testing.assert_allclose(np.asarray(once), np.asarray(four_times), atol=1e-5)


def test_the_shipped_model_labels_real_face_videos(shared_dir, tmp_path, write_avi):
    """A video of CK+48 happy and surprise peaks (upscaled on a gray background) through the
    whole predict path: faces found by dlib, aligned to the model's framing, classified."""
    model = load_clip_model(PRETRAINED_MODEL_DIR)
    ck48 = shared_dir / "data" / "ck48" / "CK+48"
    frames, expected = [], []
    for emotion, sequence in (("happy", "S010_006"), ("surprise", "S011_001")):
        paths = sorted((ck48 / emotion).glob(f"{sequence}_*.png"))
        assert paths, sequence
        face = cv2.resize(cv2.imread(str(paths[-1]), cv2.IMREAD_GRAYSCALE), (160, 160), interpolation=cv2.INTER_CUBIC)
        frame = np.full((240, 320), 96, np.uint8)
        frame[40:200, 80:240] = face
        frames += [np.repeat(frame[..., None], 3, axis=2)] * 16
        expected.append(emotion)
    video = tmp_path / "ck48.avi"
    write_avi(video, frames, fps=25.0)
    prediction = predict_video(str(video), model, PredictConfig(window=16, stride=16), default_alignment(model))
    labels = [window["label"] for track in prediction["tracks"] for window in track["windows"]]
    assert labels == expected


def run_script(name: str, *flags: str) -> subprocess.CompletedProcess:
    command = [sys.executable, os.path.join(REPO_ROOT, "scripts", f"{name}.py"), *flags]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_predict_and_visualize_use_the_shipped_model_without_model_flag(tmp_path, small_demo_corpus):
    sequence_path = str(small_demo_corpus / "demo_sequence.avi")
    output = tmp_path / "prediction.json"
    result = run_script("predict", "--input", sequence_path, "--output", str(output), "--upsample", "0")
    assert result.returncode == 0, result.stderr[-2000:]
    prediction = json.loads(output.read_text())
    assert prediction["model"]["path"] == PRETRAINED_MODEL_DIR
    assert prediction["model"]["class_names"] == list(EMOTIONS)
    assert prediction["tracks"] and all(track["label"] in EMOTIONS for track in prediction["tracks"])

    picture = tmp_path / "fig2.png"
    result = run_script("visualize", "--input", sequence_path, "--num_video_frames", "8", "--output", str(picture))
    assert result.returncode == 0, result.stderr[-2000:]
    assert cv2.imread(str(picture)) is not None


def test_export_uses_the_shipped_model_without_model_dir(tmp_path, pretrained, fer_validation_sample):
    result = run_script("export", "--base_dir", str(tmp_path), "--name", "emotion")
    assert result.returncode == 0, result.stderr[-2000:]
    serving = tf.saved_model.load(str(tmp_path / "emotion" / "1")).signatures["serving_default"]
    faces = fer_validation_sample[0][:3, 0][None]  # one clip of 3 frames
    served = serving(frames=tf.constant(faces.astype(np.uint8)), num_frames=tf.constant([3]))["probabilities"].numpy()
    expected = pretrained.model({"frames": faces, "frame_mask": np.ones((1, 3), np.float32)})["probabilities"]
    np.testing.assert_allclose(served, np.asarray(expected), atol=1e-4)


def test_an_installed_package_loads_the_shipped_model_from_its_own_files(tmp_path):
    """`pip install` (here into a target folder, offline, no dependencies) carries the model as
    package data; a fresh process outside the checkout loads it from the installed copy."""
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
    result = subprocess.run([*pip, "--target", str(target), REPO_ROOT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("model_info.json", FLOAT16_WEIGHTS_FILE, "MODEL_CARD.md"):
        assert (target / "keras_emotion" / "pretrained" / name).is_file(), name
    load = "import keras_emotion; trained = keras_emotion.load_pretrained(); print(keras_emotion.__file__, trained.info.class_names)"
    environment = {**os.environ, "PYTHONPATH": str(target), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", load], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    module_file, class_names = result.stdout.strip().splitlines()[-1].split(" ", 1)
    assert module_file == str(target / "keras_emotion" / "__init__.py")
    assert class_names == str(list(EMOTIONS))
