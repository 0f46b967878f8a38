"""Tests of keras_emotion.data.faces on real faces (skimage's astronaut and CK+48).

The expected eye positions are checked against landmarks that dlib re-detects
on the aligned output (`_redetected_eye_centres`), and the warp of face-less
frames against a transform built independently with OpenCV.
"""

import dataclasses
import math
import pickle

import cv2
import dlib
import numpy as np
import pytest
from skimage import data as skimage_data

from keras_emotion.data.faces import (
    AlignedFrames,
    AlignmentConfig,
    FaceAligner,
    NoFaceError,
    detect_landmarks,
    detection_scale,
    encode_jpeg,
    template_eye_centres,
)
from keras_emotion.dlib_models import LANDMARKS_68, dlib_model_file

CK48_FRAMES = [
    "anger/S010_004_00000017.png",
    "disgust/S005_001_00000009.png",
    "fear/S011_003_00000012.png",
    "happy/S010_006_00000013.png",
    "sadness/S011_002_00000020.png",
    "surprise/S022_001_00000028.png",
]


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def no_face_frame(astronaut) -> np.ndarray:
    """A textured frame without a face (coffee cup), the astronaut's size."""
    return cv2.resize(skimage_data.coffee(), astronaut.shape[1::-1])


@pytest.fixture(scope="module")
def ck48_frames(shared_dir) -> list[np.ndarray]:
    """Six 48x48 uint8 gray CK+48 frames of different subjects and classes."""
    ck48_dir = shared_dir / "data" / "ck48" / "CK+48"
    frames = [cv2.imread(str(ck48_dir / name), cv2.IMREAD_GRAYSCALE) for name in CK48_FRAMES]
    assert all(frame is not None and frame.shape == (48, 48) for frame in frames)
    return frames


@pytest.fixture(scope="module")
def aligner() -> FaceAligner:
    """HOG only, no upsampling: the astronaut's face (~90 px) is found without it."""
    return FaceAligner(AlignmentConfig(upsample=0, cnn_fallback=False))


@pytest.fixture(scope="module")
def reference_dlib():
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(
        dlib_model_file(LANDMARKS_68)
    )


def _rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)


def _eye_centres(landmarks68: np.ndarray) -> np.ndarray:
    """(2, 2) mean of landmarks 36-41 (image-left eye) and 42-47 (image-right eye)."""
    return np.stack([landmarks68[36:42].mean(axis=0), landmarks68[42:48].mean(axis=0)])


def _dlib_landmarks(reference_dlib, image: np.ndarray) -> np.ndarray:
    """(68, 2) landmarks of the highest-scoring face dlib finds in `image`, directly with dlib."""
    detector, predictor = reference_dlib
    faces, scores, _ = detector.run(image, 0, 0.0)
    assert len(faces) > 0, "dlib finds no face"
    shape = predictor(image, faces[int(np.argmax(scores))])
    return np.array([[point.x, point.y] for point in shape.parts()], dtype=np.float64)


def _redetected_eye_centres(reference_dlib, aligned_face: np.ndarray) -> np.ndarray:
    return _eye_centres(_dlib_landmarks(reference_dlib, aligned_face))


def _centre_difference(face: np.ndarray, other: np.ndarray) -> float:
    """Mean absolute difference of the central 128x128 pixels of two aligned 256x256 faces."""
    return float(np.abs(face[64:192, 64:192].astype(float) - other[64:192, 64:192]).mean())


def _reference_alignment(reference_dlib, face_frame: np.ndarray, size: int = 256) -> np.ndarray:
    """The (2, 3) matrix aligning `face_frame`, built with cv2.getRotationMatrix2D from dlib's eyes."""
    (left_x, left_y), (right_x, right_y) = _eye_centres(_dlib_landmarks(reference_dlib, face_frame))
    template = template_eye_centres(size)
    angle = math.degrees(math.atan2(right_y - left_y, right_x - left_x))
    scale = (template[1, 0] - template[0, 0]) / math.hypot(right_x - left_x, right_y - left_y)
    centre = ((left_x + right_x) / 2, (left_y + right_y) / 2)
    matrix = cv2.getRotationMatrix2D(centre, angle, scale)
    matrix[:, 2] += template.mean(axis=0) - centre
    return matrix


