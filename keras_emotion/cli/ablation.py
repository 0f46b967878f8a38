"""Runs the paper's ablation tables by k-fold cross-validation over subjects (see
keras_emotion.training.ablation).

    keras-emotion ablation                           # both tables on CK+48 from cached maps
    keras-emotion ablation --rows tp,tp_sa --max_folds 2 --seeds 1   # a quick partial table
    keras-emotion ablation --data tfrecords/ck48 --output_dir runs/ablation_images \
        --backbone compact --image_size 64                        # end to end from images
    keras-emotion ablation --dataset ck48 --input ../shared/data/ck48/CK+48 ...
    python scripts/ablation.py ...                   # the same command

By default the heads train on the shipped model's frozen backbone maps of CK+48 (`--ck48_dir`,
default `../shared/data/ck48/CK+48` of the current folder; `--model`, `--cached_views`). With
--data (or --dataset/--input, preprocessed first into <output_dir>/tfrecords, resumable) every
run trains end to end from the images. Rerunning the same command skips finished runs. Writes
<output_dir>/results.md, results.json and results.png.
"""

import functools
import os
import signal
import sys
from typing import Optional

from absl import app, flags

from keras_emotion.cli import SHARED_DATA, define_alias
from keras_emotion.data.datasets import DATASET_KINDS, load_dataset
from keras_emotion.data.faces import AlignmentConfig
from keras_emotion.data.preprocess import PreprocessConfig, preprocess_corpus
from keras_emotion.files import OutputDirInUseError, OutputDirLock
from keras_emotion.models.config import BACKBONES
from keras_emotion.training import feature_cache
from keras_emotion.training.ablation import ROW_NAMES, AblationConfig, run_ablation

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "ck48_dir", os.path.join(SHARED_DATA, "ck48", "CK+48"), "CK+48 folder of the cached-maps route (the default)."
)
flags.DEFINE_string("model", None, "Trained-model folder whose frozen backbone makes the maps (default: the shipped model).")
define_alias("backbone_model", "model")
flags.DEFINE_integer("cached_views", len(feature_cache.VIEWS), "Fixed views of each frame cached (frame, mirror, 0.9 zoom, its mirror).")
flags.DEFINE_string("data", None, "Train end to end from this preprocessed corpus folder; all its clips are split into folds.")
define_alias("tfrecords", "data")
flags.DEFINE_enum("dataset", None, DATASET_KINDS, "Preprocess this corpus layout first (with --input).")
flags.DEFINE_string("input", None, "Corpus folder to preprocess (with --dataset).")
flags.DEFINE_integer("workers", os.cpu_count() or 1, "Preprocessing worker processes.")
flags.DEFINE_integer("upsample", 0, "Face detector upsampling when preprocessing (0 suffices for CK+48).")
flags.DEFINE_string("output_dir", "runs/ablation", "Folder of folds, runs and tables.")
flags.DEFINE_list("rows", list(ROW_NAMES), f"Rows to run, some of {','.join(ROW_NAMES)}.")
flags.DEFINE_integer("folds", 10, "k of the k-fold split by subject.")
flags.DEFINE_integer("max_folds", None, "Run only the first folds, for a quick table.")
flags.DEFINE_integer("seeds", 3, "Runs per fold and row (seeds 0 .. seeds-1).")
flags.DEFINE_integer("split_seed", 0, "Seed of the assignment of subjects to folds.")
flags.DEFINE_integer("epochs", 30, "Training epochs per run.")
flags.DEFINE_enum("backbone", "compact", BACKBONES, "Frame backbone (end to end from images).")
flags.DEFINE_string("backbone_weights", None, "Backbone weights file (end to end from images).")
flags.DEFINE_integer("image_size", 64, "Side of the face crop fed to the backbone (end to end from images).")
flags.DEFINE_integer("num_frames", 3, "Frames sampled per clip in training (CK+48 clips have 3).")
flags.DEFINE_integer("batch_size", 8, "Clips per training step.")
flags.DEFINE_float("backbone_lr", AblationConfig.backbone_lr, "Initial learning rate of the backbone (raise it for a backbone without pretrained weights).")
flags.DEFINE_float("head_lr", AblationConfig.head_lr, "Initial learning rate of the rest.")
flags.DEFINE_bool("keep_models", False, "Keep every run's trained model (several MB each).")


def _tfrecords() -> Optional[str]:
    """--data, the folder --dataset/--input are preprocessed into, or None (cache route)."""
    if FLAGS.data is not None and FLAGS.dataset is not None:
        raise app.UsageError("give --data, or --dataset with --input, not both")
    if FLAGS.data is None and FLAGS.dataset is None:
        return None
    if FLAGS.data is not None:
        return FLAGS.data
    if FLAGS.input is None:
        raise app.UsageError("--dataset needs --input")
    output = os.path.join(FLAGS.output_dir, "tfrecords")
    dataset = load_dataset(FLAGS.dataset, FLAGS.input)
    config = PreprocessConfig(alignment=AlignmentConfig(upsample=FLAGS.upsample))
    report = preprocess_corpus(dataset.clips, output, config, FLAGS.workers, dataset.class_names, dataset.skipped)
    print(report.summary())
    return output


def main(argv):
    del argv
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stops like Ctrl-C (see cli/preprocess.py)
    try:
        with OutputDirLock(FLAGS.output_dir, "ablation"):
            table = _run()
    except OutputDirInUseError as error:
        sys.exit(f"ablation: {error}")
    with open(table) as file:
        print(file.read())
    print(f"wrote {table}")


def _run() -> str:
    """Preprocesses if asked, runs the ablation; returns the path of results.md."""
    try:
        tfrecords = _tfrecords()
        config = AblationConfig(
            tfrecords=tfrecords,
            output_dir=FLAGS.output_dir,
            ck48_dir=None if tfrecords else FLAGS.ck48_dir,
            backbone_model=FLAGS.model,
            cached_views=FLAGS.cached_views,
            rows=FLAGS.rows,
            folds=FLAGS.folds,
            max_folds=FLAGS.max_folds,
            seeds=FLAGS.seeds,
            split_seed=FLAGS.split_seed,
            epochs=FLAGS.epochs,
            backbone=FLAGS.backbone,
            backbone_weights=FLAGS.backbone_weights,
            image_size=FLAGS.image_size,
            num_frames=FLAGS.num_frames,
            batch_size=FLAGS.batch_size,
            backbone_lr=FLAGS.backbone_lr,
            head_lr=FLAGS.head_lr,
            keep_models=FLAGS.keep_models,
        )
    except ValueError as error:  # InputError included: a bad --input, --rows or --folds
        raise app.UsageError(str(error)) from None
    return run_ablation(config, log=functools.partial(print, flush=True))  # progress shows in a log file too

