"""dlib's face ResNet in Keras: the port against dlib itself, the reader, the layers."""

import json
import os
import subprocess
import sys

import cv2
import dlib
import keras
import numpy as np
import pytest
from skimage import data as skimage_data

from keras_emotion.dlib_models import LANDMARKS_5, dlib_model_file
from keras_emotion.models import ModelConfig, build_backbone, build_model
from keras_emotion.models.backbones import EqualizedGray
from keras_emotion.models.dlib_resnet import (
    ZeroPaddedAdd,
    build_dlib_resnet,
    default_dat_file,
    minimum_image_size,
    read_dat_file,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FER_FACES = ("validation/happy", "validation/surprise", "validation/angry", "validation/sad")
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def face_chips(shared_dir) -> np.ndarray:
    """uint8 (5, 150, 150, 3) RGB real face chips: the astronaut photograph aligned by dlib
    (detector, 5-point landmarks, `get_face_chip`), and four FER2013 faces resized to 150."""
    photo = skimage_data.astronaut()
    face = max(dlib.get_frontal_face_detector()(photo, 1), key=lambda box: box.area())
    landmarks = dlib.shape_predictor(dlib_model_file(LANDMARKS_5))(photo, face)
    chips = [dlib.get_face_chip(photo, landmarks, 150, 0.25)]
    for folder in FER_FACES:
        directory = shared_dir / "data" / "fer2013" / folder
        gray = cv2.imread(str(directory / sorted(os.listdir(directory))[0]), cv2.IMREAD_GRAYSCALE)
        chips.append(cv2.cvtColor(cv2.resize(gray, (150, 150), interpolation=cv2.INTER_LINEAR), cv2.COLOR_GRAY2RGB))
    return np.stack(chips)


@pytest.fixture(scope="module")
def dlib_descriptors(face_chips) -> np.ndarray:
    recognizer = dlib.face_recognition_model_v1(default_dat_file())
    return np.stack([np.asarray(recognizer.compute_face_descriptor(chip)) for chip in face_chips])


def test_port_reproduces_dlibs_face_descriptor(face_chips, dlib_descriptors):
    model = build_dlib_resnet(150, "descriptor")
    ours = model.predict(face_chips.astype(np.float32), verbose=0)
    assert ours.shape == (5, 128)
    # Different faces have different descriptors: the comparison is not trivially met.
    assert np.linalg.norm(dlib_descriptors[0] - dlib_descriptors[1]) > 0.3
    assert np.abs(ours - dlib_descriptors).max() <= TOLERANCE


JAX_SCRIPT = """
import json, sys, numpy as np
from keras_emotion.models import build_backbone
from keras_emotion.models.dlib_resnet import build_dlib_resnet
import keras
chips = np.load(sys.argv[1]).astype("float32")
print(json.dumps({"backend": keras.backend.backend(),
                  "descriptors": np.asarray(build_dlib_resnet(150, "descriptor")(chips)).tolist(),
                  "maps": np.asarray(build_backbone("dlib_resnet", 150).predict(chips, verbose=0)).tolist()}))
"""


def test_port_runs_under_jax(face_chips, dlib_descriptors, tmp_path):
    np.save(tmp_path / "chips.npy", face_chips[:2])
    environment = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT, str(tmp_path / "chips.npy")],
        env=environment, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == "jax"
    assert np.abs(np.asarray(report["descriptors"]) - dlib_descriptors[:2]).max() <= TOLERANCE
    maps = build_backbone("dlib_resnet", 150).predict(face_chips[:2].astype(np.float32), verbose=0)
    np.testing.assert_allclose(np.asarray(report["maps"]), maps, atol=1e-4)


def test_reader_finds_the_whole_network():
    weights = read_dat_file(default_dat_file())
    assert len(weights.convs) == len(weights.affines) == 29
    assert weights.convs[0].kernel.shape == (7, 7, 3, 32) and weights.convs[0].strides == 2
    assert weights.convs[0].padding == 0
    assert [conv.kernel.shape[-1] for conv in weights.convs[1:]] == [32] * 6 + [64] * 8 + [128] * 6 + [256] * 8
    assert weights.descriptor_kernel.shape == (256, 128)
    parameters = sum(conv.kernel.size + conv.bias.size for conv in weights.convs)
    parameters += sum(gamma.size + beta.size for gamma, beta in weights.affines) + weights.descriptor_kernel.size
    assert parameters == build_dlib_resnet(150, "descriptor").count_params() == 5_614_592


def test_reader_names_the_file_of_a_truncated_or_foreign_file(tmp_path):
    with open(default_dat_file(), "rb") as file:
        head = file.read(200_000)
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(head)
    with pytest.raises(ValueError, match=rf"{truncated}: not dlib's face-recognition ResNet \(at byte \d+: "):
        read_dat_file(str(truncated))
    foreign = tmp_path / "foreign.dat"
    foreign.write_bytes(b"\x01\x02" * 1000)
    with pytest.raises(
        ValueError,
        match=rf"{foreign}: not dlib's face-recognition ResNet \(at byte 0: expected one of the layers "
        r"\['con_4', 'affine_', 'fc_2'\]\)",
    ):
        read_dat_file(str(foreign))
    empty = tmp_path / "empty.dat"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=rf"{empty}: not dlib's face-recognition ResNet \(at byte 0: the file is empty\)"):
        read_dat_file(str(empty))
    with pytest.raises(FileNotFoundError, match=f"dlib_resnet weights file {tmp_path / 'missing.dat'} does not exist"):
        read_dat_file(str(tmp_path / "missing.dat"))


