"""Face detection, landmarks and alignment of clips with dlib.

Per frame: dlib's HOG frontal face detector finds the faces (the mmod CNN
detector is tried where HOG finds none), one face is kept (the one that
continues the track of earlier frames, else the largest confident one), a
68- or 5-point shape predictor locates its landmarks, and a similarity
transform (rotation, uniform scale, translation) maps the two eye centres onto
fixed template positions, so that the aligned face has level eyes at
`template_eye_centres(output_size, eye_level, eye_distance)` (AlignmentConfig).

Frames without a face keep their place in the clip: they are warped with the
transform of the nearest frame (in time) that has one and flagged
`detected=False`, so per-frame labels stay in sync.

The dlib models are loaded once per process and cached at module level, so a
`FaceAligner` only holds its config: it pickles cheaply and can be rebuilt in
every worker process.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Sequence

import cv2
import dlib
import numpy as np

from keras_emotion.data.video import as_rgb_uint8
from keras_emotion.dlib_models import FACE_DETECTOR, FACE_RESNET, LANDMARKS_5, LANDMARKS_68, dlib_model_file

# Frames whose shorter side is below this are upscaled by an integer factor
# before detection (the HOG detector misses faces smaller than about 80 pixels).
MIN_DETECTION_SIDE = 200

# The smallest face, in pixels, that dlib's HOG detector finds without upsampling.
HOG_MIN_FACE_SIDE = 80

# Landmark indices of the eye on the left of the image (the subject's right
# eye) and of the eye on the right of the image, per predictor.
_EYE_LANDMARKS = {
    68: (np.arange(36, 42), np.arange(42, 48)),
    5: (np.array([2, 3]), np.array([0, 1])),
}

# Default template: the eye centres' height and their distance, as fractions of the output size.
DEFAULT_EYE_LEVEL = 0.40
DEFAULT_EYE_DISTANCE = 0.30

_STAGES = ("detection", "landmarks", "alignment")


@dataclasses.dataclass(frozen=True)
class AlignmentConfig:
    """Settings of `FaceAligner`.

    Attributes:
        output_size: side of the square aligned face, in pixels.
        landmarks: 68 or 5, which dlib shape predictor to use.
        cnn_fallback: run the mmod CNN detector on frames where HOG finds no face.
        upsample: how many times the detectors upsample the (already at least
            MIN_DETECTION_SIDE pixels) frame; each doubles the size and finds
            faces half as large, at about four times the cost.
        jpeg_quality: quality for `encode_jpeg` of the aligned faces.
        eye_level: height of the template's eye centres, as a fraction of output_size.
        eye_distance: distance between the template's eye centres (placed symmetrically about
            the vertical midline), as a fraction of output_size. The default (0.40, 0.30)
            leaves room around the face for crops; FER2013 and CK+48 crops are tighter
            (about 0.38, 0.37: see `keras_emotion.pretrained`).
        min_face_fraction: the smallest face to find, as a fraction of the frame's
            shorter side. Larger frames are downscaled for detection until such a face
            is the smallest the detector finds at `upsample` (HOG_MIN_FACE_SIDE /
            2**upsample pixels); landmarks are still fitted on the full frame. At the
            default 0.15 and upsample 1 a 1280x720 frame is detected at 474x267 (faces
            of 108 px and more), about 7x fewer pixels. 0 detects at full resolution.
    """

    output_size: int = 256
    landmarks: int = 68
    cnn_fallback: bool = True
    upsample: int = 1
    jpeg_quality: int = 95
    min_face_fraction: float = 0.15
    eye_level: float = DEFAULT_EYE_LEVEL
    eye_distance: float = DEFAULT_EYE_DISTANCE

    def __post_init__(self):
        if self.landmarks not in _EYE_LANDMARKS:
            raise ValueError(f"landmarks must be 68 or 5, got {self.landmarks}")
        if self.output_size < 16:
            raise ValueError(f"output_size must be at least 16, got {self.output_size}")
        if self.upsample < 0:
            raise ValueError(f"upsample must be >= 0, got {self.upsample}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if not 0 <= self.min_face_fraction <= 1:
            raise ValueError(f"min_face_fraction must be in [0, 1], got {self.min_face_fraction}")
        if not (0 < self.eye_level < 1 and 0 < self.eye_distance < 1):
            raise ValueError(
                f"eye_level and eye_distance must be in (0, 1), got {self.eye_level}, {self.eye_distance}"
            )


@dataclasses.dataclass
class AlignedFrames:
    """The aligned faces of one clip (F frames, K landmarks, S = output_size).

    Attributes:
        faces: uint8 (F, S, S, 3) aligned RGB faces.
        detected: bool (F,), True where a face was detected in that frame.
        landmarks: float32 (F, K, 2) landmarks (x, y) in aligned-frame pixels;
            frames without a face carry those of the nearest frame with one.
        cnn_fallbacks: frames where the CNN detector found the face after HOG failed.
        seconds: time spent per stage, {"detection", "landmarks", "alignment"}.
    """

    faces: np.ndarray
    detected: np.ndarray
    landmarks: np.ndarray
    cnn_fallbacks: int
    seconds: dict


@dataclasses.dataclass
class DetectedFace:
    """One face found by `FaceAligner.find_faces` (K landmarks).

    Attributes:
        box: float64 (4,) [left, top, right, bottom] in image pixels.
        score: the detector's confidence (HOG margin, or CNN confidence).
        landmarks: float64 (K, 2) landmarks (x, y) in image pixels.
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray


