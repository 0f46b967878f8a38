"""Preprocesses a face-video corpus into aligned-face TFRecord shards (see keras_emotion.data.preprocess).

    keras-emotion preprocess --dataset ck48 --input ../shared/data/ck48/CK+48 --val_fraction 0.2

Writes `<output>/<split>-NNNNN.tfrecord`, `manifest.json` and `report.json`; rerunning the same
command resumes an interrupted run. Prints the report summary.
"""

import os
import signal
import sys

from absl import app, flags

from keras_emotion.data.datasets import DATASET_KINDS, load_dataset, split_by_subject
from keras_emotion.data.faces import AlignmentConfig
from keras_emotion.data.preprocess import PreprocessConfig, preprocess_corpus
from keras_emotion.files import OutputDirInUseError, OutputDirLock

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", None, DATASET_KINDS, "Layout of the corpus.")
flags.DEFINE_string("input", None, "Corpus folder (the CSV file for --dataset=csv).")
flags.DEFINE_string("output", None, "Output folder; default tfrecords/<dataset> in the repository.")
flags.DEFINE_integer("workers", os.cpu_count() or 1, "Worker processes aligning faces.")
flags.DEFINE_enum("landmarks", "68", ["68", "5"], "dlib shape predictor: 68 or 5 landmarks.")
flags.DEFINE_bool("no_cnn_fallback", False, "Do not run the CNN face detector where HOG finds no face.")
flags.DEFINE_integer("upsample", 1, "Detector upsampling (0 is much faster and enough for CK+48).")
flags.DEFINE_float(
    "min_face_fraction",
    AlignmentConfig.min_face_fraction,
    "Smallest face to find, as a fraction of the frame's shorter side: large frames are downscaled for "
    "detection accordingly (0: detect at full resolution).",
)
flags.DEFINE_float("eye_level", AlignmentConfig.eye_level, "Height of the aligned eye centres (fraction of the face side).")
flags.DEFINE_float(
    "eye_distance", AlignmentConfig.eye_distance, "Distance between the aligned eye centres (fraction of the face side)."
)
flags.DEFINE_integer("shard_mb", 64, "Shard size bound in MiB.")
flags.DEFINE_list("class_names", None, "Classes in label order; default the sorted labels found.")
flags.DEFINE_list("splits", None, "Subject-wise split as name=fraction pairs, e.g. train=0.7,val=0.15,test=0.15.")
flags.DEFINE_float("val_fraction", None, "Subject-wise split into train and val with this share of clips in val.")
flags.DEFINE_integer("folds", None, "Subject-wise split into this many folds, fold0 .. fold{k-1}.")
flags.DEFINE_integer("seed", 0, "Seed of the subject-wise split.")
flags.mark_flags_as_required(["dataset", "input"])


def _split_fractions() -> dict | None:
    """The --splits / --val_fraction fractions, or None when neither is given."""
    if FLAGS.splits and FLAGS.val_fraction is not None:
        raise app.UsageError("give --splits or --val_fraction, not both")
    if FLAGS.val_fraction is not None:
        return {"train": 1.0 - FLAGS.val_fraction, "val": FLAGS.val_fraction}
    if not FLAGS.splits:
        return None
    fractions = {}
    for item in FLAGS.splits:
        name, _, value = item.partition("=")
        try:
            fractions[name.strip()] = float(value)
        except ValueError:
            raise app.UsageError(f"--splits: {item!r} is not name=fraction") from None
    return fractions


def main(argv):
    del argv
    # SIGTERM (timeout, kill, Slurm, docker stop) stops the run like Ctrl-C: the open shards
    # are dropped and the workers stopped (complete shards stay for the next run).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    fractions = _split_fractions()
    if fractions is not None and FLAGS.folds is not None:
        raise app.UsageError("give --folds or a split by fractions, not both")
    try:
        dataset = load_dataset(FLAGS.dataset, FLAGS.input, FLAGS.class_names)
        clips = dataset.clips
        if fractions is not None or FLAGS.folds is not None:
            clips = split_by_subject(clips, fractions=fractions, folds=FLAGS.folds, seed=FLAGS.seed)
    except ValueError as error:  # InputError included: a bad --input or split flag
        raise app.UsageError(str(error)) from None
    config = PreprocessConfig(
        alignment=AlignmentConfig(
            landmarks=int(FLAGS.landmarks),
            cnn_fallback=not FLAGS.no_cnn_fallback,
            upsample=FLAGS.upsample,
            min_face_fraction=FLAGS.min_face_fraction,
            eye_level=FLAGS.eye_level,
            eye_distance=FLAGS.eye_distance,
        ),
        shard_bytes=FLAGS.shard_mb * 2**20,
    )
    output = FLAGS.output or os.path.join(REPO_ROOT, "tfrecords", FLAGS.dataset)
    print(f"{len(clips)} clips of {len(dataset.class_names)} classes -> {output}")
    try:
        with OutputDirLock(output, "preprocess"):
            report = preprocess_corpus(clips, output, config, FLAGS.workers, dataset.class_names, dataset.skipped)
    except OutputDirInUseError as error:
        sys.exit(f"preprocess: {error}")
    print(report.summary())
