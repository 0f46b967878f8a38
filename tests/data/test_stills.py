"""Tests of keras_emotion.data.stills and scripts/align_images.py on real photographs (the
`face_pictures` fixture: the astronaut and a coffee cup without a face): each face is written as
`predict` aligns a frame."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from keras_emotion.data.faces import AlignmentConfig, FaceAligner, video_alignment
from keras_emotion.data.stills import ALIGN_REPORT, align_image_folder
from keras_emotion.data.video import InputError, read_image
from keras_emotion.inference.clip_model import read_clip_model_info
from keras_emotion.pretrained import PRETRAINED_MODEL_DIR

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
ALIGNMENT = AlignmentConfig(output_size=64, cnn_fallback=True)  # the CNN fallback is dropped, as predict drops it


def test_each_face_is_written_under_its_name_as_predict_aligns_it(face_pictures, tmp_path):
    output = tmp_path / "aligned"
    calls = []
    report = align_image_folder(str(face_pictures), str(output), ALIGNMENT, lambda *args: calls.append(args))
    expected_alignment = {**ALIGNMENT.__dict__, "cnn_fallback": False}
    assert report == {
        "input": str(face_pictures), "alignment": expected_alignment, "images": 3, "aligned": 2, "no_face": ["angry/coffee.png"]
    }
    assert json.loads((output / ALIGN_REPORT).read_text()) == report
    assert calls == [(1, 3, 1), (2, 3, 1), (3, 3, 1)]
    assert sorted(str(path.relative_to(output)) for path in output.rglob("*.*")) == [
        ALIGN_REPORT, "happy/astronaut.png", "sad/astronaut_mirrored.jpg"
    ]
    aligner = FaceAligner(video_alignment(ALIGNMENT))
    for name, tolerance in (("happy/astronaut.png", 0), ("sad/astronaut_mirrored.jpg", 4.0)):
        expected, _ = aligner.align_image(read_image(str(face_pictures / name)))
        written = read_image(str(output / name))
        assert written.shape == (64, 64, 3)
        assert np.abs(written.astype(float) - expected).mean() <= tolerance, name


def test_a_rerun_keeps_the_faces_written_and_another_alignment_is_refused(face_pictures, tmp_path):
    output = tmp_path / "aligned"
    first = align_image_folder(str(face_pictures), str(output), ALIGNMENT)
    face = output / "happy" / "astronaut.png"
    os.utime(face, (1_000_000, 1_000_000))
    (output / "sad" / "astronaut_mirrored.jpg").unlink()  # as if killed before this image
    assert align_image_folder(str(face_pictures), str(output), ALIGNMENT) == first
    assert face.stat().st_mtime == 1_000_000  # kept, not written again
    assert (output / "sad" / "astronaut_mirrored.jpg").exists()
    assert not list(output.rglob(".*.tmp*"))
    with pytest.raises(ValueError) as error:
        align_image_folder(str(face_pictures), str(output), AlignmentConfig(output_size=64, eye_distance=0.37))
    assert str(error.value) == f"{output / ALIGN_REPORT}: written for another input or alignment; use another output folder"
    with pytest.raises(InputError) as error:
        align_image_folder(str(tmp_path / "missing"), str(tmp_path / "out"), ALIGNMENT)
    assert str(error.value) == f"{tmp_path / 'missing'}: image folder is missing"


def test_the_command_aligns_with_the_shipped_models_alignment(face_pictures, tmp_path):
    output = tmp_path / "aligned"
    command = [sys.executable, str(REPO_ROOT / "scripts" / "align_images.py"), f"--input={face_pictures}", f"--output_dir={output}"]
    ran = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.splitlines()[-1] == (
        f"{face_pictures}: 2 of 3 faces aligned -> {output} (1 without a face, listed in its align_report.json)"
    )
    assert "align-images: 3/3 images (100%), 1 without a face" in ran.stderr
    shipped = read_clip_model_info(PRETRAINED_MODEL_DIR).alignment  # the default --model
    assert json.loads((output / ALIGN_REPORT).read_text())["alignment"]["output_size"] == shipped.output_size
    assert read_image(str(output / "happy" / "astronaut.png")).shape == (shipped.output_size, shipped.output_size, 3)
    assert not (output / ".lock").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    ran = subprocess.run(command[:2] + [f"--input={empty}", f"--output_dir={tmp_path / 'out'}"], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 1
    assert f"{empty}: image folder is empty: expected one sub-folder of images per class" in ran.stderr
