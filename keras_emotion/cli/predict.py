"""Predicts the emotion of every face in a video (or a folder of frames) and writes JSON.

    keras-emotion predict --model runs/demo/trained --input demo_corpus/demo_sequence.avi \
        --output prediction.json

--model is a trained-model folder (model_info.json + model.keras) or an exported SavedModel
(a version folder, or the TF Serving model folder holding numbered versions); without it the
model shipped in the package is used (keras_emotion.pretrained). Faces are
tracked through the video and classified in sliding windows; see
keras_emotion.inference.predictor for the JSON written. Prints one line per tracked face.

Faces are detected on every --detect_every-th frame (10) and followed in between; --detect_every 1
detects on every frame (the slower path of earlier versions).

On request it also writes the tables (--csv DIR: frames.csv, one row per face per processed
frame; tracks.csv; windows.csv), a timeline picture (--timeline OUT.png) and the video with each
face's box, track, label and probability bars (--annotated_video OUT.mp4); see
keras_emotion.inference.results. In Python: `keras_emotion.predict(path)`.

--input may be live: a camera index (0) or a stream URL (rtsp://, http://, ...). Each window is
then printed as a JSON line as soon as it is predicted (or written to --jsonl, any input), and
Ctrl-C stops reading: the tracks so far are finished and every requested file is written
("interrupted": true). --display shows the annotated frames where a display exists.

A folder holding videos (found recursively by extension) is processed video by video:
--output is then the output folder, which receives one result folder per video (prediction.json
and the CSV tables) and summary.csv; a rerun skips the videos done (keras_emotion.inference.batch).
"""

import contextlib
import dataclasses
import os
import sys

from absl import flags

from keras_emotion.data.video import InputError, is_stream
from keras_emotion.inference import PredictConfig, default_alignment, load_clip_model, predict_video
from keras_emotion.inference.batch import SUMMARY_FILE, list_videos, predict_folder
from keras_emotion.inference.live import LiveDisplay, Observers, WindowLines, stop_on_signals
from keras_emotion.inference.results import VideoPrediction
from keras_emotion.pretrained import PRETRAINED_MODEL_DIR

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "model", PRETRAINED_MODEL_DIR, "Trained-model folder or SavedModel folder; default the model shipped in the package."
)
flags.DEFINE_string("input", None, "Video file, folder of frames, image, or folder of videos (see above).", required=True)
flags.DEFINE_string("output", None, "JSON file to write.")
flags.DEFINE_string("csv", None, "Folder to write frames.csv, tracks.csv and windows.csv into.")
flags.DEFINE_string("timeline", None, "PNG to draw each track's probabilities and frame importance over time into.")
flags.DEFINE_string("annotated_video", None, "Video (.mp4, .avi) to write the frames with each face's box and label into.")
flags.DEFINE_string("jsonl", None, "File to append each window to as a JSON line as it is predicted ('-': standard output; the default for live input).")
flags.DEFINE_bool("display", False, "Show the annotated frames in a window while predicting (where a display exists).")
flags.DEFINE_integer("window", None, "Frames per window (default: the model's frames per clip, or 16).")
flags.DEFINE_integer("stride", None, "Frames between window starts (default: half a window).")
flags.DEFINE_integer("frame_step", 1, "Process every n-th frame only (for long videos).")
flags.DEFINE_integer("max_side", 1280, "Frames are downscaled to at most this many pixels on their longer side.")
flags.DEFINE_integer("upsample", None, "Detector upsampling (default: as in the model's training data).")
flags.DEFINE_bool("cnn_fallback", False, "Run dlib's CNN detector on frames where HOG finds no face (slow).")
flags.DEFINE_integer("max_missed", 10, "Frames a face may go undetected before its track ends.")
flags.DEFINE_integer(
    "min_detections", 3, "Tracks detected in fewer frames are dropped; a shorter input (a picture) needs a face in each frame."
)
flags.DEFINE_integer(
    "detect_every", PredictConfig.detect_every,
    "Detect faces on every n-th processed frame and follow them in between (1: detect on every frame).",
)
flags.DEFINE_float(
    "max_appearance_change", PredictConfig.max_appearance_change,
    "A followed face whose aligned face changes more than this (mean gray difference) is detected again.",
)
flags.DEFINE_bool("reidentify", PredictConfig.reidentify, "A face that comes back after its track ended gets its id again (dlib face descriptors).")
flags.DEFINE_float("max_identity_distance", PredictConfig.max_identity_distance, "Largest face-descriptor distance of one person.")
flags.DEFINE_integer("num_frames", None, "SavedModel only: frames given per window (default: all of them).")
flags.DEFINE_list("class_names", None, "SavedModel only: class names, if the model does not tell them.")


