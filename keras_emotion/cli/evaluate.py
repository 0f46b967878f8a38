"""Evaluates a trained model on ALL frames of every clip of a TFRecord split, or on a folder of
still face images (each a 1-frame clip).

    keras-emotion evaluate --model_dir runs/emotion/trained --data tfrecords/ck48 --split val
    keras-emotion evaluate --images fer2013/test --batch_size 128     # the shipped model

--images takes a folder of class folders, `<images>/<class>/<image>.jpg|png|...` (FER2013
layout). The data's classes (class folders, or the manifest beside the shards) are matched to
the model's case-insensitively and through synonyms (CK+ "anger" is "angry"); classes that
match none (CK+ "contempt") are skipped and listed. Writes `<output_dir>/evaluation.json`
(accuracy, per-class recall, UAR, confusion matrix, skipped_classes, every clip's prediction)
and `<output_dir>/confusion_matrix.png`; prints the summary.
"""

import os
from typing import Optional

from absl import app, flags

from keras_emotion.pretrained import PRETRAINED_MODEL_DIR
from keras_emotion.training.evaluation import evaluate_images_dir, evaluate_model_dir, summarize

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "model_dir",
    PRETRAINED_MODEL_DIR,
    "A trained-model folder (model_info.json + model.keras); default the model shipped in the package.",
)
flags.DEFINE_string("data", None, "A TFRecord folder (read with --split) or a glob of shards.")
flags.DEFINE_string(
    "images", None, "A folder of class folders of still face images, <images>/<class>/<image> (instead of --data)."
)
flags.DEFINE_float(
    "held_out_fraction",
    None,
    "With --images: only the images that backbone pre-training held out of this extra corpus "
    "(its --holdout_fraction, e.g. 0.15 for ExpW and SFEW).",
)
flags.DEFINE_string("split", "val", "Split to evaluate when --data is a folder.")
flags.DEFINE_string(
    "output_dir",
    None,
    "Output folder; default <model_dir>/evaluation_<split, or the --images folder's name>, and "
    "./evaluation_<split or name> (in the current folder) for the shipped model.",
)
flags.DEFINE_integer("batch_size", 8, "Clips (or images) per batch.")
flags.DEFINE_bool(
    "allow_incomplete", False, "Evaluate data whose preprocessing did not finish (manifest complete: false)."
)


def default_output_dir(model_dir: str, split: str, images: Optional[str]) -> str:
    """`<model_dir>/evaluation_<what>`, or `evaluation_<what>` in the current folder for the
    shipped model; `<what>` is the split for --data, the folder's name for --images."""
    what = os.path.basename(os.path.normpath(images)) if images else split
    parent = "" if os.path.normpath(model_dir) == os.path.normpath(PRETRAINED_MODEL_DIR) else model_dir
    return os.path.join(parent, f"evaluation_{what}")


def main(argv):
    del argv
    if (FLAGS.data is None) == (FLAGS.images is None):
        raise app.UsageError("give exactly one of --data (TFRecord clips) and --images (a folder of class folders)")
    output_dir = FLAGS.output_dir or default_output_dir(FLAGS.model_dir, FLAGS.split, FLAGS.images)
    try:
        if FLAGS.images is not None:
            report = evaluate_images_dir(
                FLAGS.model_dir, FLAGS.images, output_dir, FLAGS.batch_size, held_out_fraction=FLAGS.held_out_fraction
            )
        else:
            report = evaluate_model_dir(
                FLAGS.model_dir,
                FLAGS.data,
                FLAGS.split,
                output_dir,
                FLAGS.batch_size,
                allow_incomplete=FLAGS.allow_incomplete,
            )
    except (FileNotFoundError, ValueError) as error:
        raise app.UsageError(str(error)) from None
    print(summarize(report))
    print(f"wrote {report['json']} and {report['png']}")
