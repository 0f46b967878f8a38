"""Tests of keras_emotion.data.video: frame reading and normalisation."""

import cv2
import numpy as np
import pytest

from keras_emotion.data.video import InputError, iter_frames, read_frames, read_image, video_fps


def _coloured_frames(count: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    """RGB frames: left half red, right half blue with a brightness that grows with the frame index."""
    frames = []
    for index in range(count):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[:, : width // 2, 0] = 220
        frame[:, width // 2 :, 2] = 60 + 30 * index
        frames.append(frame)
    return frames


def _write_avi(path, frames_rgb, fps, width=64, height=48):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    for frame in frames_rgb:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def test_avi_round_trip_keeps_count_fps_and_rgb_order(tmp_path):
    written = _coloured_frames(5)
    path = tmp_path / "clip.avi"
    _write_avi(path, written, fps=12.5)

    frames, fps = read_frames(str(path))

    assert fps == pytest.approx(12.5)
    assert video_fps(str(path)) == pytest.approx(12.5)
    assert len(frames) == 5
    for frame, expected in zip(frames, written):
        assert frame.dtype == np.uint8 and frame.shape == (48, 64, 3)
        # MJPG is lossy: compare inside the halves, away from the colour edge.
        np.testing.assert_allclose(frame[8:-8, 4:24].mean(axis=(0, 1)), expected[0, 0], atol=8)
        np.testing.assert_allclose(frame[8:-8, 40:60].mean(axis=(0, 1)), expected[0, -1], atol=8)


def test_folder_of_images_normalises_rgba_uint16_and_gray_in_name_order(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    colour = np.zeros((20, 30, 3), np.uint8)
    colour[..., 0], colour[..., 1], colour[..., 2] = 200, 100, 10  # RGB
    rgba = np.dstack([colour, np.full((20, 30), 7, np.uint8)])
    cv2.imwrite(str(folder / "frame_1.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    deep = np.zeros((20, 30), np.uint16)
    deep[:, :10], deep[:, 10:20], deep[:, 20:] = 65535, 32896, 1000  # 255, 128, 4 after scaling
    cv2.imwrite(str(folder / "frame_2.png"), deep)
    gray = np.arange(600, dtype=np.uint8).reshape(20, 30)
    cv2.imwrite(str(folder / "frame_10.png"), gray)
    (folder / "notes.txt").write_text("not an image")

    frames, fps = read_frames(str(folder))

    assert fps == 0.0
    assert [frame.shape for frame in frames] == [(20, 30, 3)] * 3
    assert all(frame.dtype == np.uint8 for frame in frames)
    np.testing.assert_array_equal(frames[0], colour)
    np.testing.assert_array_equal(frames[1][0, [0, 15, 25]], [[255] * 3, [128] * 3, [4] * 3])
    np.testing.assert_array_equal(frames[2], np.repeat(gray[..., None], 3, axis=2))


def test_huge_frame_is_downscaled_keeping_aspect(tmp_path):
    path = tmp_path / "huge.png"
    ramp = np.linspace(0, 255, 8000).astype(np.uint8)
    cv2.imwrite(str(path), np.tile(ramp, (6000, 1)))

    frames = list(iter_frames(str(path)))
    small = read_image(str(path), max_side=400)

    assert len(frames) == 1 and frames[0].shape == (960, 1280, 3)
    assert small.shape == (300, 400, 3)
    # The horizontal ramp survives the downscaling: left dark, right bright, rows equal.
    np.testing.assert_allclose(frames[0][:, 640, 0], ramp[4000], atol=2)
    assert frames[0][0, 0, 0] < 5 and frames[0][0, -1, 0] > 250


def _assert_input_error(path, reason_part, call):
    with pytest.raises(InputError) as info:
        call()
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}: ")
    assert reason_part in info.value.reason


def test_missing_path(tmp_path):
    path = tmp_path / "nowhere.mp4"
    _assert_input_error(path, "no such file", lambda: read_frames(str(path)))
    _assert_input_error(path, "no such file", lambda: video_fps(str(path)))


def test_corrupt_video(tmp_path):
    path = tmp_path / "corrupt.avi"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    _assert_input_error(path, "cannot open video", lambda: read_frames(str(path)))


def test_video_without_frames(tmp_path):
    path = tmp_path / "empty.avi"
    _write_avi(path, [], fps=10)
    _assert_input_error(path, "no decodable frames", lambda: list(iter_frames(str(path))))


def test_empty_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    _assert_input_error(tmp_path, "no image files", lambda: list(iter_frames(str(tmp_path))))


def test_unreadable_image_in_folder_is_named(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8), np.uint8))
    broken = tmp_path / "b.png"
    broken.write_bytes(b"\x89PNG but not really")
    frames = iter_frames(str(tmp_path))
    assert next(frames).shape == (8, 8, 3)
    _assert_input_error(broken, "cannot decode image", lambda: next(frames))


def test_unsupported_pixel_type_is_named(tmp_path):
    path = tmp_path / "float.tiff"
    assert cv2.imwrite(str(path), np.ones((8, 8), np.float32))
    _assert_input_error(path, "unsupported pixel type float32", lambda: read_image(str(path)))
