"""Shared pieces of the export tests: the tiny model, TF Serving's REST decoding, references."""

import base64
import dataclasses
import pickle
import subprocess
import sys

import numpy as np

from keras_emotion.models import ModelConfig
from keras_emotion.models.info import ModelInfo, Preprocessing

# compact backbone on 32 x 32 crops (2 x 2 regions); frames resized to 64 x 64 first (crop 0.5),
# which a 256 x 256 face reaches by a 4 x 4 block mean.
CONFIG = ModelConfig(
    num_classes=3, num_frames=3, image_size=32, backbone="compact", spatial="sa", num_heads=2, attention_units=8
)
PREPROCESSING = Preprocessing(image_size=32, crop_fraction=0.5)
CLASS_NAMES = ["anger", "happy", "surprise"]
INFO = ModelInfo(CLASS_NAMES, PREPROCESSING)  # what an export of a bare model knows of it


def any_length_config() -> ModelConfig:
    return dataclasses.replace(CONFIG, num_frames=None)


def decode_rest_value(value):
    """A JSON value of a REST request -> Python: {"b64": s} -> bytes, lists kept."""
    if isinstance(value, dict):
        assert set(value) == {"b64"}, f"a JSON object in a tensor must be {{'b64': ...}}, got {sorted(value)}"
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [decode_rest_value(item) for item in value]
    return value


def decode_rest_body(body: dict):
    """TF Serving's reading of a predict body: (signature name, {input name: array with batch axis}).

    Row format: "instances" is a list of objects {input name: value}, stacked per input.
    Columnar format: "inputs" maps input names to values that already have the batch axis.
    """
    if "instances" in body:
        instances = body["instances"]
        names = set(instances[0])
        assert all(set(instance) == names for instance in instances), "every instance needs the same inputs"
        columns = {name: [decode_rest_value(instance[name]) for instance in instances] for name in names}
    else:
        columns = {name: decode_rest_value(value) for name, value in body["inputs"].items()}
    return body.get("signature_name", "serving_default"), {name: _array(value) for name, value in columns.items()}


def _array(value):
    array = np.array(value, dtype=object)
    if array.size and all(isinstance(item, bytes) for item in array.reshape(-1)):
        return array
    return np.array(value)


def as_numpy(outputs: dict) -> dict:
    """Signature / Keras outputs -> {name: NumPy array}."""
    return {name: np.asarray(value) for name, value in outputs.items()}


def assert_outputs_match(served: dict, reference: dict, context: str):
    """`served` signature outputs equal the Keras `reference` (plus the label of its argmax)."""
    assert set(served) == set(reference) | {"label"}, f"{context}: outputs {sorted(served)}"
    for name, expected in reference.items():
        assert served[name].shape == expected.shape, f"{context}: {name} {served[name].shape} != {expected.shape}"
        np.testing.assert_allclose(served[name], expected, rtol=1e-4, atol=1e-5, err_msg=f"{context}: {name}")
    expected_labels = [CLASS_NAMES[index].encode() for index in reference["probabilities"].argmax(axis=-1)]
    assert list(served["label"]) == expected_labels, context


def run_in_fresh_process(script, arguments: dict, workdir):
    """Runs `script` with a pickled `arguments` file in a new Python started in `workdir`;
    returns the pickled result it writes."""
    arguments_path, result_path = workdir / "arguments.pkl", workdir / "result.pkl"
    arguments_path.write_bytes(pickle.dumps(arguments))
    completed = subprocess.run(
        [sys.executable, "-I", str(script), str(arguments_path), str(result_path)],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return pickle.loads(result_path.read_bytes())


def pipeline_features(file_pattern: str) -> dict:
    """The evaluation pipeline's features {"frames", "frame_mask"} of every clip of the shards
    (all frames, padded to the longest clip), as one batch of NumPy arrays."""
    from keras_emotion.data import pipeline
    from keras_emotion.data.config import InputConfig

    config = InputConfig(
        file_pattern=file_pattern,
        training=False,
        sampling="all",
        image_size=PREPROCESSING.image_size,
        crop_fraction=PREPROCESSING.crop_fraction,
        global_batch_size=64,
    )
    ((features, _labels),) = list(pipeline.build_dataset(config).as_numpy_iterator())
    return features