def test_template_eye_centres_are_level_and_symmetric():
    eyes = template_eye_centres(256)
    assert eyes.shape == (2, 2)
    assert eyes[0, 1] == eyes[1, 1]
    assert eyes[0, 0] + eyes[1, 0] == pytest.approx(256)
    np.testing.assert_allclose(template_eye_centres(128), eyes / 2)


def test_eye_level_and_distance_set_the_template(astronaut, reference_dlib):
    """The framing of FER2013/CK+48 crops: eyes at 0.38 of the height, 0.37 of the side apart."""
    np.testing.assert_allclose(template_eye_centres(100, 0.38, 0.37), [[31.5, 38.0], [68.5, 38.0]])
    config = AlignmentConfig(output_size=192, eye_level=0.38, eye_distance=0.37)
    face, landmarks = FaceAligner(config).align_image(astronaut)
    template = template_eye_centres(192, 0.38, 0.37)
    np.testing.assert_allclose(_eye_centres(landmarks), template, atol=1e-3)
    np.testing.assert_allclose(_redetected_eye_centres(reference_dlib, face), template, atol=4)
    with pytest.raises(ValueError, match=r"eye_level and eye_distance must be in \(0, 1\), got 1.2, 0.3"):
        AlignmentConfig(eye_level=1.2)


def test_astronaut_eyes_land_on_template(aligner, astronaut, reference_dlib):
    face, landmarks = aligner.align_image(astronaut)

    assert face.shape == (256, 256, 3) and face.dtype == np.uint8
    assert landmarks.shape == (68, 2) and landmarks.dtype == np.float32
    np.testing.assert_allclose(_eye_centres(landmarks), template_eye_centres(), atol=1e-3)
    np.testing.assert_allclose(_redetected_eye_centres(reference_dlib, face), template_eye_centres(), atol=4)
    # The mapped landmarks agree with the ones dlib finds on the output (not only the eyes).
    redetected = _dlib_landmarks(reference_dlib, face)
    assert np.median(np.linalg.norm(redetected - landmarks, axis=1)) < 3


@pytest.mark.parametrize("degrees", [20, -12])
def test_rotated_astronaut_comes_out_with_level_eyes(aligner, astronaut, reference_dlib, degrees):
    """At -12 degrees HOG also reports a weak but larger false face on the suit's patch."""
    rotated = _rotate(astronaut, degrees)
    eyes_before = _eye_centres(_dlib_landmarks(reference_dlib, rotated))
    assert abs(eyes_before[1, 1] - eyes_before[0, 1]) > 10  # the input really is tilted

    face, _ = aligner.align_image(rotated)

    eyes = _redetected_eye_centres(reference_dlib, face)
    assert abs(eyes[1, 1] - eyes[0, 1]) <= 2
    np.testing.assert_allclose(eyes, template_eye_centres(), atol=4)


def test_small_gray_ck48_frames_are_aligned(aligner, ck48_frames, reference_dlib):
    result = aligner.align_clip(ck48_frames, source="ck48")

    assert isinstance(result, AlignedFrames)
    assert result.faces.shape == (len(ck48_frames), 256, 256, 3) and result.faces.dtype == np.uint8
    assert result.detected.all()
    assert result.landmarks.shape == (len(ck48_frames), 68, 2)
    for face, landmarks in zip(result.faces, result.landmarks):
        np.testing.assert_array_equal(face[..., 0], face[..., 2])  # gray stays gray in 3 channels
        np.testing.assert_allclose(_eye_centres(landmarks), template_eye_centres(), atol=1e-3)
        np.testing.assert_allclose(_redetected_eye_centres(reference_dlib, face), template_eye_centres(), atol=4)
    assert set(result.seconds) == {"detection", "landmarks", "alignment"}
    assert all(seconds > 0 for seconds in result.seconds.values())