def test_zero_padded_add_matches_numpy():
    rng = np.random.default_rng(0)
    larger = rng.normal(size=(2, 4, 4, 64)).astype(np.float32)
    smaller = rng.normal(size=(2, 3, 3, 32)).astype(np.float32)
    expected = larger.copy()
    expected[:, :3, :3, :32] += smaller
    layer = ZeroPaddedAdd()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer([smaller, larger])), expected, rtol=1e-6)
    assert layer.compute_output_shape([(None, 3, 3, 32), (None, 4, 4, 64)]) == (None, 4, 4, 64)


@pytest.mark.parametrize(
    "output, image_size, shape",
    [("stage128", 150, (8, 8, 128)), ("stage256a", 150, (4, 4, 256)), ("stage128", 112, (6, 6, 128)),
     ("stage256a", 112, (3, 3, 256)), ("stage256b", 150, (2, 2, 256))],
)
def test_stage_maps_have_dlibs_sizes(output, image_size, shape):
    assert build_dlib_resnet(image_size, output).output_shape == (None, *shape)


def test_too_small_inputs_and_unknown_outputs_are_refused():
    smallest = minimum_image_size("stage128")
    assert build_dlib_resnet(smallest, "stage128").output_shape[1] >= 1
    with pytest.raises(ValueError, match=f"image_size={smallest - 1}; dlib_resnet up to stage128 needs at least {smallest}"):
        build_dlib_resnet(smallest - 1, "stage128")
    with pytest.raises(ValueError, match="dlib_resnet output 'stage512'; expected one of"):
        build_dlib_resnet(150, "stage512")


def test_backbone_is_the_descriptor_network_on_equalised_gray(face_chips):
    """The backbone's map is the map the full network computes on the way to the descriptor,
    from the frame turned gray and histogram-equalised (OpenCV as the reference)."""
    backbone = build_backbone("dlib_resnet_256", 150)
    full = build_dlib_resnet(150, "descriptor")
    inner = keras.Model(full.inputs, full.get_layer("stage256a_block3_relu2").output)
    frames = face_chips[1:3]  # FER2013 faces: gray in three equal channels
    equalised = np.stack([np.repeat(cv2.equalizeHist(frame[..., 0])[..., None], 3, axis=2) for frame in frames])
    assert np.abs(equalised.astype(int) - frames).mean() > 1  # resized FER2013 faces are not equalised
    np.testing.assert_allclose(
        backbone.predict(frames.astype(np.float32), verbose=0),
        inner.predict(equalised.astype(np.float32), verbose=0),
        atol=1e-4,
    )
    assert all(variable.path.startswith("backbone/") for variable in backbone.weights)


def test_equalized_gray_matches_opencv(face_chips):
    gray = face_chips[1:]
    layer = EqualizedGray()
    ours = keras.ops.convert_to_numpy(layer(gray.astype(np.float32)))
    expected = np.stack([cv2.equalizeHist(frame[..., 0]) for frame in gray])
    np.testing.assert_array_equal(ours, np.repeat(expected[..., None], 3, axis=-1))
    # Colour: OpenCV's fixed-point luma rounds a few pixels to the next grey level.
    colour = face_chips[:1]
    ours = keras.ops.convert_to_numpy(layer(colour.astype(np.float32)))[0, ..., 0]
    expected = cv2.equalizeHist(cv2.cvtColor(colour[0], cv2.COLOR_RGB2GRAY))
    assert np.mean(ours != expected) < 0.005 and np.abs(ours - expected).max() <= 8
    flat = np.full((1, 8, 8, 3), 77.0, np.float32)  # one level: kept, as OpenCV keeps it
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(flat)), flat)


def test_fine_tuned_weights_load_into_either_cut(tmp_path):
    deeper = build_backbone("dlib_resnet_256", 112)
    rng = np.random.default_rng(3)
    for variable in deeper.weights:
        variable.assign(variable + rng.normal(0, 0.01, variable.shape).astype(np.float32))
    path = str(tmp_path / "fine_tuned.weights.h5")
    deeper.save_weights(path)
    shallower = build_backbone("dlib_resnet", 112, weights=path)
    fine_tuned = {variable.path: variable.numpy() for variable in deeper.weights}
    assert len(shallower.weights) < len(fine_tuned)
    for variable in shallower.weights:
        np.testing.assert_array_equal(variable.numpy(), fine_tuned[variable.path])


def test_video_model_attends_over_the_stage128_map():
    config = ModelConfig(num_classes=7, num_frames=2, image_size=112, backbone="dlib_resnet", num_heads=2)
    assert config.pretrained_backbone
    model = build_model(config)
    outputs = model.predict(
        {"frames": np.zeros((1, 2, 112, 112, 3), np.float32), "frame_mask": np.ones((1, 2), np.float32)},
        verbose=0,
    )
    assert outputs["spatial_attention"].shape == (1, 2, 2, 36)
    assert outputs["probabilities"].shape == (1, 7)
