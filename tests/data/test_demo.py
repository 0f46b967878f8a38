"""Tests of the synthetic demo corpus (keras_emotion.data.demo, scripts/make_demo_corpus.py)."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from keras_emotion.data import demo
from keras_emotion.data.faces import detect_landmarks
from keras_emotion.data.video import read_frames

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SMALL = {"num_train": 2, "num_val": 1, "frames": 5, "seed": 3}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pathlib.Path:
    return demo.make_demo_corpus(tmp_path_factory.mktemp("demo") / "corpus", **SMALL)


def _tree(root: pathlib.Path) -> dict:
    """Relative path -> bytes of every file under `root`."""
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_corpus_has_the_afew_layout_readme_and_index(corpus):
    videos = sorted(str(path.relative_to(corpus)) for path in corpus.rglob("*.avi"))
    expected = [
        f"{split}/{label}/{label}_{split.lower()}_{index:03d}.avi"
        for split, count in (("Train", 2), ("Val", 1))
        for label in demo.CLASS_NAMES
        for index in range(count)
    ]
    assert videos == sorted(expected + [demo.SEQUENCE_NAME])
    readme = (corpus / demo.README_NAME).read_text()
    assert "SYNTHETIC" in readme and "astronaut" in readme and "means nothing" in readme
    index = json.loads((corpus / demo.INDEX_NAME).read_text())
    assert index["parameters"] == {"version": demo.CORPUS_VERSION, "class_names": list(demo.CLASS_NAMES), **SMALL}
    assert sorted(clip["path"] for clip in index["clips"]) == sorted(expected)
    assert not [name for name in os.listdir(corpus.parent) if name != corpus.name]  # no staging folder left


def test_videos_are_readable_with_the_expected_frames(corpus):
    index = json.loads((corpus / demo.INDEX_NAME).read_text())
    for clip in index["clips"]:
        frames, fps = read_frames(str(corpus / clip["path"]))
        assert len(frames) == SMALL["frames"], clip["path"]
        assert fps == demo.FPS
        assert frames[0].shape == (demo.FRAME_SIZE, demo.FRAME_SIZE, 3)
    frames, _ = read_frames(str(corpus / demo.SEQUENCE_NAME))
    sequence = index["sequence"]
    assert len(frames) == sequence["frames"] == sequence["segments"][-1]["end"] + 6
    assert [segment["label"] for segment in sequence["segments"]] == list(demo.CLASS_NAMES)


def test_generation_is_deterministic_for_a_seed(corpus, tmp_path):
    again = demo.make_demo_corpus(tmp_path / "again", **SMALL)
    other = demo.make_demo_corpus(tmp_path / "other", **{**SMALL, "seed": 4})

    reference = _tree(corpus)
    assert _tree(again) == reference
    differing = [path for path, data in _tree(other).items() if path.endswith(".avi") and reference[path] != data]
    assert len(differing) == len(demo.CLASS_NAMES) * 3 + 1


def _cues(landmarks: np.ndarray) -> dict:
    """Heights in inter-ocular distances relative to the nose tip (positive = lower on the face)."""
    face = demo.face_coordinates(landmarks)
    face -= face[30]
    return {
        "mouth_corners": face[[48, 54], 1].mean(),
        "inner_brows": face[[21, 22], 1].mean(),
        "lip_gap": face[[65, 66, 67], 1].mean() - face[[61, 62, 63], 1].mean(),
    }


# Per class: cue -> (sign of the change from the neutral first frame to the apex last frame, least size).
EXPECTED_MOVES = {
    "happy": {"mouth_corners": (-1, 0.04)},
    "sadness": {"mouth_corners": (+1, 0.03), "inner_brows": (-1, 0.02)},
    "surprise": {"inner_brows": (-1, 0.03), "lip_gap": (+1, 0.05)},
    "anger": {"inner_brows": (+1, 0.015), "lip_gap": (-1, 0.02)},
}


def test_redetected_landmarks_move_as_each_class_demands(corpus):
    index = json.loads((corpus / demo.INDEX_NAME).read_text())
    for clip in index["clips"]:
        frames, _ = read_frames(str(corpus / clip["path"]))
        neutral, apex = detect_landmarks(frames[0], 0), detect_landmarks(frames[-1], 0)
        assert neutral is not None and apex is not None, f"dlib finds no face in {clip['path']}"
        before, after = _cues(neutral), _cues(apex)
        for cue, (sign, least) in EXPECTED_MOVES[clip["label"]].items():
            change = after[cue] - before[cue]
            assert sign * change > least, f"{clip['path']}: {cue} moved {change:+.3f} (style {clip['style']})"


def test_warp_matches_a_barycentric_reference():
    """Warping a coordinate image gives, at each output pixel, the photo point it shows;
    compare with barycentric interpolation over the moved triangles, computed here."""
    _, landmarks = demo.astronaut_face()
    size = 512
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    warper = demo.FaceWarper(np.dstack([xs, ys, np.zeros_like(xs)]), landmarks)
    offsets = demo.expression_displacement(landmarks, "surprise")

    pulled = warper.render(offsets, np.eye(3), size=size)[..., :2]

    target = warper.target_mesh(offsets)
    rng = np.random.default_rng(0)
    pixels = rng.integers(warper.mesh.min(axis=0), warper.mesh.max(axis=0), size=(3000, 2)).astype(np.float64)
    corners = target[warper.triangles]  # (T, 3, 2)
    edges = np.stack([corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]], axis=2)  # (T, 2, 2)
    weights = np.einsum("tij,ptj->pti", np.linalg.inv(edges), pixels[:, None] - corners[None, :, 0])  # (P, T, 2)
    barycentric = np.concatenate([1 - weights.sum(-1, keepdims=True), weights], axis=-1)  # (P, T, 3)
    inside = np.all(barycentric >= -1e-9, axis=-1)
    assert np.all(inside.sum(axis=1) >= 1), "the ring of fixed points covers the sampled region"
    triangle = inside.argmax(axis=1)
    vertices = warper.mesh[warper.triangles[triangle]]  # (P, 3, 2) in the photo
    expected = np.einsum("pk,pkj->pj", barycentric[np.arange(len(pixels)), triangle], vertices)
    got = pulled[pixels[:, 1].astype(int), pixels[:, 0].astype(int)]
    error = np.linalg.norm(got - expected, axis=1)
    # Exact inside triangles; pixels on a rasterised edge (a few %) may use the
    # neighbouring triangle's affine, off by well under a pixel.
    assert np.percentile(error, 90) < 1e-3 and error.max() < 1.0
    assert np.abs(expected - pixels).max() > 5  # the warp really moves pixels there
    outside = pulled[:10, :10]  # far from the face: the identity
    np.testing.assert_allclose(outside, np.dstack([xs, ys])[:10, :10], atol=1e-4)


@pytest.mark.parametrize("expression", demo.CLASS_NAMES)
def test_no_triangle_folds_at_the_strongest_expression(expression):
    warper = demo.astronaut_warper()
    strongest = demo.INTENSITY_RANGE[1] * demo.expression_displacement(warper.landmarks, expression)

    def signed_areas(points):
        a, b, c = np.moveaxis(points[warper.triangles], 1, 0)
        return np.cross(b - a, c - a)

    ratio = signed_areas(warper.target_mesh(strongest)) / signed_areas(warper.mesh)
    assert ratio.min() > 0.1, f"{expression}: a triangle shrinks to {ratio.min():.2f} of its area or flips"


def test_existing_corpus_is_kept_and_a_different_one_refused(corpus):
    stamp = (corpus / demo.INDEX_NAME).stat().st_mtime_ns
    assert demo.make_demo_corpus(corpus, **SMALL) == corpus
    assert (corpus / demo.INDEX_NAME).stat().st_mtime_ns == stamp

    with pytest.raises(ValueError, match=r"corpus.json: the demo corpus there was generated with .*'seed': 3"):
        demo.make_demo_corpus(corpus, **{**SMALL, "seed": 5})


def test_a_folder_that_is_not_a_corpus_is_refused(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "mine.avi").write_bytes(b"")
    with pytest.raises(ValueError, match=r"videos: exists but is not a complete demo corpus"):
        demo.make_demo_corpus(tmp_path / "videos", **SMALL)


def test_a_crash_leaves_no_corpus_and_no_partial_folder(tmp_path, monkeypatch):
    calls = []

    def failing_write(path, frames, fps=demo.FPS):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(f"{path}: disk full")

    monkeypatch.setattr(demo, "write_video", failing_write)
    with pytest.raises(OSError, match="disk full"):
        demo.make_demo_corpus(tmp_path / "corpus", **SMALL)
    assert os.listdir(tmp_path) == []


def test_bad_parameters_are_refused(tmp_path):
    with pytest.raises(ValueError, match="at least 2 frames, got 1"):
        demo.make_demo_corpus(tmp_path / "corpus", frames=1)
    with pytest.raises(ValueError, match="num_train and num_val must be >= 1"):
        demo.make_demo_corpus(tmp_path / "corpus", num_val=0)
    with pytest.raises(ValueError, match="unknown demo expression 'joy'"):
        demo.expression_displacement(demo.astronaut_face()[1], "joy")


def test_script_writes_the_corpus(tmp_path):
    output = tmp_path / "demo_corpus"
    command = [sys.executable, str(REPO_ROOT / "scripts" / "make_demo_corpus.py"), f"--output_dir={output}"]
    command += ["--num_train=1", "--num_val=1", "--frames=2"]
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "demo corpus ready" in result.stdout
    assert len(list(output.rglob("*.avi"))) == 2 * len(demo.CLASS_NAMES) + 1
