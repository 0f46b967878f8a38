"""Export of an emotion model as a self-contained SavedModel for TensorFlow Serving.

`export_saved_model` writes TF Serving's layout, `BASE/NAME/VERSION/` holding `saved_model.pb`
and `variables/` (the server's model base path is `BASE/NAME`), plus
`assets.extra/model_info.json`: the class names and the preprocessing (`model_info`), for
clients and `inference.clip_model`. Frame preprocessing runs in the graph and the graph holds only
standard TensorFlow ops: serving needs neither Python nor this package.

Signatures (B clips, F frames per clip, E classes, S = `Preprocessing.image_size`):

    serving_default  frames      uint8  (B, F, H, W, C)  aligned RGB faces (256 x 256 from
                                                          preprocessing; any square size works);
                                                          C = 3, or C = 1 for gray faces, which
                                                          are given 3 equal channels (as
                                                          preprocessing reads gray images)
                     num_frames  int32  (B,)             real frames of each clip; frames
                                                          [b, num_frames[b]:] are padding
    encoded_frames   frames      string (B, F)           JPEG aligned faces ({"b64": ...} over
                                                          REST); an empty string is padding
    tf_example       examples    string (B,)             serialised clips of the project's
                                                          schema (`schema.serialize_clip`); all
                                                          frames of each clip, the batch padded
                                                          to its longest clip

    outputs          probabilities      float32 (B, E)
                     label              string  (B,)        class name of the most probable class
                     frame_importance   float32 (B, F)      0 for padding frames
                     spatial_attention  float32 (B, F, N, L) only with spatial "sa" / "shift"

Preprocessing is `keras_emotion.data.model_input`'s, as in evaluation (centre crop, no
augmentation): a frame is resized to R = `Preprocessing.resize_size` and its centre S x S is
kept. JPEG frames (encoded_frames, tf_example) go through the pipeline's own decoder (libjpeg
DCT scaling, then area averaging), so they give exactly the numbers of
`build_dataset(training=False, sampling="all")`. uint8 frames are area-averaged (bilinear when
enlarged) from full resolution (`resize_and_crop_pixels`, as inference does), which differs
slightly from a DCT-scaled decode of a JPEG.

A request without clips (B = 0) or with frames of another number of channels fails with an
InvalidArgumentError saying so (TF Serving returns it as the error of the request), not with a
shape error deep in the model.

Any number of frames is accepted whatever F the model was built for: such a model is rebuilt
from its config with a free frame axis and given the same weights (Keras checks the shapes of
the functional inputs, so the model itself rejects other clip lengths).
"""

from __future__ import annotations

import os
import re
from typing import Optional, Sequence

import keras
import tensorflow as tf

from keras_emotion.data import schema
from keras_emotion.data.model_input import centre_crop, decode_resized, resize_and_crop_pixels
from keras_emotion.files import atomic_directory
from keras_emotion.models import with_any_number_of_frames
from keras_emotion.models.info import (
    MODEL_INFO_FILE,
    ModelInfo,
    Preprocessing,
    check_class_count,
    read_model_info,
    write_model_info,
)
from keras_emotion.models.saving import load_trained_model

MODEL_INPUTS = ("frames", "frame_mask")
MODEL_INFO_PATH = os.path.join("assets.extra", MODEL_INFO_FILE)
_VERSION_NAME = re.compile(r"^[0-9]+$")