class NoFaceError(ValueError):
    """No frame of a clip contains a face; `.source` names the clip."""

    def __init__(self, source: str, num_frames: int):
        reason = f"no face detected in any of the {num_frames} frames"
        super().__init__(f"{source}: {reason}" if source else reason)
        self.source = source


def video_alignment(alignment: AlignmentConfig) -> AlignmentConfig:
    """`alignment` as `predict` applies it to video frames: without the CNN fallback (far too
    slow for videos)."""
    return dataclasses.replace(alignment, cnn_fallback=False)


def template_eye_centres(
    output_size: int = 256, eye_level: float = DEFAULT_EYE_LEVEL, eye_distance: float = DEFAULT_EYE_DISTANCE
) -> np.ndarray:
    """Where alignment puts the eye centres: float64 (2, 2), rows (x, y) of the image-left and
    image-right eye, at height `eye_level` and `eye_distance` apart (fractions of output_size)."""
    half = eye_distance / 2
    return np.array([[0.5 - half, eye_level], [0.5 + half, eye_level]]) * output_size


def encode_jpeg(image_rgb: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of a uint8 (H, W, 3) RGB image."""
    image_rgb = np.asarray(image_rgb)
    if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"encode_jpeg expects uint8 (H, W, 3), got {image_rgb.dtype} {image_rgb.shape}")
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise ValueError(f"JPEG encoding of a {image_rgb.shape} image failed")
    return encoded.tobytes()


@functools.lru_cache(maxsize=None)
def _hog_detector():
    return dlib.get_frontal_face_detector()


@functools.lru_cache(maxsize=None)
def _cnn_detector():
    return dlib.cnn_face_detection_model_v1(dlib_model_file(FACE_DETECTOR))


@functools.lru_cache(maxsize=None)
def _shape_predictor(points: int):
    if points == 68:
        return dlib.shape_predictor(dlib_model_file(LANDMARKS_68))
    return dlib.shape_predictor(dlib_model_file(LANDMARKS_5))


@functools.lru_cache(maxsize=None)
def _face_recognition_model():
    return dlib.face_recognition_model_v1(dlib_model_file(FACE_RESNET))


def face_descriptor(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """dlib's 128-D face descriptor of the face with (68 or 5, 2) `landmarks` in uint8
    (H, W, 3) RGB `image`: float64 (128,). Descriptors of one person lie closer than about 0.6
    (Euclidean), those of two people farther (dlib: 99.38% on LFW)."""
    points = [dlib.point(int(round(x)), int(round(y))) for x, y in landmarks]
    (left, top), (right, bottom) = np.floor(landmarks.min(axis=0)), np.ceil(landmarks.max(axis=0))
    shape = dlib.full_object_detection(dlib.rectangle(int(left), int(top), int(right), int(bottom)), points)
    return np.array(_face_recognition_model().compute_face_descriptor(as_rgb_uint8(image), shape))


def box_overlaps(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Intersection over union of each (N, 4) [left, top, right, bottom] box with one (4,) box: (N,)."""
    width = np.clip(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0, None)
    height = np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0, None)
    intersection = width * height
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area = (box[2] - box[0]) * (box[3] - box[1])
    return intersection / (areas + area - intersection)


