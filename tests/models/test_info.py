"""Tests of keras_emotion.models.info: model_info.json, and the face alignment it records."""

import dataclasses
import json
import re

import pytest

from keras_emotion.data.faces import AlignmentConfig
from keras_emotion.models.info import AlignmentMismatchError, ModelInfo, Preprocessing, read_model_info, write_model_info

SHIPPED_FRAMING = AlignmentConfig(output_size=112, eye_level=0.38, eye_distance=0.37)


def test_version_2_files_are_read_with_their_alignment(tmp_path):
    """Version 2 (the shipped model's file until format 3) kept the training data's manifest."""
    alignment_without_size = {key: value for key, value in dataclasses.asdict(SHIPPED_FRAMING).items() if key != "output_size"}
    values = {
        "format_version": 2,
        "class_names": ["a", "b"],
        "preprocessing": {"image_size": 112, "crop_fraction": 1.0},
        "num_frames": 16,
        "model_config": None,
        "dataset_manifest": {
            "image_size": 112,  # a manifest's face side, which older alignments did not repeat
            "preprocessing": {"alignment": alignment_without_size},
            "sources": ["FER2013 train", "CK+48"],
        },
        "keras_version": "3.15.1",
    }
    (tmp_path / "model_info.json").write_text(json.dumps(values))
    info = read_model_info(str(tmp_path))
    assert info.alignment == SHIPPED_FRAMING
    assert info.training_data == ("FER2013 train", "CK+48")
    write_model_info(str(tmp_path), info)  # written back as version 3
    stored = json.loads((tmp_path / "model_info.json").read_text())
    assert stored["format_version"] == 3 and "dataset_manifest" not in stored
    assert stored["alignment"] == dataclasses.asdict(SHIPPED_FRAMING)
    assert read_model_info(str(tmp_path)) == info
    values["dataset_manifest"] = None
    (tmp_path / "model_info.json").write_text(json.dumps(values))
    assert read_model_info(str(tmp_path)).alignment is None


def test_data_framed_otherwise_is_refused_naming_both():
    info = ModelInfo(class_names=["a"], preprocessing=Preprocessing(112, 1.0), alignment=SHIPPED_FRAMING)
    message = (
        "data/manifest.json: faces aligned with eye_level=0.4, eye_distance=0.3, but the model models/x was trained "
        "on faces aligned with eye_level=0.38, eye_distance=0.37; preprocess the data for this model: "
        "keras-emotion preprocess --like_model models/x ..."
    )
    with pytest.raises(AlignmentMismatchError, match=f"^{re.escape(message)}$"):
        info.check_alignment(AlignmentConfig(), "data/manifest.json", "models/x")
    with pytest.raises(AlignmentMismatchError, match=r"faces aligned with landmarks=5, but .* with landmarks=68;"):
        info.check_alignment(dataclasses.replace(SHIPPED_FRAMING, landmarks=5), "d", "m")
    # The same framing found with other detector settings, stored at another size: accepted.
    info.check_alignment(
        dataclasses.replace(SHIPPED_FRAMING, output_size=256, upsample=0, cnn_fallback=False, jpeg_quality=80), "d", "m"
    )
    info.check_alignment(None, "d", "m")  # unknown: nothing to compare
    dataclasses.replace(info, alignment=None).check_alignment(AlignmentConfig(), "d", "m")
