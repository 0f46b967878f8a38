"""Trains a video emotion model on aligned-face TFRecords (see keras_emotion.training.task).

    keras-emotion train --data tfrecords/afew --val_split val --epochs 30 \
        --backbone compact --backbone_weights runs/pretrain/compact_fer2013.weights.h5 \
        --image_size 64 --output_dir runs/afew_sa_tp

    keras-emotion train --config runs/afew_sa_tp/train_config.json --epochs 70 --output_dir runs/afew_70

--config reads a TrainConfig JSON (the train_config.json every run writes); each flag given on
the command line then overrides its field(s) (see keras_emotion.training.config.TRAIN_OPTIONS;
--data and --val_data set its options train_dir and val_dir).
Writes under --output_dir: train_config.json (the resolved config), history.csv, logs/ (TensorBoard), checkpoints/,
trained/ (model.keras + model_info.json, the best epoch). Rerunning the same command after a
crash resumes from the last finished epoch. With TF_CONFIG set, this process is one worker of a
MultiWorkerMirroredStrategy cluster; otherwise it mirrors over the local GPUs (or the CPU).
"""

import os
import sys

from absl import app, flags

from keras_emotion.cli import define_alias
from keras_emotion.data.integrity import DataIntegrityError
from keras_emotion.data.manifest import read_manifest
from keras_emotion.files import OutputDirInUseError
from keras_emotion.models.config import BACKBONES, SPATIAL_AGGREGATIONS, TEMPORAL_POOLINGS, ModelConfig
from keras_emotion.models.info import AlignmentMismatchError
from keras_emotion.training.callbacks import read_history
from keras_emotion.training.config import MIXED_PRECISION_POLICIES, TRAIN_OPTIONS, TrainConfig, train_config
from keras_emotion.training.run_folder import RunFolder
from keras_emotion.training.task import train

FLAGS = flags.FLAGS
flags.DEFINE_string("config", None, "A TrainConfig JSON (as train_config.json of a run); the flags given override its fields.")
flags.DEFINE_string("data", None, "Folder of the training shards (<split>-NNNNN.tfrecord) and manifest.json.")
define_alias("train_dir", "data")
flags.DEFINE_string("train_split", "train", "Split name of the training shards.")
flags.DEFINE_string("val_data", None, "Folder of the validation shards; default --data.")
define_alias("val_dir", "val_data")
flags.DEFINE_string("val_split", "val", "Split name of the validation shards; empty for no validation.")
flags.DEFINE_integer("num_classes", None, "Number of classes; default the manifest's class_names.")
flags.DEFINE_enum("backbone", ModelConfig.backbone, BACKBONES, "Frame CNN.")
flags.DEFINE_string("backbone_weights", None, "Weights file of the backbone (default: random init).")
flags.DEFINE_enum("spatial", ModelConfig.spatial, SPATIAL_AGGREGATIONS, "Spatial aggregation of the regions.")
flags.DEFINE_integer("heads", ModelConfig.num_heads, "Attention heads (SA) or clusters (SHIFT).")
flags.DEFINE_integer("attention_units", ModelConfig.attention_units, "Hidden size of the SA scoring MLP.")
flags.DEFINE_float("penalty", ModelConfig.penalty, "Coefficient of the SA penalty ||AA^T - I||_F^2.")
flags.DEFINE_enum("temporal", ModelConfig.temporal, TEMPORAL_POOLINGS, "Temporal aggregation.")
flags.DEFINE_float("dropout", ModelConfig.dropout, "Dropout on the frame descriptors.")
flags.DEFINE_integer("num_frames", ModelConfig.num_frames, "Frames sampled per clip.")
flags.DEFINE_integer("image_size", ModelConfig.image_size, "Side of the face crop fed to the backbone (multiple of 16).")
flags.DEFINE_float("crop_fraction", 0.875, "Crop side / side of the resized aligned face.")
flags.DEFINE_bool("color_jitter", False, "Random brightness and contrast per clip when training.")
flags.DEFINE_integer("batch_size", 8, "Global batch size (clips per step over all replicas).")
flags.DEFINE_integer("epochs", TrainConfig.epochs, "Number of epochs.")
flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch; default one pass over the training clips.")
flags.DEFINE_float("backbone_lr", TrainConfig.backbone_lr, "Initial learning rate of the backbone.")
flags.DEFINE_float("head_lr", TrainConfig.head_lr, "Initial learning rate of the other layers.")
flags.DEFINE_float("momentum", TrainConfig.momentum, "SGD momentum.")
flags.DEFINE_float("weight_decay", TrainConfig.weight_decay, "Decoupled weight decay.")
flags.DEFINE_float("restart_epochs", TrainConfig.restart_epochs, "First SGDR period, in epochs.")
flags.DEFINE_float("restart_t_mul", TrainConfig.restart_t_mul, "SGDR: period factor at each restart.")
flags.DEFINE_float("restart_m_mul", TrainConfig.restart_m_mul, "SGDR: amplitude factor at each restart.")
flags.DEFINE_float("restart_alpha", TrainConfig.restart_alpha, "SGDR: floor as a fraction of the initial rate.")
flags.DEFINE_enum("mixed_precision", TrainConfig.mixed_precision, MIXED_PRECISION_POLICIES, "Keras dtype policy.")
flags.DEFINE_integer("seed", TrainConfig.seed, "Seed of the weights, the shuffling and the augmentation.")
flags.DEFINE_string("output_dir", TrainConfig.output_dir, "Folder of checkpoints, logs and the trained model.")
flags.DEFINE_bool(
    "allow_incomplete", False, "Train on data whose preprocessing did not finish (manifest complete: false)."
)
flags.DEFINE_enum("verbose", "auto", ["auto", "0", "1", "2"], "Progress: 1 bar per epoch, 2 one line per epoch.")
# The flag of each training option: the option's name, but --data and --val_data for train_dir and val_dir.
OPTION_FLAGS = {option: {"train_dir": "data", "val_dir": "val_data"}.get(option, option) for option in TRAIN_OPTIONS}


def config_from_flags() -> TrainConfig:
    """The TrainConfig of --config (or of the defaults), with the flags given set on it."""
    base = TrainConfig.from_json(FLAGS.config) if FLAGS.config else None
    options = {
        option: FLAGS[flag].value
        for option, flag in OPTION_FLAGS.items()
        if (FLAGS[flag].present or base is None) and FLAGS[flag].value is not None
    }
    if base is None and not options.get("train_dir"):
        raise app.UsageError("give --config or --data")
    if base is None and options.get("num_classes") is None:
        manifest = read_manifest(options["train_dir"])
        if manifest is None:
            raise app.UsageError(f"{options['train_dir']} has no manifest.json: give --num_classes")
        options["num_classes"] = len(manifest.class_names)
    return train_config(base, **options)


def main(argv):
    del argv
    try:
        config = config_from_flags()
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    verbose = FLAGS.verbose if FLAGS.verbose == "auto" else int(FLAGS.verbose)
    try:
        model, _ = train(config, verbose=verbose)
    except (OutputDirInUseError, DataIntegrityError, AlignmentMismatchError) as error:
        sys.exit(f"train: {error}")
    monitor = "val_accuracy" if config.val_data else "accuracy"
    history = read_history(RunFolder(config.output_dir).history_csv)  # every epoch, resumed runs' too
    print(
        f"{model.name}: best {monitor} of this run {max(float(row[monitor]) for row in history):.4f}; "
        f"trained model in {os.path.join(config.output_dir, 'trained')}"
    )