def _pick_box(boxes: np.ndarray, scores: np.ndarray, previous: np.ndarray | None) -> int:
    """Index of the face to keep among (N, 4) `boxes` with (N,) detection `scores`.

    Without a previous box: the largest face among the confident ones (score at
    least half the best score; weak detections are mostly false positives).
    Otherwise the one overlapping the previous box most or, when none
    overlaps, the one with the nearest centre.
    """
    if previous is None:
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        confident = scores >= scores.max() / 2
        return int(np.argmax(np.where(confident, areas, -1.0)))
    overlaps = box_overlaps(boxes, previous)
    if overlaps.max() > 0:
        return int(np.argmax(overlaps))
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    previous_centre = (previous[:2] + previous[2:]) / 2
    return int(np.argmin(np.linalg.norm(centres - previous_centre, axis=1)))


def detection_scale(height: int, width: int, config: AlignmentConfig) -> float:
    """The factor by which an (H, W) frame is resized before face detection.

    An integer >= 1 for frames whose shorter side is below MIN_DETECTION_SIDE (upscaled);
    below 1 when a face of `config.min_face_fraction` of the shorter side stays at least
    as large as the smallest face the detector finds (HOG_MIN_FACE_SIDE / 2**upsample);
    else 1.
    """
    shorter = min(height, width)
    if shorter < MIN_DETECTION_SIDE:
        return math.ceil(MIN_DETECTION_SIDE / shorter)
    smallest_found = HOG_MIN_FACE_SIDE / 2**config.upsample
    downscale = smallest_found / (config.min_face_fraction * shorter) if config.min_face_fraction else 1.0
    return max(downscale, MIN_DETECTION_SIDE / shorter) if downscale < 1 else 1


def _unscale_pixels(points: np.ndarray, scale: float) -> np.ndarray:
    """Maps (..., 2) pixel coordinates of an image resized `scale` times back to the original image.

    Pixel centres sit at integer coordinates, so x_original = (x + 0.5) / scale - 0.5.
    """
    return (points + 0.5) / scale - 0.5


def box_rectangle(box: np.ndarray) -> dlib.rectangle:
    """The dlib rectangle (integer, inclusive corners) nearest to a (4,) [left, top, right, bottom] box."""
    left, top, right, bottom = (int(round(value)) for value in box)
    return dlib.rectangle(left, top, right, bottom)


def _similarity_transform(source_points: np.ndarray, target_points: np.ndarray) -> np.ndarray:
    """The (2, 3) similarity transform mapping two (x, y) points exactly onto two others.

    With points as complex numbers z, the transform is z -> a z + b, where
    a = scale * exp(i angle) rotates and scales and b translates.
    """
    source = source_points[:, 0] + 1j * source_points[:, 1]
    target = target_points[:, 0] + 1j * target_points[:, 1]
    a = (target[1] - target[0]) / (source[1] - source[0])
    b = target[0] - a * source[0]
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


