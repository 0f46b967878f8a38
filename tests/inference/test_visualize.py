"""Tests of keras_emotion.inference.visualize and scripts/visualize.py (Fig. 2 and the confusion matrix)."""

import json
import pathlib
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

from keras_emotion import testing
from keras_emotion.data import schema
from keras_emotion.data.faces import AlignmentConfig, FaceAligner, encode_jpeg
from keras_emotion.data.video import read_frames
from keras_emotion.inference.clip_model import load_clip_model
from keras_emotion.inference.visualize import (
    DPI,
    attention_map,
    explain_clip,
    figure_inches,
    plot_evaluation,
    plot_explanation,
    read_tfrecord_clip,
    rescale_importance,
)
from keras_emotion.models.info import AlignmentMismatchError
from keras_emotion.pretrained import PRETRAINED_MODEL_DIR
from keras_emotion.training.metrics import classification_report, save_report_json

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sequence_frames(small_demo_corpus) -> list:
    frames, _ = read_frames(str(small_demo_corpus / "demo_sequence.avi"))
    return frames


@pytest.fixture(scope="module")
def model(tiny_trained_model_dir):
    return load_clip_model(tiny_trained_model_dir)


@pytest.fixture(scope="module")
def clip_shards(sequence_frames, tmp_path_factory) -> tuple:
    """A TFRecord folder with two aligned clips of the demo sequence (16 frames each):
    "seq_anger" (frames 8-23) and "seq_happy" (frames 40-55); and the aligned faces of the latter."""
    aligner = FaceAligner(AlignmentConfig(upsample=0, cnn_fallback=False))
    clips, faces = [], {}
    for clip_id, label, first in (("seq_anger", 0, 8), ("seq_happy", 1, 40)):
        aligned = aligner.align_clip(sequence_frames[first : first + 16])
        faces[clip_id] = aligned.faces
        clips.append(
            schema.AlignedClip(
                clip_id=clip_id,
                label=label,
                label_name=clip_id[4:],
                source="demo_sequence.avi",
                subject="astronaut",
                split="val",
                fps=25.0,
                frames_jpeg=[encode_jpeg(face) for face in aligned.faces],
                detected=aligned.detected,
                landmarks=aligned.landmarks,
            )
        )
    directory = str(tmp_path_factory.mktemp("fig2_clips"))
    testing.write_shards(clips, directory, split="val")
    return directory, faces["seq_happy"]


def test_reads_a_clip_by_id_from_tfrecords(clip_shards):
    directory, happy_faces = clip_shards
    faces, label_name = read_tfrecord_clip(directory, "seq_happy")
    assert label_name == "happy" and faces.shape == (16, 256, 256, 3) and faces.dtype == np.uint8
    assert np.abs(faces.astype(float) - happy_faces).mean() < 3.0  # JPEG quality 95
    with pytest.raises(ValueError, match=r"clip id 'seq_sad' is in none of the 1 shard\(s\) matching '.*val-\*"):
        read_tfrecord_clip(directory, "seq_sad", split="val")


def test_a_clip_aligned_otherwise_than_the_model_is_refused(ck48_tfrecords):
    shipped = load_clip_model(PRETRAINED_MODEL_DIR)
    clip_id = first_clip_id(ck48_tfrecords)
    message = rf"^{re.escape(ck48_tfrecords)}/manifest\.json: faces aligned with eye_level=0\.4, eye_distance=0\.3, but"
    with pytest.raises(AlignmentMismatchError, match=message):
        read_tfrecord_clip(ck48_tfrecords, clip_id, model=shipped)
    faces, _ = read_tfrecord_clip(ck48_tfrecords, clip_id)  # without a model nothing is compared
    assert faces.shape[1:] == (256, 256, 3)


def first_clip_id(directory: str) -> str:
    """The id of the first clip of the first shard of `directory`."""
    first_shard = sorted(pathlib.Path(directory).glob("*.tfrecord"))[0]
    first_record = next(iter(tf.data.TFRecordDataset(str(first_shard))))
    return schema.parse_clip(first_record)["clip_id"].numpy().decode()


