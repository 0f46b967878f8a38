"""Writes a still-image corpus as `predict` would cut its faces from a video: each image's
largest face detected and aligned with a model's alignment, same class folders and file names.

    keras-emotion align-images --input ../shared/data/expw --output_dir runs/aligned/expw

The folder then trains (`train-face-clips --extra_image_dirs`) and evaluates (`evaluate --input`)
like any corpus; `<output_dir>/align_report.json`, written last, lists the images without a face.
A rerun keeps the faces already written (resume after a kill). See `keras_emotion.data.stills`.
"""

from absl import app, flags

from keras_emotion.data.preprocess import ConsoleProgress
from keras_emotion.data.stills import align_image_folder
from keras_emotion.files import OutputDirInUseError, OutputDirLock
from keras_emotion.inference.clip_model import read_clip_model_info
from keras_emotion.pretrained import PRETRAINED_MODEL_DIR

FLAGS = flags.FLAGS
flags.DEFINE_string("input", None, "A folder of class folders of still face images, <input>/<class>/<image>.")
flags.DEFINE_string("output_dir", None, "The folder to write the aligned faces to (same class folders and names).")
flags.DEFINE_string(
    "model", PRETRAINED_MODEL_DIR, "The model whose alignment to cut the faces with; default the shipped model."
)
flags.mark_flags_as_required(["input", "output_dir"])


def main(argv):
    del argv
    try:
        alignment = read_clip_model_info(FLAGS.model).known_alignment(FLAGS.model)
        with OutputDirLock(FLAGS.output_dir, "align-images"):
            progress = ConsoleProgress(task="align-images", unit="images", failed="without a face")
            report = align_image_folder(FLAGS.input, FLAGS.output_dir, alignment, progress)
    except (OSError, ValueError, OutputDirInUseError) as error:
        raise app.UsageError(str(error)) from None
    print(
        f"{FLAGS.input}: {report['aligned']} of {report['images']} faces aligned -> {FLAGS.output_dir} "
        f"({len(report['no_face'])} without a face, listed in its align_report.json)"
    )
