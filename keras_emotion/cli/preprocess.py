"""Preprocesses a face-video corpus into aligned-face TFRecord shards (see keras_emotion.data.preprocess).

    keras-emotion preprocess --dataset ck48 --input ../shared/data/ck48/CK+48 --val_fraction 0.2
    keras-emotion preprocess --dataset afew --input /data/AFEW --runner beam -- --direct_num_workers=2

Faces are aligned as those the shipped model was trained on (`--like_model` another model; the
`--landmarks`, `--eye_level`, `--eye_distance` flags override its framing), so that the model
and the data agree (evaluation refuses data framed otherwise than the model).

Writes `<output_dir>/<split>-NNNNN.tfrecord`, `manifest.json` and `report.json` (default
`<output_dir>`: `tfrecords/<dataset>` in the current folder); rerunning the same command
resumes an interrupted run. Prints the report summary.

--runner beam runs the same per-clip preprocessing as an Apache Beam pipeline
(keras_emotion.data.beam_pipeline; `pip install 'keras_emotion[beam]'`): the arguments after
`--` are Beam pipeline options (e.g. `--runner=DataflowRunner --project=...`; none: the
DirectRunner in this process). A Beam run bounds shards by count (--num_shards), not by
size (--shard_mb), does not resume (its output folder must hold no shards), ignores --workers
(the runner's options choose its parallelism) and writes the clips that failed to
`<output_dir>/failures.jsonl` too. On the same clips it writes the same shards and manifest as
the local runner when both write one shard per split.
"""

import os
import signal
import sys

from absl import app, flags

from keras_emotion.cli import define_alias
from keras_emotion.data.datasets import DATASET_KINDS, Dataset, load_dataset, split_by_subject
from keras_emotion.data.faces import AlignmentConfig
from keras_emotion.data.preprocess import PreprocessConfig, Report, preprocess_corpus
from keras_emotion.files import OutputDirInUseError, OutputDirLock
from keras_emotion.inference.clip_model import read_clip_model_info
from keras_emotion.models.info import FRAMING_FIELDS
from keras_emotion.pretrained import PRETRAINED_MODEL_DIR

RUNNERS = ("local", "beam")

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", None, DATASET_KINDS, "Layout of the corpus.")
flags.DEFINE_string("input", None, "Corpus folder (the CSV file for --dataset=csv).")
flags.DEFINE_string("output_dir", None, "Output folder; default tfrecords/<dataset> in the current folder.")
define_alias("output", "output_dir")
flags.DEFINE_enum("runner", "local", RUNNERS, "local: worker processes on this machine; beam: an Apache Beam pipeline.")
flags.DEFINE_integer("workers", os.cpu_count() or 1, "Worker processes aligning faces (local runner).")
flags.DEFINE_string(
    "like_model",
    PRETRAINED_MODEL_DIR,
    "Align faces as the faces this model was trained on (a trained-model folder or an export; default the "
    "shipped model): its landmarks, eye level and eye distance, each overridden by its own flag.",
)
flags.DEFINE_enum("landmarks", None, ["68", "5"], "dlib shape predictor: 68 or 5 landmarks (default: --like_model's).")
flags.DEFINE_bool("no_cnn_fallback", False, "Do not run the CNN face detector where HOG finds no face.")
flags.DEFINE_integer("upsample", 1, "Detector upsampling (0 is much faster and enough for CK+48).")
flags.DEFINE_float(
    "min_face_fraction",
    AlignmentConfig.min_face_fraction,
    "Smallest face to find, as a fraction of the frame's shorter side: large frames are downscaled for "
    "detection accordingly (0: detect at full resolution).",
)
flags.DEFINE_float(
    "eye_level", None, "Height of the aligned eye centres (fraction of the face side; default: --like_model's)."
)
flags.DEFINE_float(
    "eye_distance", None, "Distance between the aligned eye centres (fraction of the face side; default: --like_model's)."
)
flags.DEFINE_integer("shard_mb", 64, "Shard size bound in MiB (local runner).")
flags.DEFINE_integer("num_shards", 0, "Shards per split of the Beam runner; 0: the runner chooses.")
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


def _alignment() -> AlignmentConfig:
    """The AlignmentConfig of the flags: the framing (FRAMING_FIELDS) of --like_model's training
    faces where no flag sets it, the detector settings of the flags."""
    try:
        model_alignment = read_clip_model_info(FLAGS.like_model).alignment
    except (OSError, ValueError) as error:
        raise app.UsageError(f"--like_model: {error}") from None
    framing = {name: getattr(model_alignment or AlignmentConfig(), name) for name in FRAMING_FIELDS}
    for name in FRAMING_FIELDS:
        if FLAGS[name].value is not None:
            framing[name] = int(FLAGS[name].value) if name == "landmarks" else FLAGS[name].value
    return AlignmentConfig(
        cnn_fallback=not FLAGS.no_cnn_fallback,
        upsample=FLAGS.upsample,
        min_face_fraction=FLAGS.min_face_fraction,
        **framing,
    )


def main(argv):
    beam_options = argv[1:]
    if beam_options and FLAGS.runner != "beam":
        raise app.UsageError(f"unexpected arguments {beam_options}: only --runner beam takes Beam options (after --)")
    if FLAGS["num_shards"].present and FLAGS.runner != "beam":
        raise app.UsageError("--num_shards is for --runner beam; the local runner bounds shards by --shard_mb")
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
    config = PreprocessConfig(alignment=_alignment(), shard_bytes=FLAGS.shard_mb * 2**20)
    output_dir = FLAGS.output_dir or os.path.join("tfrecords", FLAGS.dataset)
    print(f"{len(clips)} clips of {len(dataset.class_names)} classes -> {output_dir}")
    try:
        with OutputDirLock(output_dir, "preprocess"):
            if FLAGS.runner == "beam":
                report = _run_beam(clips, output_dir, config, dataset, beam_options)
            else:
                report = preprocess_corpus(clips, output_dir, config, FLAGS.workers, dataset.class_names, dataset.skipped)
    except OutputDirInUseError as error:
        sys.exit(f"preprocess: {error}")
    print(report.summary())


def _run_beam(clips: list, output_dir: str, config: PreprocessConfig, dataset: Dataset, options: list) -> Report:
    """`run_beam_preprocessing` of `clips` with the Beam pipeline `options` (none: DirectRunner)."""
    # Apache Beam is an optional extra: imported only when asked for.
    from apache_beam.options.pipeline_options import PipelineOptions

    from keras_emotion.data.beam_pipeline import run_beam_preprocessing

    pipeline_options = PipelineOptions(options) if options else None
    try:
        return run_beam_preprocessing(
            clips, output_dir, dataset.class_names, config, FLAGS.num_shards, pipeline_options, dataset.skipped
        )
    except ValueError as error:  # an output folder holding shards already
        sys.exit(f"preprocess: {error}")
