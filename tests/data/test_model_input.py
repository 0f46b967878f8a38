"""Tests of keras_emotion.data.model_input against NumPy and OpenCV references."""

import re

import cv2
import numpy as np
import pytest
import tensorflow as tf

from keras_emotion.data import model_input
from keras_emotion.data.video import InputError


def block_mean(images, factor):
    """NumPy area resize by an integer factor: (N, H, W, C) -> (N, H/f, W/f, C)."""
    count, height, width, channels = images.shape
    blocks = images.astype(np.float64).reshape(count, height // factor, factor, width // factor, factor, channels)
    return blocks.mean(axis=(2, 4))


def test_resize_averages_areas_when_shrinking_and_is_bilinear_when_enlarging():
    rng = np.random.default_rng(0)
    large = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    shrunk = model_input.resize(large, 16).numpy()
    assert shrunk.dtype == np.float32
    np.testing.assert_allclose(shrunk, block_mean(large, 4), atol=1e-3)
    np.testing.assert_array_equal(model_input.resize(large.astype(np.float32), 16).numpy(), shrunk)

    small = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    enlarged = model_input.resize(small, 40).numpy()
    reference = np.stack(
        [cv2.resize(image.astype(np.float32), (40, 40), interpolation=cv2.INTER_LINEAR) for image in small]
    )
    np.testing.assert_allclose(enlarged, reference, atol=1e-3)


def test_centre_crop_keeps_the_middle_window():
    images = np.arange(2 * 10 * 10 * 1).reshape(2, 10, 10, 1)
    np.testing.assert_array_equal(model_input.centre_crop(images, 10, 6), images[:, 2:8, 2:8])


def test_resize_and_crop_pixels_keeps_the_clip_axes():
    frames = np.random.default_rng(1).integers(0, 256, (2, 3, 256, 256, 3), dtype=np.uint8)
    cropped = model_input.resize_and_crop_pixels(frames, 64, 56).numpy()
    reference = block_mean(frames.reshape(6, 256, 256, 3), 4)[:, 4:60, 4:60].reshape(2, 3, 56, 56, 3)
    np.testing.assert_allclose(cropped, reference, atol=1e-3)


def test_decode_resized_decodes_each_chosen_frame_once_at_reduced_scale():
    """R = 40: decoded at 1/4 scale (64 x 64, the largest r with 256 / r >= 40), then area-resized."""
    rng = np.random.default_rng(2)
    faces = [cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (256, 256)) for _ in range(2)]
    jpegs = tf.constant([cv2.imencode(".jpg", face)[1].tobytes() for face in faces])
    frames = model_input.decode_resized(jpegs, tf.constant([1, 0, 1]), 40).numpy()
    decoded = [tf.io.decode_jpeg(jpeg, channels=3, ratio=4) for jpeg in jpegs]
    reference = [tf.image.resize(image, [40, 40], method="area").numpy() for image in decoded]
    assert frames.shape == (3, 40, 40, 3)
    for frame, index in zip(frames, [1, 0, 1]):
        np.testing.assert_allclose(frame, reference[index], atol=1e-3)


@pytest.fixture
def image_files(tmp_path):
    """A gray 30 x 40 PNG and a colour 20 x 20 PNG (RGB as written), with their pixels."""
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    colour = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    cv2.imwrite(str(tmp_path / "colour.png"), colour[..., ::-1])
    return [str(tmp_path / "gray.png"), str(tmp_path / "colour.png")], [np.repeat(gray[..., None], 3, axis=2), colour]


def test_image_files_are_cut_to_their_centre_square_and_resized_bilinearly(image_files):
    paths, pixels = image_files
    images = model_input.decode_images(paths, 12)
    assert images.shape == (2, 12, 12, 3) and images.dtype == np.uint8
    squares = [pixels[0][:, 5:35], pixels[1]]  # the gray image's centre 30 x 30
    for image, square in zip(images, squares):
        reference = cv2.resize(square.astype(np.float32), (12, 12), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(image, reference, atol=1.0)
    np.testing.assert_array_equal(images[0, ..., 0], images[0, ..., 2])


def test_still_image_clips_are_one_frame_centre_crops(image_files):
    paths, _ = image_files
    decoded = model_input.decode_images(paths, 12)
    clips = list(model_input.still_image_clips(paths, 12, 8, batch_size=1))
    assert [clip.shape for clip in clips] == [(1, 1, 8, 8, 3)] * 2 and clips[0].dtype == np.float32
    np.testing.assert_array_equal(np.concatenate(clips)[:, 0], decoded[:, 2:10, 2:10])


def test_an_image_tensorflow_cannot_decode_is_named(image_files, tmp_path):
    paths, pixels = image_files
    cv2.imwrite(str(tmp_path / "netpbm.ppm"), pixels[1])
    bad = str(tmp_path / "netpbm.ppm")
    with pytest.raises(InputError, match=re.escape(f"{bad}: cannot decode the image")):
        model_input.decode_images([paths[0], bad], 12)
