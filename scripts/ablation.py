"""Runs the paper's ablation tables by k-fold cross-validation over subjects (see
keras_emotion.training.ablation).

    python scripts/ablation.py --tfrecords tfrecords/ck48 --output_dir runs/ablation
    python scripts/ablation.py --dataset ck48 --input ../shared/data/ck48/CK+48 \
        --rows no_sa,tp_sa --max_folds 2 --seeds 1 --epochs 5     # a quick partial table

With --dataset/--input the corpus is first preprocessed into <output_dir>/tfrecords (resumable).
Rerunning the same command skips finished runs. Writes <output_dir>/ablation.md.
"""

import os
import signal
import sys

from absl import app, flags

from keras_emotion.data.datasets import DATASET_KINDS, load_dataset
from keras_emotion.data.faces import AlignmentConfig
from keras_emotion.data.preprocess import PreprocessConfig, preprocess_corpus
from keras_emotion.files import OutputDirInUseError, OutputDirLock
from keras_emotion.models.config import BACKBONES
from keras_emotion.training.ablation import ROW_NAMES, AblationConfig, run_ablation

FLAGS = flags.FLAGS
flags.DEFINE_string("tfrecords", None, "A preprocessed corpus folder; all its clips are split into folds.")
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
flags.DEFINE_enum("backbone", "compact", BACKBONES, "Frame backbone.")
flags.DEFINE_string("backbone_weights", None, "Backbone weights file (e.g. runs/pretrain/.../backbone.weights.h5).")
flags.DEFINE_integer("image_size", 64, "Side of the face crop fed to the backbone (multiple of 16).")
flags.DEFINE_integer("num_frames", 3, "Frames sampled per clip in training (CK+48 clips have 3).")
flags.DEFINE_integer("batch_size", 8, "Clips per training step.")
flags.DEFINE_float("backbone_lr", AblationConfig.backbone_lr, "Initial learning rate of the backbone (raise it for a backbone without pretrained weights).")
flags.DEFINE_float("head_lr", AblationConfig.head_lr, "Initial learning rate of the rest.")
flags.DEFINE_bool("keep_models", False, "Keep every run's trained model (several MB each).")


def _tfrecords() -> str:
    """--tfrecords, or the folder --dataset/--input are preprocessed into."""
    if (FLAGS.tfrecords is None) == (FLAGS.dataset is None):
        raise app.UsageError("give --tfrecords, or --dataset with --input, not both")
    if FLAGS.tfrecords is not None:
        return FLAGS.tfrecords
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
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stops like Ctrl-C (see preprocess.py)
    try:
        with OutputDirLock(FLAGS.output_dir, "ablation"):
            table = _run()
    except OutputDirInUseError as error:
        sys.exit(f"ablation: {error}")
    with open(table) as file:
        print(file.read())
    print(f"wrote {table}")


def _run() -> str:
    """Preprocesses if asked, runs the ablation; returns the path of ablation.md."""
    try:
        config = AblationConfig(
            tfrecords=_tfrecords(),
            output_dir=FLAGS.output_dir,
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
    return run_ablation(config)


if __name__ == "__main__":
    app.run(main)
