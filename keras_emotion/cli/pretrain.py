"""Pre-trains a face backbone on FER2013 (and more class-folder corpora) (see keras_emotion.training.pretrain).

    keras-emotion pretrain --backbone compact_wide --image_size 48 --epochs 30
    python scripts/pretrain_backbone.py ...          # the same command

--input is the FER2013 folder (default `../shared/data/fer2013` of the current folder). Writes
`<output_dir>/<backbone>_fer2013.weights.h5` (the backbone's weights at the best validation
accuracy; give it to ModelConfig(backbone=..., backbone_weights=...)) and
`<output_dir>/<backbone>_fer2013.json` (classes, image size, per-epoch history); default
`<output_dir>`: `runs/pretrain` in the current folder. Rerunning the same command after a crash
resumes from `<output_dir>/backup`.
"""

import os
import sys

from absl import app, flags

from keras_emotion.cli import SHARED_DATA, config_from_flags, define_alias
from keras_emotion.data.video import InputError
from keras_emotion.training.optimizers import BACKBONE_OPTIMIZERS
from keras_emotion.training.pretrain import PRETRAINABLE_BACKBONES, PretrainConfig, pretrain

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "input", os.path.join(SHARED_DATA, "fer2013"), "FER2013 folder: train/<class>/*.jpg and validation/<class>/*.jpg."
)
define_alias("data_dir", "input")
flags.DEFINE_string("output_dir", os.path.join("runs", "pretrain"), "Output folder.")
flags.DEFINE_enum("backbone", "compact", PRETRAINABLE_BACKBONES, "Backbone to pre-train.")
flags.DEFINE_integer("epochs", 30, "Training epochs (the cosine schedule spans them all).")
flags.DEFINE_integer("batch_size", 64, "Images per step.")
flags.DEFINE_integer("image_size", 64, "Side the faces are resized to (a multiple of 16).")
flags.DEFINE_float("learning_rate", 2e-3, "Peak AdamW learning rate.")
flags.DEFINE_integer("seed", 0, "Seed of initialisation, shuffling and augmentation.")
flags.DEFINE_integer("max_per_class", None, "Use at most this many images per class (quick runs).")
flags.DEFINE_float("weight_decay", PretrainConfig.weight_decay, "Decoupled AdamW weight decay.")
flags.DEFINE_float("ferplus_weight", 0.0, "Blend of the FER+ vote distribution into the FER2013 targets (0..1).")
flags.DEFINE_list("extra_data_dirs", [], "More class-folder corpora to train on (e.g. ExpW, SFEW); part held out.")
flags.DEFINE_float("backbone_lr_multiplier", 1.0, "Backbone learning rate / classifier learning rate (0.02 for dlib_resnet).")
flags.DEFINE_enum("backbone_optimizer", PretrainConfig.backbone_optimizer, BACKBONE_OPTIMIZERS,
                  "The backbone's optimizer: adamw, or lamb (steps relative to each weight tensor's norm).")
flags.DEFINE_string("initial_weights", None, "Backbone weights to start from (continue an earlier run's fine-tuning).")
flags.DEFINE_float("holdout_fraction", PretrainConfig.holdout_fraction, "Part of each extra corpus held out.")


def main(argv):
    del argv
    config = config_from_flags(PretrainConfig, __name__, data_dir=FLAGS.input)
    try:
        result = pretrain(config, verbose=1 if sys.stdout.isatty() else 2)
    except InputError as error:
        raise app.UsageError(str(error)) from None
    report = result.report
    print(
        f"best epoch {report['best_epoch']}/{report['epochs']}: validation accuracy "
        f"{report['best_val_accuracy']:.4f} -> {result.weights_path} ({result.report_path})"
    )
