"""Tests of keras_emotion.training.metrics against hand-computed and brute-force values."""

import json
import os

import cv2
import numpy as np
import pytest

from keras_emotion.training import metrics

CLASSES = ["anger", "happy", "sadness", "surprise"]
# surprise never occurs in the labels but is predicted once.
LABELS = [0, 0, 0, 1, 1, 2, 2, 2, 2]
PREDICTIONS = [0, 1, 0, 1, 3, 2, 2, 0, 2]


def test_report_matches_hand_computed_values():
    report = metrics.classification_report(LABELS, PREDICTIONS, CLASSES)

    assert report["class_names"] == CLASSES
    assert report["num_examples"] == 9
    assert report["confusion_matrix"] == [[2, 1, 0, 0], [0, 1, 0, 1], [1, 0, 3, 0], [0, 0, 0, 0]]
    assert report["accuracy"] == pytest.approx(6 / 9)
    recalls = {"anger": 2 / 3, "happy": 1 / 2, "sadness": 3 / 4, "surprise": None}
    assert report["per_class_recall"] == pytest.approx(recalls)
    # The absent class does not count: (2/3 + 1/2 + 3/4) / 3, not / 4.
    assert report["unweighted_average_recall"] == pytest.approx(23 / 36)
    assert report["support"] == {"anger": 3, "happy": 2, "sadness": 4, "surprise": 0}
    assert report["predicted"] == {"anger": 3, "happy": 2, "sadness": 3, "surprise": 1}


def test_report_matches_brute_force_counts_on_random_data():
    rng = np.random.default_rng(7)
    num_classes = 5
    labels = rng.integers(0, num_classes, 300)
    predictions = np.where(rng.random(300) < 0.6, labels, rng.integers(0, num_classes, 300))
    names = [f"class{i}" for i in range(num_classes)]

    report = metrics.classification_report(labels.tolist(), predictions, names)

    pairs = list(zip(labels, predictions))
    expected = [[pairs.count((row, column)) for column in range(num_classes)] for row in range(num_classes)]
    assert report["confusion_matrix"] == expected
    assert report["accuracy"] == pytest.approx(np.mean(labels == predictions))
    recalls = [np.mean(predictions[labels == c] == c) for c in range(num_classes)]
    assert list(report["per_class_recall"].values()) == pytest.approx(recalls)
    assert report["unweighted_average_recall"] == pytest.approx(np.mean(recalls))


@pytest.mark.parametrize(
    "labels, predictions, names, message",
    [
        ([0, 1, 2], [0, 1], CLASSES, "differ in length: 3 labels, 2 predictions"),
        ([0, 4, 1], [0, 1, 1], CLASSES, r"labels\[1\] = 4 is out of range"),
        ([0, 1, 1], [0, -1, 1], CLASSES, r"predictions\[1\] = -1 is out of range"),
        ([0, 1], [[0.9, 0.1], [0.2, 0.8]], CLASSES, "argmax"),
        ([0.0, 1.0], [0, 1], CLASSES, "integer class indices"),
        ([], [], CLASSES, "no examples"),
        ([0], [0], ["happy", "happy"], "duplicates"),
        ([0], [0], [], "class_names is empty"),
    ],
)
def test_bad_input_raises_an_error_naming_the_problem(labels, predictions, names, message):
    with pytest.raises(ValueError, match=message):
        metrics.classification_report(labels, predictions, names)


def test_save_report_json_round_trips_and_replaces_atomically(tmp_path):
    report = metrics.classification_report(LABELS, PREDICTIONS, CLASSES)
    path = tmp_path / "eval" / "report.json"

    assert metrics.save_report_json(report, path) == str(path)
    assert json.loads(path.read_text()) == report

    bad = dict(report, extra=object())
    with pytest.raises(TypeError):
        metrics.save_report_json(bad, path)
    assert json.loads(path.read_text()) == report  # the old file is intact
    assert os.listdir(path.parent) == ["report.json"]  # and no temporary file is left


def test_plot_confusion_matrix_writes_a_png(tmp_path):
    report = metrics.classification_report(LABELS, PREDICTIONS, CLASSES)
    path = tmp_path / "confusion.png"

    assert metrics.plot_confusion_matrix(report, path, title="demo") == str(path)

    blue, green, red = np.moveaxis(cv2.imread(str(path)).astype(int), -1, 0)
    assert blue.shape[0] > 200 and blue.shape[1] > 200
    # Cells with a share >= 2/3 (anger 67 %, sadness 75 %) are a strong blue; the
    # background and the empty cells are (near) white.
    assert np.mean((blue - red > 100) & (red < 100)) > 0.02
    assert np.mean((blue > 240) & (green > 240) & (red > 240)) > 0.3
    assert os.listdir(tmp_path) == ["confusion.png"]