def main(argv):
    del argv
    live = is_stream(FLAGS.input)
    jsonl = FLAGS.jsonl or ("-" if live else None)
    outputs = {"--output": FLAGS.output, "--csv": FLAGS.csv, "--timeline": FLAGS.timeline,
               "--annotated_video": FLAGS.annotated_video, "--jsonl": jsonl}
    if not any(outputs.values()):
        sys.exit(f"predict: nothing to write; give at least one of {', '.join(outputs)}")
    if live and FLAGS.annotated_video:
        sys.exit(f"predict: {FLAGS.input} is live: it cannot be read again to write --annotated_video")
    batch = os.path.isdir(FLAGS.input) and bool(list_videos(FLAGS.input))
    if batch and (not FLAGS.output or FLAGS.csv or FLAGS.timeline or FLAGS.annotated_video):
        sys.exit(f"predict: {FLAGS.input} holds videos: give the output folder as --output (and no --csv, --timeline, --annotated_video)")
    config = PredictConfig(
        window=FLAGS.window,
        stride=FLAGS.stride,
        frame_step=FLAGS.frame_step,
        max_side=FLAGS.max_side,
        max_missed=FLAGS.max_missed,
        min_detections=FLAGS.min_detections,
        detect_every=FLAGS.detect_every,
        max_appearance_change=FLAGS.max_appearance_change,
        reidentify=FLAGS.reidentify,
        max_identity_distance=FLAGS.max_identity_distance,
    )
    model = load_clip_model(FLAGS.model, FLAGS.num_frames, FLAGS.class_names)
    alignment = dataclasses.replace(default_alignment(model), cnn_fallback=FLAGS.cnn_fallback)
    if FLAGS.upsample is not None:
        alignment = dataclasses.replace(alignment, upsample=FLAGS.upsample)
    if batch:
        try:
            summary = predict_folder(FLAGS.input, FLAGS.output, model, config, alignment)
        except InputError as error:
            sys.exit(f"predict: {error}")
        done = summary["status"].str.startswith("done")
        print(f"{FLAGS.input}: {summary.loc[done, 'video'].nunique()} video(s) done, "
              f"{int((~done).sum())} failed -> {os.path.join(FLAGS.output, SUMMARY_FILE)}")
        return
    stopping = "predict: stopping; finishing the tracks so far and writing them (Ctrl-C again to abort)"
    try:
        with _window_lines(jsonl) as lines, stop_on_signals(stopping) as stop:
            observers = [lines] if lines else []
            observers += [LiveDisplay(model.class_names)] if FLAGS.display else []
            prediction = predict_video(FLAGS.input, model, config, alignment, observer=Observers(*observers), stop=stop)
        result = VideoPrediction(prediction)
        written = [result.to_json(FLAGS.output)] if FLAGS.output else []
        written += result.to_csv(FLAGS.csv) if FLAGS.csv else []
        written += [result.plot_timeline(FLAGS.timeline)] if FLAGS.timeline else []
        written += [result.write_annotated_video(FLAGS.annotated_video)] if FLAGS.annotated_video else []
    except InputError as error:
        sys.exit(f"predict: {error}")
    stats = prediction["stats"]
    ended = " (stopped)" if prediction["interrupted"] else " (the stream ended)" if live else ""
    print(
        f"{FLAGS.input}: {stats['frames_read']} frames read{ended}, {stats['frames_processed']} processed, "
        f"{len(prediction['tracks'])} face track(s) -> {', '.join(written) or 'standard output'}",
        file=sys.stderr if jsonl == "-" else sys.stdout,
    )
    if jsonl == "-":  # standard output holds the JSON lines only
        return
    for track in prediction["tracks"]:
        print(
            f"  track {track['track']}: frames {track['first_frame']}-{track['last_frame']}, "
            f"{len(track['windows'])} window(s), {track['label']} ({track['probabilities'][track['label']]:.0%})"
        )
    for track in prediction["dropped_tracks"]:
        print(f"  track {track['track']} dropped (from frame {track['first_frame']}): {track['reason']}")
    if not prediction["tracks"] and not prediction["dropped_tracks"]:
        print("  no face detected in any processed frame")


@contextlib.contextmanager
def _window_lines(path):
    """A `WindowLines` writing to `path` ("-": standard output), or None without a path."""
    if path is None:
        yield None
    elif path == "-":
        yield WindowLines(sys.stdout)
    else:
        with open(path, "a", encoding="utf-8") as file:
            yield WindowLines(file)
