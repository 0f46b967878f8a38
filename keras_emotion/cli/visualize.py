"""Draws the paper's Fig. 2 for one clip, or the confusion matrix of an evaluation.

    # a clip of preprocessed TFRecords, by id
    keras-emotion visualize --model runs/demo/trained --tfrecords runs/demo/tfrecords \
        --clip_id happy_val_000 --output fig2.png
    # frames 40..55 of a video
    keras-emotion visualize --model runs/demo/trained --video demo_corpus/demo_sequence.avi \
        --first_frame 40 --num_video_frames 16 --output fig2.png
    # the confusion matrix of keras-emotion evaluate's JSON
    keras-emotion visualize --evaluation_json runs/demo/evaluation/evaluation.json --output cm.png

See keras_emotion.inference.visualize for what the picture shows.
"""

import sys

from absl import app, flags

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
from keras_emotion.pretrained import PRETRAINED_MODEL_DIR

FLAGS = flags.FLAGS
flags.DEFINE_string("output", None, "PNG file to write.", required=True)
flags.DEFINE_string(
    "model", PRETRAINED_MODEL_DIR, "Trained-model folder (model_info.json + model.keras); default the shipped model."
)
flags.DEFINE_string("tfrecords", None, "TFRecord folder or glob of shards holding --clip_id.")
flags.DEFINE_string("split", "*", "Split whose shards are searched when --tfrecords is a folder.")
flags.DEFINE_string("clip_id", None, "Id of the clip in --tfrecords.")
flags.DEFINE_string("video", None, "Video file or folder of frames (aligned with the model's face aligner).")
flags.DEFINE_integer("first_frame", 0, "First video frame of the clip.")
flags.DEFINE_integer("num_video_frames", None, "Video frames in the clip (default: to the end).")
flags.DEFINE_string("evaluation_json", None, "Draw the confusion matrix of this evaluation JSON instead.")
flags.DEFINE_string("title", "", "Title above the picture.")


def main(argv):
    del argv
    if FLAGS.evaluation_json:
        print(plot_evaluation(FLAGS.evaluation_json, FLAGS.output, FLAGS.title))
        return
    if bool(FLAGS.video) == bool(FLAGS.clip_id and FLAGS.tfrecords):
        raise app.UsageError("give either --video or --tfrecords with --clip_id (or --evaluation_json)")
    model = load_clip_model(FLAGS.model)
    try:
        if FLAGS.video:
            faces = align_video_clip(FLAGS.video, model, FLAGS.first_frame, FLAGS.num_video_frames)
            title = FLAGS.title or f"{FLAGS.video}, from frame {FLAGS.first_frame}"
            explanation = explain_clip(model, faces, FLAGS.first_frame)
        else:
            faces, label_name = read_tfrecord_clip(FLAGS.tfrecords, FLAGS.clip_id, FLAGS.split)
            title = FLAGS.title or f"clip {FLAGS.clip_id} (true class {label_name})"
            explanation = explain_clip(model, faces)
    except (InputError, NoFaceError) as error:
        sys.exit(f"visualize: {error}")
    plot_explanation(explanation, FLAGS.output, title)
    print(FLAGS.output)