def export_saved_model(
    model: keras.Model,
    info: ModelInfo,
    base_dir: str,
    name: str,
    version: Optional[int] = None,
    overwrite: bool = False,
) -> str:
    """Exports `model` with the signatures of the module docstring to `base_dir/name/version`.

    The version folder holds the SavedModel and `assets.extra/model_info.json` (`info`, in the
    one format of `models.info`). It is written to a temporary folder beside it (a dot name,
    which TF Serving ignores) and renamed when complete (`files.atomic_directory`).

    Args:
        model: a model of `models.build_model` (or loaded from `.keras`): inputs "frames"
            (B, F, S, S, 3) float32 0..255 and "frame_mask" (B, F), dict outputs with
            "probabilities" (B, E).
        info: its class names (E, index = class index), the frame preprocessing it was trained
            with and whatever else is known of it (`models.info.ModelInfo`).
        base_dir: folder holding one folder per served model.
        name: the model name, the folder under `base_dir` (TF Serving's MODEL_NAME).
        version: positive integer; None picks one more than the largest existing version (or 1).
        overwrite: replace an existing `version` instead of raising.

    Returns:
        The path of the written version folder.

    Raises:
        ValueError: a bad name or version, class names that do not match the model, a model
            without the inputs above or an image size other than `info.preprocessing.image_size`.
        FileExistsError: the version exists and `overwrite` is False.
    """
    if not name or name != os.path.basename(name) or name.startswith("."):
        raise ValueError(f"model name {name!r} must be a plain folder name")
    serving_model = _model_for_any_number_of_frames(model, info.preprocessing)
    check_class_count(info.class_names, serving_model.output["probabilities"].shape[-1], f"model {model.name!r}")

    model_dir = os.path.join(base_dir, name)
    version = next_version(model_dir) if version is None else _checked_version(version)
    version_dir = os.path.join(model_dir, str(version))
    if os.path.exists(version_dir) and not overwrite:
        raise FileExistsError(
            f"{version_dir} exists: version {version} of {name!r} is exported already (overwrite=True replaces it)"
        )

    with atomic_directory(version_dir, overwrite=overwrite) as partial_dir:
        archive = _build_export_archive(serving_model, info.class_names, info.preprocessing)
        archive.write_out(partial_dir, verbose=False)
        write_model_info(partial_dir, info, MODEL_INFO_PATH)
    return version_dir


def read_export_info(version_dir: str) -> ModelInfo:
    """The `ModelInfo` an export wrote in `version_dir/assets.extra/model_info.json`.

    Raises:
        FileNotFoundError: `version_dir` has no assets.extra/model_info.json (naming it).
        ValueError: the file is not valid JSON or has another format version (naming it).
    """
    return read_model_info(version_dir, MODEL_INFO_PATH, what="an export of this library")


def export_trained_model(
    model_dir: str, base_dir: str, name: str, version: Optional[int] = None, overwrite: bool = False
) -> str:
    """`export_saved_model` of a `models.saving.save_trained_model` folder (model.keras +
    model_info.json, which the export carries). Returns the version folder."""
    trained = load_trained_model(model_dir)
    return export_saved_model(trained.model, trained.info, base_dir, name, version=version, overwrite=overwrite)


def next_version(model_dir: str) -> int:
    """One more than the largest integer-named folder in `model_dir`, or 1 when there is none."""
    if not os.path.isdir(model_dir):
        return 1
    return max((int(entry) for entry in os.listdir(model_dir) if _VERSION_NAME.match(entry)), default=0) + 1


