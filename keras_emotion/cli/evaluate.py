"""Evaluates a trained model on ALL frames of every clip of a TFRecord split.

    keras-emotion evaluate --model_dir runs/emotion/trained --data tfrecords/ck48 --split val

Writes `<output_dir>/evaluation.json` (accuracy, per-class recall, UAR, confusion matrix, every
clip's prediction) and `<output_dir>/confusion_matrix.png`; prints the summary.
"""

import os

from absl import app, flags

from keras_emotion.training.evaluation import evaluate_model_dir, summarize

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A trained-model folder (model.keras + model_info.json).")
flags.DEFINE_string("data", None, "A TFRecord folder (read with --split) or a glob of shards.")
flags.DEFINE_string("split", "val", "Split to evaluate when --data is a folder.")
flags.DEFINE_string("output_dir", None, "Output folder; default <model_dir>/evaluation_<split>.")
flags.DEFINE_integer("batch_size", 8, "Clips per batch.")
flags.DEFINE_bool(
    "allow_incomplete", False, "Evaluate data whose preprocessing did not finish (manifest complete: false)."
)
flags.mark_flags_as_required(["model_dir", "data"])


def main(argv):
    del argv
    output_dir = FLAGS.output_dir or os.path.join(FLAGS.model_dir, f"evaluation_{FLAGS.split}")
    try:
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