def _astronaut_in_frame(astronaut, background, width, height, left) -> np.ndarray:
    """An RGB (height, width) frame: `background` stretched to it, the astronaut resized to the
    frame's height (her face about 18% of it) pasted `left` pixels from the left edge."""
    frame = cv2.resize(background, (width, height), interpolation=cv2.INTER_AREA)
    frame[:, left : left + height] = cv2.resize(astronaut, (height, height), interpolation=cv2.INTER_AREA)
    return frame


@pytest.mark.parametrize("width, height", [(640, 480), (1280, 720)])
def test_large_frames_are_detected_downscaled_and_aligned_at_full_resolution(
    astronaut, no_face_frame, reference_dlib, width, height
):
    """Default settings (upsample 1): the face is found on a downscaled copy, its landmarks on
    the full frame; the eyes land on the template as when detecting at full resolution."""
    frame = _astronaut_in_frame(astronaut, no_face_frame, width, height, left=width // 5)
    config = AlignmentConfig(cnn_fallback=False)
    assert detection_scale(height, width, config) < 0.8  # the fast path really runs

    face, landmarks = FaceAligner(config).align_image(frame)
    full_face, full_landmarks = FaceAligner(dataclasses.replace(config, min_face_fraction=0)).align_image(frame)

    np.testing.assert_allclose(_redetected_eye_centres(reference_dlib, face), template_eye_centres(), atol=4)
    np.testing.assert_allclose(
        _redetected_eye_centres(reference_dlib, full_face), template_eye_centres(), atol=4
    )
    # Landmarks fitted from the downscaled detection's box agree with the full-resolution ones.
    assert np.median(np.linalg.norm(landmarks - full_landmarks, axis=1)) < 3


def test_detection_scale_downscales_only_large_frames():
    default = AlignmentConfig()  # upsample 1: the detector finds 40 px faces
    assert detection_scale(720, 1280, default) == pytest.approx(40 / (0.15 * 720))
    assert detection_scale(480, 640, default) == pytest.approx(40 / (0.15 * 480))
    assert detection_scale(240, 320, default) == 1  # a 36 px face would be missed if downscaled
    assert detection_scale(48, 48, default) == 5  # small frames are upscaled to MIN_DETECTION_SIDE
    assert detection_scale(720, 1280, dataclasses.replace(default, upsample=0)) == pytest.approx(80 / 108)
    assert detection_scale(720, 1280, dataclasses.replace(default, upsample=3)) == pytest.approx(200 / 720)
    assert detection_scale(720, 1280, dataclasses.replace(default, min_face_fraction=0)) == 1


def test_five_point_landmarks(astronaut, reference_dlib):
    face, landmarks = FaceAligner(AlignmentConfig(landmarks=5, upsample=0, cnn_fallback=False)).align_image(
        astronaut
    )
    assert landmarks.shape == (5, 2)
    # The 5-point eyes are corner midpoints, not the 68-point means: a few pixels apart at most.
    np.testing.assert_allclose(_redetected_eye_centres(reference_dlib, face), template_eye_centres(), atol=6)


def test_rgba_and_uint16_frames_align_like_rgb(aligner, astronaut):
    rgba16 = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)]).astype(np.uint16) * 257

    result = aligner.align_clip([rgba16, astronaut])

    np.testing.assert_array_equal(result.faces[0], result.faces[1])


def test_face_less_frames_borrow_the_nearest_face(aligner, astronaut, no_face_frame, reference_dlib):
    first_face = astronaut
    second_face = _rotate(np.roll(astronaut, (30, -40), axis=(0, 1)), 12)
    frames = [no_face_frame, first_face, no_face_frame, no_face_frame, second_face]

    result = aligner.align_clip(frames, source="clip-with-gaps")

    assert len(result.faces) == len(frames)
    np.testing.assert_array_equal(result.detected, [False, True, False, False, True])
    # Frames 0 and 2 are nearest to frame 1, frame 3 to frame 4.
    for index, nearest in [(0, 1), (2, 1), (3, 4)]:
        np.testing.assert_array_equal(result.landmarks[index], result.landmarks[nearest])
        expected = cv2.warpAffine(
            frames[index], _reference_alignment(reference_dlib, frames[nearest]), (256, 256), flags=cv2.INTER_CUBIC
        )
        assert np.abs(result.faces[index].astype(float) - expected).mean() < 1.0
    assert _centre_difference(result.faces[2], result.faces[3]) > 10  # two different transforms


