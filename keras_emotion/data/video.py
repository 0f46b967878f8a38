"""Reading frames from videos and image folders as RGB uint8 arrays.

Every frame that leaves this module is normalised the same way: RGB channel
order, uint8, shape (H, W, 3).  Gray images get three equal channels, the alpha
channel of RGBA images is dropped, 16-bit images are scaled to 8 bits
(65535 -> 255, not truncated) and frames whose longer side exceeds `max_side`
are downscaled with their aspect ratio kept.

Bad input raises `InputError`, whose message starts with the offending path.
"""

from __future__ import annotations

import math
import os
import re
from typing import Iterator

import cv2
import numpy as np

STREAM_PATTERN = re.compile(r"^(\d+|[a-zA-Z][a-zA-Z0-9+.-]*://.+)$")
"""A camera index or a URL (see `is_stream`)."""
IMAGE_EXTENSIONS = frozenset(
    {".bmp", ".dib", ".jpg", ".jpeg", ".jpe", ".jp2", ".png", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm", ".pnm"}
)


class InputError(ValueError):
    """A bad input file or folder; `str(error)` is ``f"{path}: {reason}"``."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def as_rgb_uint8(image: np.ndarray, bgr: bool = False) -> np.ndarray:
    """Normalises one image to RGB uint8.

    Args:
        image: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array of dtype uint8
            or uint16.
        bgr: True when the colour channels are in OpenCV's BGR(A) order.

    Returns:
        uint8 array (H, W, 3) in RGB order.

    Raises:
        ValueError: for any other shape or dtype (the message is the reason
            only; callers add the file name).
    """
    image = np.asarray(image)
    if image.dtype == np.uint16:
        image = np.round(image.astype(np.float32) / 257.0).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"unsupported pixel type {image.dtype} (expected uint8 or uint16)")
    if image.ndim == 2:
        image = image[:, :, np.newaxis]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"unsupported image shape {image.shape} (expected (H, W) or (H, W, 1|3|4))")
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    colour = image[:, :, :3]
    if bgr:
        colour = colour[:, :, ::-1]
    return np.ascontiguousarray(colour)


def _limit_size(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscales (H, W, C) `image` so that max(H, W) <= max_side, keeping the aspect ratio."""
    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _normalise(image: np.ndarray, path: str, max_side: int) -> np.ndarray:
    """`as_rgb_uint8` of a BGR(A) OpenCV image plus the size limit; errors name `path`."""
    try:
        rgb = as_rgb_uint8(image, bgr=True)
    except ValueError as error:
        raise InputError(path, str(error)) from None
    return _limit_size(rgb, max_side)


def _check_exists(path: str) -> None:
    if not os.path.exists(path):
        raise InputError(path, "no such file or folder")


def is_image_file(path: str) -> bool:
    """Whether `path` names an image file: its extension (any case) is in IMAGE_EXTENSIONS."""
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def _natural_key(name: str) -> list:
    """Sort key that orders "frame2" before "frame10"."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _folder_images(folder: str) -> list[str]:
    """Paths of the image files in `folder`, sorted by name (numbers compared as numbers)."""
    names = [name for name in os.listdir(folder) if is_image_file(name) and not name.startswith(".")]
    if not names:
        raise InputError(folder, "folder contains no image files")
    return [os.path.join(folder, name) for name in sorted(names, key=_natural_key)]


def read_image(path: str, max_side: int = 1280) -> np.ndarray:
    """Reads one image file.

    Returns:
        uint8 array (H, W, 3), RGB, with max(H, W) <= max_side.

    Raises:
        InputError: missing or undecodable file, unsupported pixel format.
    """
    path = os.fspath(path)
    _check_exists(path)
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(path, "cannot decode image (unreadable, corrupt or unsupported format)")
    return _normalise(image, path, max_side)


def is_stream(source: str) -> bool:
    """Whether `source` names a live source: a camera index ("0") or a URL ("rtsp://...",
    "http://...", any scheme://) rather than a file or folder."""
    return bool(STREAM_PATTERN.match(os.fspath(source)))


def _open_video(path: str) -> cv2.VideoCapture:
    stream = is_stream(path)
    capture = cv2.VideoCapture(int(path) if path.isdigit() else path)
    if not capture.isOpened():
        capture.release()
        what = "stream or camera" if stream else "video (unreadable, corrupt or unsupported format)"
        raise InputError(path, f"cannot open {what}")
    return capture


def _iter_video(path: str, max_side: int) -> Iterator[np.ndarray]:
    """The frames of a video file, or of a stream until it ends or drops."""
    capture = _open_video(path)
    count = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            count += 1
            yield _normalise(frame, path, max_side)
    finally:
        capture.release()
    if count == 0:
        raise InputError(path, "stream gave no frame" if is_stream(path) else "video contains no decodable frames")


def iter_frames(path: str, max_side: int = 1280) -> Iterator[np.ndarray]:
    """Yields the frames of a video file, of a folder of images, of one image file, or of a
    live source (`is_stream`: a camera index or a stream URL, read until it ends or drops).

    Videos are anything OpenCV's VideoCapture decodes (.avi, .mp4, .mkv, ...).
    A folder yields its image files (see IMAGE_EXTENSIONS) sorted by name,
    numbers inside names compared as numbers; other files are ignored.

    Yields:
        uint8 arrays (H, W, 3), RGB, with max(H, W) <= max_side.

    Raises:
        InputError: missing path, unreadable or corrupt video, video with zero
            frames, empty folder, unreadable image in a folder.
    """
    path = os.fspath(path)
    if is_stream(path):
        yield from _iter_video(path, max_side)
        return
    _check_exists(path)
    if os.path.isdir(path):
        for image_path in _folder_images(path):
            yield read_image(image_path, max_side)
    elif is_image_file(path):
        yield read_image(path, max_side)
    else:
        yield from _iter_video(path, max_side)


def iter_array_frames(frames: np.ndarray, max_side: int = 1280) -> Iterator[np.ndarray]:
    """Yields the frames of an array like `iter_frames` does those of a file: uint8 (H, W, 3)
    RGB with max(H, W) <= max_side, from (N, H, W[, C]) frames or one (H, W[, C]) image.

    Raises:
        InputError: an array of no frame, or frames of another shape or dtype (`as_rgb_uint8`).
    """
    frames = np.asarray(frames)
    if frames.ndim in (2, 3) and not (frames.ndim == 3 and frames.shape[-1] not in (1, 3, 4)):
        frames = frames[np.newaxis]
    name = f"<array {frames.shape} {frames.dtype}>"
    if len(frames) == 0:
        raise InputError(name, "no frames")
    for frame in frames:
        try:
            yield _limit_size(as_rgb_uint8(frame), max_side)
        except ValueError as error:
            raise InputError(name, str(error)) from None


def video_fps(path: str) -> float:
    """Frames per second of a video; 0.0 for folders, image files and videos that do not say."""
    return _container_property(path, cv2.CAP_PROP_FPS)


def claimed_frame_count(path: str) -> int:
    """The number of frames the container of a video claims to hold (OpenCV's
    CAP_PROP_FRAME_COUNT, from its header or index); 0 for folders, image files and videos
    that do not say. Fewer frames decoding than this means a truncated or damaged video."""
    return int(_container_property(path, cv2.CAP_PROP_FRAME_COUNT))


def _container_property(path: str, property_id: int) -> float:
    """An OpenCV capture property of a video file (positive), else 0.0 (folders, image files,
    videos that do not say)."""
    path = os.fspath(path)
    if not is_stream(path):
        _check_exists(path)
        if os.path.isdir(path) or is_image_file(path):
            return 0.0
    capture = _open_video(path)
    try:
        value = float(capture.get(property_id))
    finally:
        capture.release()
    return value if math.isfinite(value) and value > 0 else 0.0


def read_frames(path: str, max_side: int = 1280) -> tuple[list[np.ndarray], float]:
    """All frames of `path` (see `iter_frames`) and its frame rate (see `video_fps`).

    Returns:
        (frames, fps): a list of F uint8 (H, W, 3) RGB arrays and a float.
    """
    frames = list(iter_frames(path, max_side))
    return frames, video_fps(path)
