"""Exports a trained model as a SavedModel for TensorFlow Serving (see keras_emotion.export).

    keras-emotion export --model runs/emotion/trained --base_dir serving --name emotion

Writes `<base_dir>/<name>/<version>/` (saved_model.pb + variables/), the version being one more
than the largest existing one unless --version is given, and prints its path.
"""

import os
import sys

from absl import app, flags

from keras_emotion.cli import define_alias
from keras_emotion.export import export_trained_model
from keras_emotion.pretrained import PRETRAINED_MODEL_DIR
from keras_emotion.files import OutputDirInUseError, OutputDirLock

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "model",
    PRETRAINED_MODEL_DIR,
    "A trained-model folder (model_info.json + model.keras) from training; default the model shipped in the package.",
)
define_alias("model_dir", "model")
flags.DEFINE_string("base_dir", None, "Folder of served models; the export goes to <base_dir>/<name>/<version>.")
flags.DEFINE_string("name", "emotion", "Model name (TF Serving's MODEL_NAME).")
flags.DEFINE_integer("version", None, "Version number; default one more than the largest existing version.")
flags.DEFINE_bool("overwrite", False, "Replace an existing version.")
flags.mark_flags_as_required(["base_dir"])


def main(argv):
    del argv
    try:
        with OutputDirLock(os.path.join(FLAGS.base_dir, FLAGS.name), "export"):
            path = export_trained_model(FLAGS.model, FLAGS.base_dir, FLAGS.name, FLAGS.version, FLAGS.overwrite)
    except OutputDirInUseError as error:
        sys.exit(f"export: {error}")
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        raise app.UsageError(str(error)) from None
    print(f"exported {path} (signatures serving_default, encoded_frames, tf_example)")