def test_clip_without_any_face_raises(aligner, no_face_frame):
    gray = np.full((120, 160), 128, np.uint8)
    with pytest.raises(NoFaceError, match=r"^S999_001: no face detected in any of the 2 frames"):
        aligner.align_clip([no_face_frame, gray], source="S999_001")


def test_bad_frame_is_named(aligner):
    with pytest.raises(ValueError, match=r"^clip7: frame 1: unsupported pixel type float64"):
        aligner.align_clip([np.zeros((64, 64), np.uint8), np.zeros((64, 64))], source="clip7")


def test_tracking_keeps_the_face_that_continues_the_track(aligner, astronaut, ck48_frames):
    """A small colour face on the left, then a larger gray face appears on the right."""
    left_only = np.zeros((512, 1024, 3), np.uint8)
    left_only[56:456, 40:440] = cv2.resize(astronaut, (400, 400), interpolation=cv2.INTER_AREA)
    right_only = np.zeros_like(left_only)
    right_only[:, 512:] = cv2.resize(ck48_frames[3], (512, 512), interpolation=cv2.INTER_CUBIC)[..., None]
    both = np.maximum(left_only, right_only)

    left_track = aligner.align_clip([left_only, left_only, both])
    right_track = aligner.align_clip([right_only, both])
    largest, _ = aligner.align_image(both)

    assert left_track.detected.all() and right_track.detected.all()
    # Following the left track, the last frame gives the same crop as the first frames.
    assert _centre_difference(left_track.faces[2], left_track.faces[0]) < 1.0
    # Following the right track, or with no track (largest face), the gray face is kept.
    assert _centre_difference(right_track.faces[1], right_track.faces[0]) < 1.0
    np.testing.assert_array_equal(largest, right_track.faces[1])
    assert _centre_difference(largest, left_track.faces[2]) > 20


def test_cnn_detector_finds_faces_hog_misses(astronaut, reference_dlib):
    steep = _rotate(astronaut, 50)  # too tilted for the HOG frontal detector
    with pytest.raises(NoFaceError):
        FaceAligner(AlignmentConfig(upsample=0, cnn_fallback=False)).align_clip([steep])

    result = FaceAligner(AlignmentConfig(upsample=0, cnn_fallback=True)).align_clip([steep])

    assert result.cnn_fallbacks == 1 and result.detected.all()
    # The CNN box leads to a face that dlib's own HOG detector now finds near the template.
    eyes = _redetected_eye_centres(reference_dlib, result.faces[0])
    assert np.linalg.norm(eyes.mean(axis=0) - template_eye_centres().mean(axis=0)) < 40


def test_detect_landmarks_gives_dlibs_landmarks_of_the_best_face(astronaut, no_face_frame, reference_dlib):
    detector, predictor = reference_dlib
    boxes, scores, _ = detector.run(astronaut, 0, 0.0)
    shape = predictor(astronaut, boxes[int(np.argmax(scores))])
    expected = np.array([(point.x, point.y) for point in shape.parts()], dtype=np.float32)
    landmarks = detect_landmarks(astronaut, upsample=0)
    assert landmarks.dtype == np.float32
    np.testing.assert_array_equal(landmarks, expected)
    assert detect_landmarks(no_face_frame, upsample=0) is None


def test_aligner_pickles(aligner, astronaut):
    restored = pickle.loads(pickle.dumps(aligner))
    assert restored.config == aligner.config
    np.testing.assert_array_equal(restored.align_image(astronaut)[0], aligner.align_image(astronaut)[0])


def test_encode_jpeg_round_trip_keeps_rgb_order(astronaut):
    encoded = encode_jpeg(astronaut, quality=95)
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert encoded[:2] == b"\xff\xd8"
    assert np.abs(decoded.astype(float) - astronaut).mean() < 3
    assert len(encode_jpeg(astronaut, quality=30)) < len(encoded)
    with pytest.raises(ValueError, match="uint8"):
        encode_jpeg(astronaut.astype(np.float32))