def test_explanation_matches_the_model_and_temporal_softmax_pooling(clip_shards, model):
    faces, _ = read_tfrecord_clip(clip_shards[0], "seq_happy")
    explanation = explain_clip(model, faces, first_frame=40)
    # 8 of the 16 frames, chosen like evaluation does: centres of 8 equal segments.
    np.testing.assert_array_equal(explanation.frame_indices, 40 + np.arange(1, 16, 2))
    direct = model.predict(faces[1::2])
    np.testing.assert_allclose(explanation.probabilities, direct.probabilities, atol=1e-5)
    np.testing.assert_allclose(explanation.frame_importance, direct.frame_importance, atol=1e-5)
    np.testing.assert_allclose(explanation.spatial_attention, direct.spatial_attention, atol=1e-5)
    assert explanation.crops.shape == (8, 64, 64, 3) and explanation.spatial_attention.shape == (8, 2, 16)
    # Temporal softmax pooling: p(c | f) = p(c, f) / p_f, so sum_f p_f p(c | f) = p(c).
    np.testing.assert_allclose(explanation.frame_probabilities.sum(axis=1), 1.0, atol=1e-5)
    recombined = explanation.frame_importance @ explanation.frame_probabilities
    np.testing.assert_allclose(recombined, explanation.probabilities, atol=1e-5)


def test_fig2_png_has_the_expected_size_and_one_attention_row_per_head(clip_shards, model, tmp_path):
    faces, _ = read_tfrecord_clip(clip_shards[0], "seq_anger")
    explanation = explain_clip(model, faces, first_frame=8)
    path = tmp_path / "fig2.png"
    figure = plot_explanation(explanation, str(path), title="seq_anger")
    image = cv2.imread(str(path))
    width, height = figure_inches(num_frames=8, num_heads=2, num_classes=4)
    assert (width, height) == pytest.approx((1.3 + 8 * 1.4, 1.0 + 3 * 1.4 + (4 * 0.22 + 0.4) + 1.3))
    assert image.shape == (round(height * DPI), round(width * DPI), 3)
    labels = [axes.get_label() for axes in figure.axes]
    assert sorted(label for label in labels if label.startswith("head")) == sorted(
        f"head {head} frame {frame}" for head in (1, 2) for frame in range(1, 9)
    )
    assert sum(label.startswith("face") for label in labels) == 8
    assert sum(label.startswith("importance") for label in labels) == 8
    # The most important frame's bar reaches 100%, the least important one's 0%.
    heights = [axes.patches[0].get_height() for axes in figure.axes if axes.get_label().startswith("importance")]
    assert max(heights) == pytest.approx(100.0) and min(heights) == pytest.approx(0.0)
    # Each head's panel is the face tinted by that head's own map.
    panels = {axes.get_label(): np.asarray(axes.images[0].get_array(), float) for axes in figure.axes if axes.images}
    face = panels["face 3"] / 255.0
    assert np.abs(panels["head 1 frame 3"] - face).mean() > 0.05
    assert np.abs(panels["head 1 frame 3"] - panels["head 2 frame 3"]).mean() > 0.01


def test_attention_cells_land_on_their_grid_block():
    attention = np.zeros(16, np.float32)
    attention[6] = 1.0  # row 1, column 2 of the 4 x 4 grid
    weights = attention_map(attention, 64)
    row, column = np.unravel_index(np.argmax(weights), weights.shape)
    assert 16 <= row < 32 and 32 <= column < 48
    with pytest.raises(ValueError, match="15 cells is not a square grid"):
        attention_map(np.ones(15), 64)


def test_importance_is_rescaled_to_0_100_percent():
    np.testing.assert_allclose(rescale_importance([0.1, 0.4, 0.25, 0.25]), [0.0, 100.0, 50.0, 50.0])
    np.testing.assert_allclose(rescale_importance([0.25] * 4), [100.0] * 4)


def test_confusion_matrix_from_an_evaluation_json(tmp_path):
    report = classification_report([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], ["anger", "happy", "sadness"])
    evaluation = save_report_json({**report, "clips": []}, tmp_path / "evaluation.json")
    path = plot_evaluation(evaluation, str(tmp_path / "cm.png"))
    assert cv2.imread(path).shape[2] == 3
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"accuracy": 0.5}))
    with pytest.raises(ValueError, match=f"{broken}: not an evaluation report .missing class_names, confusion_matrix"):
        plot_evaluation(str(broken), str(tmp_path / "none.png"))


def test_command_line_draws_fig2_of_a_video(tmp_path, sequence_frames, tiny_trained_model_dir, write_avi):
    video = tmp_path / "clip.avi"
    write_avi(video, sequence_frames[100:120], fps=25.0)
    output = tmp_path / "fig2.png"
    ran = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "visualize.py"), "--model", tiny_trained_model_dir]
        + ["--input", str(video), "--first_frame", "4", "--num_video_frames", "8", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    width, height = figure_inches(num_frames=8, num_heads=2, num_classes=4)
    assert cv2.imread(str(output)).shape == (round(height * DPI), round(width * DPI), 3)
