"""Trains the shipped video model on FER2013 + CK+48 face crops (keras_emotion.training.face_clips).

    keras-emotion train-face-clips \
        --backbone_weights runs/pretrain_wide/compact_wide_fer2013.weights.h5 --output_dir runs/shipped
    python scripts/train_face_clips.py ...          # the same command

The corpora default to `../shared/data/{fer2013,ck48/CK+48}` of the current folder. Writes a
trained-model directory (model_info.json + model.float16.npz) and report.json with FER2013
validation figures and, with --held_out_folds, CK+48 figures on unseen subjects. Rerunning the
same command after a crash resumes from `<output_dir>/backup`.

With --cross_validate the recipe runs once per CK+48 subject fold, that fold held out
(`<output_dir>/fold<k>/`), and `<output_dir>/cross_validation.json` gets mean +- std figures;
a rerun skips the folds already done.
"""

import os
import sys

from absl import app, flags

from keras_emotion.cli import SHARED_DATA, config_from_flags
from keras_emotion.data.video import InputError
from keras_emotion.training.face_clips import FaceClipsConfig, cross_validate, train_face_clips
from keras_emotion.training.optimizers import BACKBONE_OPTIMIZERS

FLAGS = flags.FLAGS
flags.DEFINE_string("fer2013_dir", os.path.join(SHARED_DATA, "fer2013"), "FER2013 folder (train/, validation/).")
flags.DEFINE_string("ck48_dir", os.path.join(SHARED_DATA, "ck48", "CK+48"), "CK+48 folder (<class>/S###_###_#.png).")
flags.DEFINE_string("backbone_weights", None, "Pre-trained backbone weights (keras-emotion pretrain).")
flags.DEFINE_string("backbone", FaceClipsConfig.backbone, "Backbone of those weights.")
flags.DEFINE_integer("image_size", FaceClipsConfig.image_size, "Face side the backbone was pre-trained at.")
flags.DEFINE_string("output_dir", None, "Output folder.")
flags.DEFINE_integer("epochs", FaceClipsConfig.epochs, "Passes over the training clips.")
flags.DEFINE_integer("num_heads", FaceClipsConfig.num_heads, "Spatial-attention heads.")
flags.DEFINE_float("penalty", FaceClipsConfig.penalty, "Spatial-attention penalty coefficient.")
flags.DEFINE_float("learning_rate", FaceClipsConfig.learning_rate, "Peak AdamW learning rate.")
flags.DEFINE_list("held_out_folds", [], "CK+48 subject folds (0..9) to leave out and evaluate.")
flags.DEFINE_integer("seed", FaceClipsConfig.seed, "Seed of initialisation, folds, shuffling, augmentation.")
flags.DEFINE_integer("max_per_class", None, "At most this many FER2013 images per class (quick runs).")
flags.DEFINE_integer("attention_units", FaceClipsConfig.attention_units, "Hidden size of the attention's scoring MLP.")
flags.DEFINE_float("weight_decay", FaceClipsConfig.weight_decay, "AdamW weight decay.")
flags.DEFINE_integer("ck48_repeats", FaceClipsConfig.ck48_repeats, "Times each CK+48 training clip appears in a pass.")
flags.DEFINE_integer("cached_views", FaceClipsConfig.cached_views,
                     "0: augment images every step; 1..4: train the head on cached backbone maps of that many fixed views.")
flags.DEFINE_string("cache_dir", None, "Folder of the cached maps (default: <output_dir>/feature_cache).")
flags.DEFINE_list(
    "ck48_scored_dirs", [], "Other cuts of --ck48_dir's sequences (e.g. CK+48 as it is) whose held-out clips are scored too."
)
flags.DEFINE_bool("ck48_train_scored_dirs", FaceClipsConfig.ck48_train_scored_dirs,
                  "Train on the training subjects' clips of --ck48_scored_dirs too (CK+48 in several cuts).")
flags.DEFINE_list("extra_image_dirs", [], "More class-folder corpora (ExpW, SFEW) as 1-frame clips, minus their held-out part.")
flags.DEFINE_float("holdout_fraction", FaceClipsConfig.holdout_fraction, "Part of each extra corpus held out (as in pre-training).")
flags.DEFINE_integer("fine_tune_blocks", FaceClipsConfig.fine_tune_blocks,
                     "Train the backbone's last k residual blocks with the head, on cached maps of the layer below them.")
flags.DEFINE_float("backbone_lr_multiplier", FaceClipsConfig.backbone_lr_multiplier,
                   "Those blocks' learning rate, times --learning_rate.")
flags.DEFINE_enum("backbone_optimizer", FaceClipsConfig.backbone_optimizer, BACKBONE_OPTIMIZERS, "Those blocks' optimizer.")
flags.DEFINE_float("ferplus_weight", FaceClipsConfig.ferplus_weight,
                   "Blend of the FER+ vote distribution into the FER2013 targets (0..1), as in pre-training.")
flags.DEFINE_list("teacher_evaluations", [], "evaluation.json files of teacher models on training images (distillation).")
flags.DEFINE_float("teacher_weight", FaceClipsConfig.teacher_weight,
                   "Blend of the teachers' mean probabilities into those images' targets (0..1).")
flags.DEFINE_float("mixup_alpha", FaceClipsConfig.mixup_alpha, "Mixup of training batches, Beta(alpha, alpha); 0: none.")
flags.DEFINE_bool("cross_validate", False, "Run once per CK+48 subject fold, holding it out; summarise.")
flags.mark_flags_as_required(["backbone_weights", "output_dir"])


def main(argv):
    del argv
    config = config_from_flags(FaceClipsConfig, __name__, held_out_folds=[int(fold) for fold in FLAGS.held_out_folds])
    verbose = 1 if sys.stdout.isatty() else 2
    try:
        if FLAGS.cross_validate:
            summary = cross_validate(config, verbose)
            accuracy, uar = summary["ck48_held_out_accuracy"], summary["ck48_held_out_uar"]
            print(
                f"CK+48 {config.folds}-fold held-out accuracy {accuracy['mean']:.4f} +- {accuracy['std']:.4f}, "
                f"UAR {uar['mean']:.4f} +- {uar['std']:.4f}"
            )
            return
        report = train_face_clips(config, verbose)
    except InputError as error:
        raise app.UsageError(str(error)) from None
    print(f"FER2013 validation accuracy {report['fer2013_validation']['accuracy']:.4f}")
    if report["ck48_held_out"]:
        held_out = report["ck48_held_out"]
        print(f"CK+48 held-out folds {config.held_out_folds}: accuracy {held_out['accuracy']:.4f}, "
              f"UAR {held_out['unweighted_average_recall']:.4f}")

