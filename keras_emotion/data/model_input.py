"""Model input: faces -> the float32 frames a model takes, in one place.

A model takes frames of S x S RGB pixels, float32 in 0..255, S = `image_size`. A face is
resized to R x R, R = `config.resize_size(image_size, crop_fraction)` >= S, and its centre S x S
is kept (evaluation; training cuts a random window instead). Every path by which faces reach a
model goes through this module:

    JPEG frames of TFRecord clips   `decode_resized` + `centre_crop`   pipeline (evaluation),
                                                                       export (JPEG signatures)
                                    `decode_random_crop`               pipeline (training)
    uint8 aligned faces (arrays)    `resize_and_crop_pixels`           export (serving_default),
                                                                       inference
    image files (FER2013 layout)    `decode_images`, `still_image_clips`   pre-training, face
                                                                       clips, evaluation
    image files, faces aligned      `aligned_still_clips`              evaluation (--align)

JPEG frames (IMAGE_SIZE square, from preprocessing) are decoded at 1/r scale (libjpeg's DCT
scaling, r the largest of 1, 2, 4, 8 that keeps IMAGE_SIZE / r >= R) and resized by `resize`:
area averaging when shrinking, bilinear when enlarging. At evaluation the whole frame is resized
to R x R and the centre S x S is cut; in training the random window is cut from the decoded frame
first and only it is resized to S x S. uint8 faces are resized by `resize` from full resolution,
which differs slightly from a DCT-scaled decode of their JPEG.

Image files (any size, gray or colour) are cut to their centre square and resized bilinearly to
the requested side, rounded to uint8; JPEGs are decoded with the accurate integer DCT. The files
read are those with an extension in `video.IMAGE_EXTENSIONS`; formats TensorFlow does not decode
(TIFF, PNM, JPEG 2000) are reported as undecodable.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf

from keras_emotion.data import schema
from keras_emotion.data.video import InputError, read_image

DECODE_BATCH = 512
"""Image files decoded per batch by `decode_image_batches`."""


def resize(images, size: int):
    """uint8 or float (N, H, W, C) -> float32 (N, size, size, C), 0..255 up to float rounding:
    area averaging when the images shrink (H, W >= size), bilinear when they are enlarged.

    uint8 pixels are averaged directly (the raw op casts each one as it reads it).
    """
    shape = tf.shape(images)
    return tf.cond(
        tf.logical_and(shape[1] >= size, shape[2] >= size),
        lambda: tf.raw_ops.ResizeArea(images=images, size=[size, size]),
        lambda: tf.image.resize(images, [size, size], method="bilinear"),
    )


def centre_crop(images, resize_size: int, image_size: int):
    """The centre S x S window of R x R images, as evaluation crops: (..., R, R, C) -> (..., S, S, C).

    Args:
        images: (..., R, R, C) with R = `resize_size`.
        resize_size: R.
        image_size: S <= R.
    """
    offset = (resize_size - image_size) // 2
    window = slice(offset, offset + image_size)
    return images[..., window, window, :]


def decode_resized(jpegs, indices, size: int):
    """Decodes each distinct chosen JPEG once, at reduced scale where possible, and resizes it
    (see the module docstring).

    Args:
        jpegs: (T,) JPEG strings.
        indices: int32 (F,) chosen frames, may repeat.
        size: R, output side.

    Returns:
        float32 (F, R, R, 3) RGB in 0..255.
    """
    images, positions = _decode_distinct(jpegs, indices, size)
    resized = tf.clip_by_value(resize(images, size), 0.0, 255.0)  # guards the range against rounding
    return tf.gather(resized, positions)


def decode_random_crop(jpegs, indices, resize_size: int, image_size: int, seed):
    """Training frames: the same random window of every chosen frame, cut from the frames decoded
    at reduced scale (as `decode_resized` decodes them) and resized to S x S: only the window is
    resized.

    The window is the part of the frame that an S x S crop of the R x R resized frame shows: a
    fraction S / R of each side (rounded to whole decoded pixels), at an offset uniform over the
    positions inside the frame.

    Args:
        jpegs: (T,) JPEG strings.
        indices: int32 (F,) chosen frames, may repeat.
        resize_size: R.
        image_size: S <= R.
        seed: int shape (2,) stateless seed of the window's offset.

    Returns:
        float32 (F, S, S, 3) RGB in 0..255 up to float rounding (not clipped: training clips once,
        after the colour jitter).
    """
    images, positions = _decode_distinct(jpegs, indices, resize_size)
    frame_size = tf.cast(tf.shape(images)[1:3], tf.float32)
    window = tf.cast(tf.round(frame_size * image_size / resize_size), tf.int32)
    free = frame_size - tf.cast(window, tf.float32) + 1.0
    top, left = tf.unstack(tf.cast(tf.random.stateless_uniform([2], seed=seed) * free, tf.int32))
    windows = images[:, top : top + window[0], left : left + window[1]]
    return tf.gather(resize(windows, image_size), positions)


def _decode_distinct(jpegs, indices, resize_size: int):
    """The distinct chosen frames decoded at 1/r scale for an R x R output: r the largest of 1, 2,
    4, 8 with IMAGE_SIZE / r >= R. Returns (uint8 (D, H, W, 3), int32 (F,) positions of the
    chosen frames among the D distinct ones)."""
    distinct, positions = tf.unique(indices)
    ratio = max(r for r in (1, 2, 4, 8) if schema.IMAGE_SIZE // r >= resize_size)
    images = tf.map_fn(  # the frames of a clip all have one size
        lambda jpeg: tf.io.decode_jpeg(jpeg, channels=3, ratio=ratio),
        tf.gather(jpegs, distinct),
        fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
    )
    return images, positions


def resize_and_crop_pixels(frames, resize_size: int, image_size: int):
    """Clips of uint8 aligned faces -> model frames: uint8 (B, F, H, W, 3) -> float32
    (B, F, S, S, 3), each face resized to R x R by `resize` and its centre S x S kept (the
    serving_default signature's preprocessing, and inference's).

    Args:
        frames: uint8 (B, F, H, W, 3).
        resize_size: R.
        image_size: S <= R.
    """
    shape = tf.shape(frames)
    images = tf.reshape(frames, tf.concat([[-1], shape[2:]], axis=0))
    resized = tf.clip_by_value(resize(images, resize_size), 0.0, 255.0)
    cropped = centre_crop(resized, resize_size, image_size)
    return tf.reshape(cropped, tf.concat([shape[:2], tf.shape(cropped)[1:]], axis=0))


def decode_image_batches(paths: Sequence[str], size: int, batch_size: int = DECODE_BATCH) -> Iterator[np.ndarray]:
    """Decodes and resizes image files in parallel, one batch after another (the next batch is
    decoded while the caller works on this one): yields uint8 (b, size, size, 3) RGB (see the
    module docstring), b = `batch_size` but for the last batch, in the order of `paths`.

    Raises:
        InputError: naming the first file that cannot be read or decoded.
    """
    decoded = (
        tf.data.Dataset.from_tensor_slices(list(paths))
        .map(lambda path: _decode_image_file(path, size), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(1)
    )
    iterator = iter(decoded)
    for start in range(0, len(paths), batch_size):
        try:
            batch = next(iterator).numpy()
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
            _raise_for_bad_file(paths[start : start + batch_size], size)
            raise
        yield batch


def decode_images(paths: Sequence[str], size: int) -> np.ndarray:
    """Decodes and resizes image files in parallel: n paths -> uint8 (n, size, size, 3) RGB.

    Raises:
        InputError: naming the first file that cannot be read or decoded.
    """
    images = np.empty((len(paths), size, size, 3), np.uint8)
    start = 0
    for batch in decode_image_batches(paths, size):
        images[start : start + len(batch)] = batch
        start += len(batch)
    return images


def still_image_clips(
    paths: Sequence[str], resize_size: int, image_size: int, batch_size: int
) -> Iterator[np.ndarray]:
    """Image files as 1-frame clips for a model, one batch after another: each image decoded at
    R x R (`decode_image_batches`), its centre S x S kept (`centre_crop`). Yields float32
    (b, 1, S, S, 3) in 0..255, b = `batch_size` but for the last batch, in the order of `paths`.

    Raises:
        InputError: naming the first file that cannot be read or decoded.
    """
    for images in decode_image_batches(paths, resize_size, batch_size):
        yield centre_crop(images, resize_size, image_size)[:, np.newaxis].astype(np.float32)


def aligned_still_clips(
    paths: Sequence[str], aligner, resize_size: int, image_size: int, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Image files through face detection and alignment, as 1-frame clips, one batch after
    another: each image read whole (`video.read_image`), its largest face aligned by `aligner`
    (a `faces.FaceAligner`: the framing a model was trained on), then resized to R x R and its
    centre S x S kept as `predict` does (`resize_and_crop_pixels`).

    Yields:
        (found, frames): bool (b,), whether a face was found in each image of the batch
        (b = `batch_size` but for the last batch, in the order of `paths`), and float32
        (k, 1, S, S, 3) in 0..255, the k faces found.

    Raises:
        InputError: naming the first file that cannot be read or decoded.
    """
    for start in range(0, len(paths), batch_size):
        aligned = [aligner.align_image(read_image(path)) for path in paths[start : start + batch_size]]
        faces = [face for face, _ in filter(None, aligned)]
        frames = (
            resize_and_crop_pixels(np.stack(faces)[:, np.newaxis], resize_size, image_size).numpy()
            if faces
            else np.zeros((0, 1, image_size, image_size, 3), np.float32)
        )
        yield np.array([result is not None for result in aligned], bool), frames


def _decode_image_file(path, size: int):
    """One image file -> uint8 (size, size, 3) RGB (gray is repeated over the 3 channels); a
    non-square image is cut to its centre square first.

    JPEGs are decoded with the accurate integer DCT: the default fast one is off by up to
    16 grey levels on FER2013's 48x48 faces.
    """
    contents = tf.io.read_file(path)
    image = tf.cond(
        tf.io.is_jpeg(contents),
        lambda: tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(contents, channels=3, expand_animations=False),
    )
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.minimum(height, width)
    image = tf.image.crop_to_bounding_box(image, (height - side) // 2, (width - side) // 2, side, side)
    resized = tf.image.resize(image, [size, size])
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def _raise_for_bad_file(paths: Sequence[str], size: int) -> None:
    """Decodes `paths` one by one and raises an InputError naming the first bad one."""
    for path in paths:
        try:
            _decode_image_file(path, size)
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
            raise InputError(path, f"cannot decode the image: {error.message}") from None
