"""Tests of keras_emotion.export.saved_model: signatures served without keras_emotion, layout,
versions, atomic writes, the graph's ops, saved_model_cli and scripts/export.py."""

import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from serving_reference import (
    CLASS_NAMES,
    CONFIG,
    INFO,
    PREPROCESSING,
    assert_outputs_match,
    pipeline_features,
    run_in_fresh_process,
)

from keras_emotion.data import schema
from keras_emotion.data.config import InputConfig
from keras_emotion.export import export_saved_model, next_version, saved_model
from keras_emotion.models import build_model
from keras_emotion.models.info import ModelInfo, Preprocessing
from keras_emotion.models.saving import save_trained_model

HERE = pathlib.Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
PY_FUNC_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


def block_mean_resize(frames, factor):
    """NumPy area resize by an integer factor: (..., H, W, 3) -> (..., H/f, W/f, 3)."""
    *leading, height, width, channels = frames.shape
    blocks = frames.astype(np.float64).reshape(*leading, height // factor, factor, width // factor, factor, channels)
    return blocks.mean(axis=(-4, -2))


def centre_crop(frames):
    offset = (PREPROCESSING.resize_size - PREPROCESSING.image_size) // 2
    window = slice(offset, offset + PREPROCESSING.image_size)
    return frames[..., window, window, :]


def frame_mask(num_frames, length):
    return (np.arange(length)[None, :] < np.asarray(num_frames)[:, None]).astype("float32")


def padded_jpegs(clips):
    """(B, F) object array of the clips' JPEGs, b"" after each clip's end."""
    longest = max(clip.num_frames for clip in clips)
    jpegs = np.full((len(clips), longest), b"", dtype=object)
    for index, clip in enumerate(clips):
        jpegs[index, : clip.num_frames] = clip.frames_jpeg
    return jpegs


@pytest.fixture(scope="module")
def pixel_cases(keras_outputs):
    """uint8 inputs of serving_default with their Keras reference outputs:
    "resized" frames of R x R (only cropped) and "aligned" 256 x 256 faces (4 x 4 block means)."""
    rng = np.random.default_rng(3)
    size = PREPROCESSING.resize_size
    resized = rng.integers(0, 256, (3, 5, size, size, 3), dtype=np.uint8)
    aligned = rng.integers(0, 256, (2, 2, 256, 256, 3), dtype=np.uint8)
    cases = {}
    for case, frames, num_frames, reference_frames in (
        ("resized", resized, [5, 3, 1], centre_crop(resized)),
        ("aligned", aligned, [2, 1], centre_crop(block_mean_resize(aligned, 256 // size))),
    ):
        inputs = {"frames": frames, "num_frames": np.array(num_frames, np.int32)}
        features = {
            "frames": reference_frames.astype("float32"),
            "frame_mask": frame_mask(num_frames, frames.shape[1]),
        }
        cases[case] = ("serving_default", inputs, keras_outputs(features))
    return cases


def test_signatures_in_a_fresh_process_without_keras_emotion_match_keras(
    exported_dir, pixel_cases, ck48_clips, ck48_reference, tmp_path
):
    cases = dict(pixel_cases)
    cases["jpeg"] = ("encoded_frames", {"frames": padded_jpegs(ck48_clips)}, ck48_reference)
    examples = np.array([schema.serialize_clip(clip) for clip in ck48_clips], dtype=object)
    cases["tf_example"] = ("tf_example", {"examples": examples}, ck48_reference)

    result = run_in_fresh_process(
        HERE / "served_in_fresh_process.py",
        {"saved_model": exported_dir, "cases": {case: (sig, inputs) for case, (sig, inputs, _) in cases.items()}},
        tmp_path,
    )

    assert result["keras_emotion_importable"] is False
    assert set(result["outputs"]["jpeg"]) == {"probabilities", "label", "frame_importance", "spatial_attention"}
    for case, (_, _, reference) in cases.items():
        assert_outputs_match(result["outputs"][case], reference, case)
    # padding frames get no importance; a 5-frame clip is served by a model built for 3
    assert np.all(result["outputs"]["resized"]["frame_importance"][2, 1:] == 0)
    assert result["outputs"]["tf_example"]["frame_importance"].shape == (3, 5)


def test_a_model_without_spatial_attention_serves_the_other_outputs(ck48_clips, ck48_shard, tmp_path):
    config = dataclasses.replace(CONFIG, spatial="none", temporal="lstm", lstm_units=8)
    model = build_model(config)
    reference_model = build_model(dataclasses.replace(config, num_frames=None))
    reference_model.set_weights(model.get_weights())
    reference = {
        name: keras.ops.convert_to_numpy(value)
        for name, value in reference_model(pipeline_features(ck48_shard)).items()
    }
    assert set(reference) == {"probabilities", "frame_importance"}

    loaded = tf.saved_model.load(export_saved_model(model, INFO, str(tmp_path), "plain"))
    answer = loaded.signatures["encoded_frames"](frames=tf.constant(padded_jpegs(ck48_clips)))
    assert_outputs_match({name: value.numpy() for name, value in answer.items()}, reference, "none + lstm")


def test_jpeg_padding_may_sit_anywhere_in_a_clip(call_signature, ck48_clips):
    clip = ck48_clips[2]  # 5 frames
    jpegs = np.array([[b"", clip.frames_jpeg[0], b"", clip.frames_jpeg[1], b""]], dtype=object)
    served = call_signature("encoded_frames", {"frames": jpegs})
    compact = call_signature("encoded_frames", {"frames": np.array([clip.frames_jpeg[:2]], dtype=object)})
    np.testing.assert_allclose(served["probabilities"], compact["probabilities"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(served["frame_importance"][:, [1, 3]], compact["frame_importance"], rtol=1e-5, atol=1e-6)
    assert np.all(served["frame_importance"][:, [0, 2, 4]] == 0)


@pytest.mark.parametrize(
    "signature, inputs, message",
    [
        ("serving_default", {"frames": np.zeros((1, 2, 64, 64, 3), np.uint8), "num_frames": np.array([3], np.int32)},
         "num_frames exceeds the frames axis"),
        ("serving_default", {"frames": np.zeros((1, 2, 64, 64, 3), np.uint8), "num_frames": np.array([0], np.int32)},
         "num_frames >= 1"),
        ("serving_default", {"frames": np.zeros((0, 2, 64, 64, 3), np.uint8), "num_frames": np.zeros((0,), np.int32)},
         r"the request holds no clip \(frames has batch size 0\); send at least one clip"),
        ("serving_default", {"frames": np.zeros((1, 2, 64, 64, 4), np.uint8), "num_frames": np.array([2], np.int32)},
         r"frames must have 3 \(RGB\) or 1 \(gray\) channels on their last axis"),
        ("encoded_frames", {"frames": np.zeros((0, 2), dtype=object)}, r"the request holds no clip"),
        ("tf_example", {"examples": np.zeros((0,), dtype=object)}, r"the request holds no clip"),
        ("encoded_frames", {"frames": np.array([[b"", b""]], dtype=object)}, "at least one non-empty JPEG"),
        ("encoded_frames", {"frames": np.array([[b"not a jpeg"]], dtype=object)}, "image"),
    ],
)
def test_bad_requests_fail_with_a_clear_message(call_signature, signature, inputs, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        call_signature(signature, inputs)


def test_gray_frames_are_served_as_three_equal_channels(call_signature, ck48_clips):
    gray = tf.io.decode_jpeg(ck48_clips[0].frames_jpeg[0], channels=1).numpy()
    frames = np.stack([gray, gray])[np.newaxis]  # (1, 2, H, W, 1)
    num_frames = np.array([2], np.int32)
    served = call_signature("serving_default", {"frames": frames, "num_frames": num_frames})
    as_rgb = call_signature("serving_default", {"frames": np.repeat(frames, 3, axis=-1), "num_frames": num_frames})
    for name in ("probabilities", "frame_importance"):
        np.testing.assert_array_equal(served[name], as_rgb[name])


def test_the_graph_holds_only_standard_tensorflow_ops(exported_dir):
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import op_def_registry

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString(pathlib.Path(exported_dir, "saved_model.pb").read_bytes())
    (meta_graph,) = proto.meta_graphs
    library = meta_graph.graph_def.library
    function_names = {function.signature.name for function in library.function}
    ops = {node.op for node in meta_graph.graph_def.node}
    for function in library.function:
        ops |= {node.op for node in function.node_def}
    assert set(meta_graph.signature_def) >= {"serving_default", "encoded_frames", "tf_example"}
    assert not ops & PY_FUNC_OPS
    unregistered = {op for op in ops - function_names if op_def_registry.get(op) is None}
    assert not unregistered, f"ops outside TensorFlow's registry: {sorted(unregistered)}"
    assert {"DecodeJpeg", "ParseSequenceExample"} & ops or "ParseSequenceExampleV2" in ops


def test_saved_model_cli_lists_the_signatures(exported_dir):
    cli = pathlib.Path(sys.executable).with_name("saved_model_cli")
    completed = subprocess.run(
        [str(cli), "show", "--all", "--dir", exported_dir], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    text = completed.stdout
    for signature in ("serving_default", "encoded_frames", "tf_example"):
        assert f"signature_def['{signature}']" in text
    for name in ("frames", "num_frames", "examples", "probabilities", "label", "frame_importance", "spatial_attention"):
        assert f"['{name}'] tensor_info" in text, name
    serving_default = text.split("signature_def['serving_default']")[1].split("signature_def[")[0]
    assert "DT_UINT8" in serving_default and "(-1, -1, -1, -1, -1)" in serving_default
    assert "DT_STRING" in serving_default  # the label


def test_layout_and_next_version(exported_dir):
    version_dir = pathlib.Path(exported_dir)
    assert version_dir.name == "1" and version_dir.parent.name == "emotion"
    assert (version_dir / "saved_model.pb").is_file() and (version_dir / "variables").is_dir()
    assert sorted(os.listdir(version_dir.parent)) == ["1"]  # no temporary folder left
    info = json.loads((version_dir / "assets.extra" / "model_info.json").read_text())
    assert info == {
        "format_version": 3,
        "class_names": CLASS_NAMES,
        "preprocessing": {"image_size": 32, "crop_fraction": 0.5, "resize_size": 64},
        "num_frames": None,
        "model_config": None,
        "alignment": None,
        "training_data": [],
        "keras_version": "",
    }
    assert saved_model.read_export_info(str(version_dir)) == INFO
    model_dir = version_dir.parent.parent / "versions_probe"
    for entry in ("3", "12", ".13.partial-x", "notes"):
        (model_dir / entry).mkdir(parents=True)
    assert next_version(str(model_dir)) == 13
    assert next_version(str(model_dir / "missing")) == 1


def test_existing_version_is_kept_unless_overwrite(export_model, exported_dir, tmp_path):
    first = tmp_path / "emotion" / "4"
    shutil.copytree(exported_dir, first)
    marker = first / "marker"
    marker.write_text("old export")
    with pytest.raises(FileExistsError, match=r"emotion/4 exists.*overwrite=True"):
        export_saved_model(export_model, INFO, str(tmp_path), "emotion", version=4)
    assert marker.exists()
    again = export_saved_model(export_model, INFO, str(tmp_path), "emotion", version=4, overwrite=True)
    assert again == str(first) and not marker.exists() and (first / "saved_model.pb").is_file()
    assert sorted(os.listdir(tmp_path / "emotion")) == ["4"]


def test_a_failed_export_leaves_no_version_folder(export_model, tmp_path, monkeypatch):
    real_build = saved_model._build_export_archive

    class CrashingArchive:
        def __init__(self, archive):
            self.archive = archive

        def write_out(self, path, verbose):
            self.archive.write_out(path, verbose=verbose)
            raise KeyboardInterrupt("crash after writing")

    monkeypatch.setattr(saved_model, "_build_export_archive", lambda *args: CrashingArchive(real_build(*args)))
    with pytest.raises(KeyboardInterrupt):
        export_saved_model(export_model, INFO, str(tmp_path), "emotion")
    assert os.listdir(tmp_path / "emotion") == []


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        ({"info": ModelInfo(["a", "b"], PREPROCESSING)}, ValueError, r"2 class names \['a', 'b'\] for a model with 3 classes"),
        ({"info": ModelInfo(CLASS_NAMES, Preprocessing(48, 0.5))}, ValueError, r"takes frames of \(32, 32, 3\).*\(48, 48, 3\)"),
        ({"name": "../up"}, ValueError, "plain folder name"),
        ({"version": 0}, ValueError, "integers >= 1"),
    ],
)
def test_bad_arguments_are_named(export_model, tmp_path, overrides, error, message):
    arguments = dict(
        model=export_model, info=INFO, base_dir=str(tmp_path), name="emotion"
    )
    arguments.update(overrides)
    with pytest.raises(error, match=message):
        export_saved_model(**arguments)


def test_preprocessing_resizes_like_the_pipeline():
    for image_size, crop_fraction, resize_size in ((32, 0.5, 64), (64, 0.875, 73), (224, 0.875, 256), (48, 0.9, 53)):
        assert Preprocessing(image_size, crop_fraction).resize_size == resize_size
        assert InputConfig("x", image_size=image_size, crop_fraction=crop_fraction, seed=0).resize_size == resize_size
    assert Preprocessing(112, 1.0).resize_size == 112
    with pytest.raises(ValueError, match="crop_fraction=1.5"):
        Preprocessing(32, 1.5)


def test_export_script_exports_a_model_reloaded_from_keras_file(export_model, ck48_shard, ck48_reference, tmp_path):
    trained_dir = tmp_path / "trained"
    input_config = InputConfig(
        file_pattern=ck48_shard, num_frames=CONFIG.num_frames, image_size=32, crop_fraction=0.5, seed=0
    )
    save_trained_model(export_model, str(trained_dir), CONFIG, input_config, CLASS_NAMES)
    command = [
        sys.executable, str(REPO_ROOT / "scripts" / "export.py"),
        f"--model={trained_dir}", f"--base_dir={tmp_path / 'serving'}", "--name=emo",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    version_dir = tmp_path / "serving" / "emo" / "1"
    assert f"exported {version_dir}" in completed.stdout

    loaded = tf.saved_model.load(str(version_dir))
    examples = [record.numpy() for record in tf.data.TFRecordDataset(ck48_shard)]
    answer = loaded.signatures["tf_example"](examples=tf.constant(examples))
    assert_outputs_match({name: value.numpy() for name, value in answer.items()}, ck48_reference, "reloaded")

