"""Child process of test_saved_model: serves a SavedModel WITHOUT keras_emotion.

    python -I served_in_fresh_process.py ARGUMENTS.pkl RESULT.pkl

ARGUMENTS: {"saved_model": dir, "cases": {case: (signature name, {input name: array})}}.
RESULT: {"keras_emotion_importable": bool, "outputs": {case: {output name: array}}}.
The editable install's import hook and any path holding a keras_emotion folder are removed
first, so the SavedModel must be self-contained.
"""

import importlib.util
import os
import pickle
import sys

sys.meta_path[:] = [finder for finder in sys.meta_path if "keras_emotion" not in getattr(finder, "__module__", "")]
sys.path[:] = [entry for entry in sys.path if not os.path.isdir(os.path.join(entry or ".", "keras_emotion"))]

import tensorflow as tf  # noqa: E402

arguments_path, result_path = sys.argv[1:]
with open(arguments_path, "rb") as file:
    arguments = pickle.load(file)
loaded = tf.saved_model.load(arguments["saved_model"])
outputs = {}
for case, (signature, inputs) in arguments["cases"].items():
    answer = loaded.signatures[signature](**{name: tf.constant(value) for name, value in inputs.items()})
    outputs[case] = {name: value.numpy() for name, value in answer.items()}
result = {"keras_emotion_importable": importlib.util.find_spec("keras_emotion") is not None, "outputs": outputs}
with open(result_path, "wb") as file:
    pickle.dump(result, file)