def _apply_transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(K, 2) points mapped by a (2, 3) affine matrix."""
    return points @ matrix[:, :2].T + matrix[:, 2]


class FaceAligner:
    """Detects, tracks and aligns the face in each frame of a clip.

    Holds only its `AlignmentConfig`; the dlib models come from a per-process
    cache, loaded by the first aligner of the process.
    """

    def __init__(self, config: AlignmentConfig = AlignmentConfig()):
        self.config = config
        _hog_detector()
        _shape_predictor(config.landmarks)
        if config.cnn_fallback:
            _cnn_detector()

    def __repr__(self):
        return f"FaceAligner({self.config!r})"

    def _detect(self, rgb: np.ndarray, seconds: dict):
        """Runs the detectors on one (H, W, 3) frame resized by `detection_scale`.

        Small frames (below MIN_DETECTION_SIDE) are upscaled, and their landmarks are fitted
        on the upscaled image; large frames may be downscaled for detection only, and their
        landmarks are fitted on the full frame.

        Returns:
            (landmark_image, scale, rectangles, boxes, scores, used_cnn): the image to fit
            landmarks on, its scale relative to the frame (an integer >= 1), the dlib
            rectangles of the faces in it, the (N, 4) [left, top, right, bottom] boxes in
            frame pixels, their (N,) scores, and whether the CNN detector found them (HOG
            found none).
        """
        started = time.perf_counter()
        height, width = rgb.shape[:2]
        scale = detection_scale(height, width, self.config)
        detection_image = rgb
        if scale != 1:
            size = (round(width * scale), round(height * scale))
            interpolation = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
            detection_image = cv2.resize(rgb, size, interpolation=interpolation)
        rectangles, scores, _ = _hog_detector().run(detection_image, self.config.upsample, 0.0)
        used_cnn = False
        if not rectangles and self.config.cnn_fallback:
            detections = _cnn_detector()(detection_image, self.config.upsample)
            rectangles = [detection.rect for detection in detections]
            scores = [detection.confidence for detection in detections]
            used_cnn = bool(rectangles)
        corners = np.array([[[r.left(), r.top()], [r.right(), r.bottom()]] for r in rectangles], dtype=np.float64)
        boxes = _unscale_pixels(corners, scale).reshape(-1, 4)
        seconds["detection"] += time.perf_counter() - started
        scores = np.array(scores, dtype=np.float64)
        if scale > 1:
            return detection_image, scale, rectangles, boxes, scores, used_cnn
        return rgb, 1, [box_rectangle(box) for box in boxes], boxes, scores, used_cnn

    def _landmarks(self, scaled: np.ndarray, scale: int, rectangle, seconds: dict) -> np.ndarray:
        """(K, 2) landmarks, in frame pixels, of the face in dlib `rectangle` of `scaled`, the
        frame resized `scale` times."""
        started = time.perf_counter()
        shape = _shape_predictor(self.config.landmarks)(scaled, rectangle)
        landmarks = np.array([[point.x, point.y] for point in shape.parts()], dtype=np.float64)
        seconds["landmarks"] += time.perf_counter() - started
        return _unscale_pixels(landmarks, scale)

    def _find_face(self, rgb: np.ndarray, previous_box: np.ndarray | None, seconds: dict):
        """Detects the faces of one (H, W, 3) frame and locates the landmarks of the tracked one.

        Returns:
            None where no face is found, else (box, landmarks, used_cnn): the
            kept (4,) [left, top, right, bottom] box and its (K, 2) landmarks
            in frame pixels, and whether the CNN detector found it.
        """
        scaled, scale, rectangles, boxes, scores, used_cnn = self._detect(rgb, seconds)
        if not rectangles:
            return None
        kept = _pick_box(boxes, scores, previous_box)
        return boxes[kept], self._landmarks(scaled, scale, rectangles[kept], seconds), used_cnn

    def find_faces(self, image: np.ndarray) -> list[DetectedFace]:
        """Every face of one image (same formats as a frame of `align_clip`), with its landmarks.

        Returns:
            One `DetectedFace` per detection, in the detector's order (box and
            landmarks in image pixels); an empty list when there is none.
        """
        seconds = dict.fromkeys(_STAGES, 0.0)
        scaled, scale, rectangles, boxes, scores, _ = self._detect(as_rgb_uint8(image), seconds)
        return [
            DetectedFace(box=box, score=float(score), landmarks=self._landmarks(scaled, scale, rectangle, seconds))
            for rectangle, box, score in zip(rectangles, boxes, scores)
        ]

    def landmarks_in_box(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(K, 2) landmarks, in image pixels, fitted in a given (4,) [left, top, right, bottom]
        box of one full-resolution image (e.g. a face's box followed from an earlier frame).

        The shape predictor always returns a face shape inside the box: it does not tell
        whether a face is there.
        """
        rgb = as_rgb_uint8(image)
        return self._landmarks(rgb, 1, box_rectangle(box), dict.fromkeys(_STAGES, 0.0))

    def align_to_landmarks(self, image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Aligns one image with given (K, 2) landmarks (e.g. from `find_faces`), like `align_clip` does.

        Returns:
            (face, aligned_landmarks): uint8 (S, S, 3) and float32 (K, 2) in aligned-face pixels.
        """
        return self._align(as_rgb_uint8(image), np.asarray(landmarks, np.float64), dict.fromkeys(_STAGES, 0.0))

    def _align(self, rgb: np.ndarray, landmarks: np.ndarray, seconds: dict) -> tuple[np.ndarray, np.ndarray]:
        """Warps (H, W, 3) `rgb` so that the eyes of (K, 2) `landmarks` land on the template.

        Returns:
            (face, aligned_landmarks): uint8 (S, S, 3) and float32 (K, 2).
        """
        started = time.perf_counter()
        size = self.config.output_size
        left_eye, right_eye = _EYE_LANDMARKS[self.config.landmarks]
        eyes = np.stack([landmarks[left_eye].mean(axis=0), landmarks[right_eye].mean(axis=0)])
        template = template_eye_centres(size, self.config.eye_level, self.config.eye_distance)
        matrix = _similarity_transform(eyes, template)
        face = cv2.warpAffine(
            rgb, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )
        aligned_landmarks = _apply_transform(matrix, landmarks).astype(np.float32)
        seconds["alignment"] += time.perf_counter() - started
        return face, aligned_landmarks

    def align_clip(self, frames: Sequence[np.ndarray], source: str = "") -> AlignedFrames:
        """Aligns the face in every frame of a clip.

        Args:
            frames: F images, each uint8/uint16 (H, W), (H, W, 1), (H, W, 3)
                RGB or (H, W, 4) RGBA; sizes may differ between frames.
            source: name of the clip for error messages.

        Returns:
            AlignedFrames with F faces: frames without a face are warped with
            the landmarks of the nearest frame with one (the earlier on ties).

        Raises:
            NoFaceError: no frame has a face.
            ValueError: no frames, or a frame of unsupported shape/dtype.
        """
        prefix = f"{source}: " if source else ""
        if len(frames) == 0:
            raise ValueError(f"{prefix}clip has no frames")
        seconds = dict.fromkeys(_STAGES, 0.0)
        images, found_landmarks, detected = [], [], []
        previous_box, cnn_fallbacks = None, 0
        for index, frame in enumerate(frames):
            try:
                rgb = as_rgb_uint8(frame)
            except ValueError as error:
                raise ValueError(f"{prefix}frame {index}: {error}") from None
            found = self._find_face(rgb, previous_box, seconds)
            images.append(rgb)
            detected.append(found is not None)
            found_landmarks.append(None if found is None else found[1])
            if found is not None:
                previous_box = found[0]
                cnn_fallbacks += found[2]

        face_indices = np.flatnonzero(detected)
        if face_indices.size == 0:
            raise NoFaceError(source, len(frames))
        faces, landmarks = [], []
        for index, rgb in enumerate(images):
            nearest = face_indices[np.argmin(np.abs(face_indices - index))]
            face, aligned_landmarks = self._align(rgb, found_landmarks[nearest], seconds)
            faces.append(face)
            landmarks.append(aligned_landmarks)
        return AlignedFrames(
            faces=np.stack(faces),
            detected=np.array(detected, dtype=bool),
            landmarks=np.stack(landmarks),
            cnn_fallbacks=int(cnn_fallbacks),
            seconds=seconds,
        )

    def align_image(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Aligns the largest face of one image (same formats as a frame of `align_clip`).

        Returns:
            None when no face is found, else (face, landmarks): uint8 (S, S, 3)
            and float32 (K, 2) in aligned-face pixels.
        """
        seconds = dict.fromkeys(_STAGES, 0.0)
        rgb = as_rgb_uint8(image)
        found = self._find_face(rgb, None, seconds)
        if found is None:
            return None
        return self._align(rgb, found[1], seconds)


def detect_landmarks(image: np.ndarray, upsample: int = 1, landmarks: int = 68) -> np.ndarray | None:
    """The landmarks of the highest-scoring face that the HOG detector finds in one image,
    detected at full resolution (one image: no downscaling for speed, `min_face_fraction` 0).

    Args:
        image: one image, in the formats of a frame of `FaceAligner.align_clip`.
        upsample: detector upsampling (see `AlignmentConfig.upsample`).
        landmarks: 68 or 5, the shape predictor.

    Returns:
        float32 (K, 2) landmarks (x, y) in image pixels, or None when no face is found.
    """
    aligner = FaceAligner(
        AlignmentConfig(landmarks=landmarks, cnn_fallback=False, upsample=upsample, min_face_fraction=0.0)
    )
    found = aligner.find_faces(image)
    if not found:
        return None
    return max(found, key=lambda face: face.score).landmarks.astype(np.float32)
