"""Draws the paper's Fig. 2 for one clip, or the confusion matrix of an evaluation.

    # a clip of preprocessed TFRecords, by id
    keras-emotion visualize --model runs/demo/trained --data runs/demo/tfrecords \
        --clip_id happy_val_000 --output fig2.png
    # frames 40..55 of a video
    keras-emotion visualize --model runs/demo/trained --input demo_corpus/demo_sequence.avi \
        --first_frame 40 --num_video_frames 16 --output fig2.png
    # the confusion matrix of keras-emotion evaluate's JSON
    keras-emotion visualize --evaluation_json runs/demo/evaluation/evaluation.json --output cm.png

See keras_emotion.inference.visualize for what the picture shows.
"""

import sys

from absl import app, flags

from keras_emotion.cli import define_alias
from keras_emotion.data.faces import NoFaceError
from keras_emotion.data.video import InputError
from keras_emotion.inference import load_clip_model
from keras_emotion.inference.visualize import (
    align_video_clip,
    explain_clip,
    plot_evaluation,
    plot_explanation,
    read_tfrecord_clip,
)
from keras_emotion.models.info import AlignmentMismatchError
from keras_emotion.pretrained import PRETRAINED_MODEL_DIR

FLAGS = flags.FLAGS
flags.DEFINE_string("output", None, "PNG file to write.", required=True)
flags.DEFINE_string(
    "model", PRETRAINED_MODEL_DIR, "Trained-model folder (model_info.json + model.keras); default the shipped model."
)
flags.DEFINE_string("data", None, "TFRecord folder or glob of shards holding --clip_id.")
define_alias("tfrecords", "data")
flags.DEFINE_string("split", "*", "Split whose shards are searched when --data is a folder.")
flags.DEFINE_string("clip_id", None, "Id of the clip in --data.")
flags.DEFINE_string("input", None, "Video file or folder of frames (aligned with the model's face aligner).")
define_alias("video", "input")
flags.DEFINE_integer("first_frame", 0, "First video frame of the clip.")
flags.DEFINE_integer("num_video_frames", None, "Video frames in the clip (default: to the end).")
flags.DEFINE_string("evaluation_json", None, "Draw the confusion matrix of this evaluation JSON instead.")
flags.DEFINE_string("title", "", "Title above the picture.")


def main(argv):
    del argv
    if FLAGS.evaluation_json:
        print(plot_evaluation(FLAGS.evaluation_json, FLAGS.output, FLAGS.title))
        return
    if bool(FLAGS.input) == bool(FLAGS.clip_id and FLAGS.data):
        raise app.UsageError("give either --input or --data with --clip_id (or --evaluation_json)")
    model = load_clip_model(FLAGS.model)
    try:
        if FLAGS.input:
            faces = align_video_clip(FLAGS.input, model, FLAGS.first_frame, FLAGS.num_video_frames)
            title = FLAGS.title or f"{FLAGS.input}, from frame {FLAGS.first_frame}"
            explanation = explain_clip(model, faces, FLAGS.first_frame)
        else:
            faces, label_name = read_tfrecord_clip(FLAGS.data, FLAGS.clip_id, FLAGS.split, model)
            title = FLAGS.title or f"clip {FLAGS.clip_id} (true class {label_name})"
            explanation = explain_clip(model, faces)
    except (InputError, NoFaceError, AlignmentMismatchError) as error:
        sys.exit(f"visualize: {error}")
    plot_explanation(explanation, FLAGS.output, title)
    print(FLAGS.output)