def _build_export_archive(
    model: keras.Model, class_names: Sequence[str], preprocessing: Preprocessing
) -> keras.export.ExportArchive:
    """A `keras.export.ExportArchive` holding the three serving signatures of `model`.

    `model` must accept any number of frames (see `export_saved_model`, which ensures it).
    """
    labels = tf.constant(list(class_names))

    def predict(frames, frame_mask):
        """(B, F, S, S, 3) float32 frames and (B, F) mask -> the output dict of the signatures."""
        outputs = model({"frames": frames, "frame_mask": frame_mask}, training=False)
        outputs = {key: tf.cast(value, tf.float32) for key, value in outputs.items()}
        outputs["label"] = tf.gather(labels, tf.argmax(outputs["probabilities"], axis=-1))
        return outputs

    def from_pixels(frames, num_frames):
        channels = tf.shape(frames)[-1]
        frames = _checked_clips(
            frames,
            tf.debugging.assert_equal(
                tf.logical_or(tf.equal(channels, 1), tf.equal(channels, 3)),
                True,
                message="frames must have 3 (RGB) or 1 (gray) channels on their last axis",
            ),
        )
        frames = tf.cond(tf.equal(channels, 1), lambda: tf.tile(frames, [1, 1, 1, 1, 3]), lambda: frames)
        clip_length = tf.shape(frames)[1]
        tf.debugging.assert_equal(
            tf.shape(num_frames)[0], tf.shape(frames)[0], message="num_frames needs one entry per clip of frames"
        )
        tf.debugging.assert_positive(num_frames, message="every clip needs num_frames >= 1")
        tf.debugging.assert_less_equal(
            num_frames, clip_length, message="num_frames exceeds the frames axis of frames"
        )
        frame_mask = tf.sequence_mask(num_frames, clip_length, dtype=tf.float32)
        frames = resize_and_crop_pixels(frames, preprocessing.resize_size, preprocessing.image_size)
        return predict(frames, frame_mask)

    def from_jpegs(frames):
        frames = _checked_clips(frames)
        return predict(*_decode_jpeg_clips(frames, preprocessing))

    def from_examples(examples):
        def clip_frames(serialized):
            return schema.parse_clip(serialized)["frames"]

        jpegs = tf.map_fn(
            clip_frames, examples, fn_output_signature=tf.RaggedTensorSpec([None], tf.string, ragged_rank=0)
        )
        return from_jpegs(jpegs.to_tensor(default_value=""))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default",
        from_pixels,
        [
            tf.TensorSpec([None, None, None, None, None], tf.uint8, name="frames"),
            tf.TensorSpec([None], tf.int32, name="num_frames"),
        ],
    )
    archive.add_endpoint("encoded_frames", from_jpegs, [tf.TensorSpec([None, None], tf.string, name="frames")])
    archive.add_endpoint("tf_example", from_examples, [tf.TensorSpec([None], tf.string, name="examples")])
    return archive


def _checked_clips(frames, *other_checks):
    """`frames` (B, ...), once a request without clips (B = 0) and `other_checks` (assert ops)
    have failed with their messages: the model runs only on checked frames."""
    has_clips = tf.debugging.assert_positive(
        tf.shape(frames)[0], message="the request holds no clip (frames has batch size 0); send at least one clip"
    )
    with tf.control_dependencies([has_clips, *other_checks]):
        return tf.identity(frames)


def _decode_jpeg_clips(jpegs, preprocessing: Preprocessing):
    """JPEG strings (B, F), "" = padding -> (float32 frames (B, F, S, S, 3), frame mask (B, F)).

    The non-empty JPEGs are decoded and resized by the evaluation pipeline's decoder, centre
    cropped and scattered back to their places; padding frames are zeros.
    """
    is_frame = tf.not_equal(jpegs, "")
    every_clip_has_a_frame = tf.reduce_all(tf.reduce_any(is_frame, axis=1))
    tf.debugging.Assert(every_clip_has_a_frame, ["every clip needs at least one non-empty JPEG frame"])
    positions = tf.where(is_frame)  # (K, 2) [clip, frame]
    present = tf.gather_nd(jpegs, positions)
    decoded = decode_resized(present, tf.range(tf.shape(present)[0]), preprocessing.resize_size)
    cropped = centre_crop(decoded, preprocessing.resize_size, preprocessing.image_size)
    size = preprocessing.image_size
    frames_shape = tf.concat([tf.shape(jpegs, out_type=tf.int64), [size, size, 3]], axis=0)
    frames = tf.scatter_nd(positions, cropped, frames_shape)
    return frames, tf.cast(is_frame, tf.float32)


def _model_for_any_number_of_frames(model: keras.Model, preprocessing: Preprocessing) -> keras.Model:
    """`model` checked against `preprocessing`, with a free frame axis on every input."""
    inputs = model.input
    if not isinstance(inputs, dict) or sorted(inputs) != sorted(MODEL_INPUTS):
        found = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
        raise ValueError(
            f"the model {model.name!r} must take a dict of inputs {list(MODEL_INPUTS)}; found {found}"
        )
    image_shape = tuple(inputs["frames"].shape[2:])
    expected = (preprocessing.image_size, preprocessing.image_size, 3)
    if image_shape != expected:
        raise ValueError(
            f"the model {model.name!r} takes frames of {image_shape}, but preprocessing gives {expected}"
        )
    return with_any_number_of_frames(model)


def _checked_version(version) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version={version!r}; TF Serving versions are integers >= 1")
    return version
