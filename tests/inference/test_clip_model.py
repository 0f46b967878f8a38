"""Tests of keras_emotion.inference.clip_model: a SavedModel answers like the Keras model it was
exported from, and its class names come from its model_info.json."""

import json
import os
import pathlib
import shutil

import cv2
import numpy as np
import pytest
from demo_video import ALIGNMENT, CLASS_NAMES

from keras_emotion.data.video import read_frames
from keras_emotion.export.saved_model import MODEL_INFO_PATH, export_trained_model
from keras_emotion.inference.clip_model import load_clip_model
from keras_emotion.inference.predictor import PredictConfig, predict_video


@pytest.fixture(scope="module")
def exported_version_dir(tmp_path_factory, tiny_trained_model_dir) -> str:
    """`export_trained_model` of the tiny trained model: <base>/emotion/1."""
    return export_trained_model(tiny_trained_model_dir, str(tmp_path_factory.mktemp("serving")), "emotion")


def test_saved_model_gives_the_keras_model_predictions(
    tmp_path, exported_version_dir, keras_model, sequence_faces, sequence_path
):
    version_dir = exported_version_dir
    served = load_clip_model(os.path.dirname(version_dir))  # the TF Serving folder: highest version
    assert served.description == {"path": version_dir, "format": "saved_model"}
    assert served.class_names == CLASS_NAMES and served.num_frames is None
    for first in (0, 50, 100):
        faces = sequence_faces[first : first + 8]
        expected, answer = keras_model.predict(faces), served.predict(faces)
        np.testing.assert_allclose(answer.probabilities, expected.probabilities, atol=1e-4)
        np.testing.assert_allclose(answer.frame_importance, expected.frame_importance, atol=1e-4)
        np.testing.assert_allclose(answer.spatial_attention, expected.spatial_attention, atol=1e-4)

    # A batch of windows (what the predictor sends when several tracks complete one in a frame).
    clips = [sequence_faces[first : first + 8] for first in (0, 50, 100)]
    for model in (keras_model, served):
        for clip, batched in zip(clips, model.predict_batch(clips)):
            single = keras_model.predict(clip)
            np.testing.assert_allclose(batched.probabilities, single.probabilities, atol=1e-4)
            np.testing.assert_allclose(batched.frame_importance, single.frame_importance, atol=1e-4)
            np.testing.assert_allclose(batched.spatial_attention, single.spatial_attention, atol=1e-4)

    folder = tmp_path / "frames"  # a folder of frames works like a video
    folder.mkdir()
    frames, _ = read_frames(sequence_path)
    for index, frame in enumerate(frames[40:52]):
        cv2.imwrite(str(folder / f"frame{index}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    prediction = predict_video(str(folder), served, PredictConfig(stride=8), ALIGNMENT)
    (track,) = prediction["tracks"]
    assert prediction["window"] == 16 and prediction["model"]["frames_per_clip"] is None
    assert [(w["first_frame"], w["last_frame"]) for w in track["windows"]] == [(0, 11)]
    assert len(track["windows"][0]["frame_importance"]) == 12


def test_saved_model_class_names_come_from_its_model_info(tmp_path, exported_version_dir):
    version_dir = str(tmp_path / "1")
    shutil.copytree(exported_version_dir, version_dir)
    renamed = ["a", "b", "c", "d"]
    assert load_clip_model(version_dir, class_names=renamed).class_names == renamed
    with pytest.raises(ValueError, match=r"3 class names \['a', 'b', 'c'\] for a model with 4 classes"):
        load_clip_model(version_dir, class_names=renamed[:3])

    info_path = os.path.join(version_dir, MODEL_INFO_PATH)
    info = json.loads(pathlib.Path(info_path).read_text())
    pathlib.Path(info_path).write_text(json.dumps({**info, "format_version": 1}))
    with pytest.raises(ValueError, match=f"{info_path}: format_version=1; this library reads 2 or 3$"):
        load_clip_model(version_dir)
    os.remove(info_path)
    with pytest.raises(FileNotFoundError, match=f"{info_path} not found"):
        load_clip_model(version_dir)
    assert load_clip_model(version_dir, class_names=renamed).class_names == renamed
