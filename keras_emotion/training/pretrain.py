"""Pre-trains or fine-tunes a frame backbone as a FER2013 expression classifier.

The video model needs a CNN that already knows faces. This module trains a compact one from
scratch on FER2013's 48x48 gray faces, or fine-tunes dlib's face-recognition ResNet
("dlib_resnet*", pre-trained on about 3 million faces) for expressions:

    <data_dir>/{train,validation}/<class>/*.jpg     classes = the train sub-folders, sorted
    [+ extra_data_dirs/<class>/*: ExpW, SFEW; a     matched to those classes by name
       hashed part of each held out]
      -> decode (gray -> 3 channels), resize        uint8 (n, S, S, 3), held in memory
         (`model_input.decode_images`)
      -> targets                                    one-hot, or blended with the FER+ votes
      -> train: shuffle, batch, augment             random crop-zoom, shift, flip, brightness,
                                                    contrast: float32 (B, S, S, 3) in 0..255
      -> backbone                                   (B, h, w, D)
      -> global average -> dropout -> Dense(E)      logits (B, E)
    loss: cross-entropy with label smoothing; AdamW, linear warm-up then cosine decay, the
    backbone at `backbone_lr_multiplier` x the classifier's rate. After each epoch FER2013
    validation and each held-out part are scored, plain and averaged with the mirror image.

Files under `output_dir` (a `run_folder.RunFolder`, locked while the run goes on):

    <backbone>_fer2013.weights.h5 the backbone's weights at the best epoch (best val accuracy);
                                  load with ModelConfig(backbone=..., backbone_weights=...)
    <backbone>_fer2013.json       classes, image size, epochs, per-epoch history, best epoch
    history.csv                   one row per epoch: losses, accuracies, seconds, learning rates
    backup/                       `callbacks.EpochBackup` state; a rerun after a crash or a
                                  kill resumes from it (deleted when training completes)

Each file is written under a temporary name and renamed: the weights after every epoch that
improves on the best validation accuracy, history.csv and the JSON after every epoch.

`average_backbone_weights` writes the mean of several such weights files, from runs that started
from the same weights (a "model soup"; `keras-emotion average-weights`).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import time
import zlib
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_emotion.data.emotions import canonical_emotion
from keras_emotion.data.model_input import decode_images
from keras_emotion.data.image_folders import corpus_names, list_class_folders, list_image_files, list_matched_images
from keras_emotion.data.video import InputError
from keras_emotion.files import atomic_write, write_json_atomically
from keras_emotion.models.backbones import KERAS3_WEIGHTS_SUFFIX, build_backbone
from keras_emotion.models.builder import backbone_variables, head_variables
from keras_emotion.training.callbacks import read_history
from keras_emotion.training.optimizers import group_learning_rates, warmup_cosine_adamw
from keras_emotion.training.run_folder import RunFolder

PRETRAINABLE_BACKBONES = ("compact", "compact_wide", "dlib_resnet", "dlib_resnet_256")
FERPLUS_LABELS_FILE = "ferplus_labels.csv"
FERPLUS_VOTE_PREFIX = "votes_"
TRAIN_SPLIT = "train"
VALIDATION_SPLIT = "validation"


@dataclasses.dataclass
class PretrainConfig:
    """A FER2013 pre-training run.

    Attributes:
        data_dir: folder holding `train/<class>/*.jpg` and `validation/<class>/*.jpg`.
        output_dir: folder receiving the weights, the JSON report and the backup.
        backbone: one of PRETRAINABLE_BACKBONES.
        image_size: S, side the faces are resized to (a multiple of 16; the video model's).
        epochs: training epochs (one epoch = one pass over the training images).
        batch_size: images per step.
        learning_rate: peak AdamW learning rate, reached after `warmup_epochs`.
        warmup_epochs: epochs of linear warm-up from 0, before the cosine decay to 0.
        weight_decay: decoupled AdamW weight decay.
        label_smoothing: label smoothing of the cross-entropy.
        dropout: dropout rate on the pooled features before the classifier.
        min_crop_fraction: augmentation crops a square of side in [this, 1] x S at a random
            place and resizes it back to S (zoom and shift).
        brightness_delta: augmentation adds a brightness in [-delta, delta] (0..255 scale).
        contrast_range: augmentation scales contrast by a factor in this range.
        seed: seed of weight initialisation, shuffling and augmentation.
        max_per_class: if set, use at most this many images per class and split (quick runs).
        ferplus_weight: w; the training target of a FER2013 image is (1 - w) x its one-hot
            FER2013 label + w x its FER+ vote distribution over the same classes
            (`<data_dir>/ferplus_labels.csv`; images without such votes keep the one-hot).
            0 (the default) ignores FER+.
        extra_data_dirs: more folders of class folders (`<dir>/<class>/<image>`, classes
            matched to FER2013's by `emotions.match_class_names`), e.g. ExpW and SFEW. A fixed part of each
            (`holdout_fraction`, chosen by a hash of the file name) is held out and scored
            after every epoch as `val_<folder name>_accuracy`; the rest is trained on.
        holdout_fraction: the part of each extra folder held out.
        backbone_lr_multiplier: the backbone's learning rate is this times `learning_rate`
            (the classifier's); below 1 for a pre-trained backbone (dlib_resnet: 0.02).
        initial_weights: a backbone weights file (e.g. an earlier run's `weights_file`) the
            backbone starts from, to continue fine-tuning with a new schedule; None: the
            backbone's own initialisation (dlib's weights for dlib_resnet*).
        backbone_optimizer: "adamw", or "lamb": the backbone's steps relative to each weight
            tensor's norm (`optimizers.warmup_cosine_adamw`).
    """

    data_dir: str
    output_dir: str
    backbone: str = "compact"
    image_size: int = 64
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 2e-3
    warmup_epochs: float = 1.0
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    dropout: float = 0.3
    min_crop_fraction: float = 0.85
    brightness_delta: float = 25.0
    contrast_range: tuple = (0.8, 1.2)
    seed: int = 0
    max_per_class: Optional[int] = None
    ferplus_weight: float = 0.0
    extra_data_dirs: tuple = ()
    holdout_fraction: float = 0.15
    backbone_lr_multiplier: float = 1.0
    initial_weights: Optional[str] = None
    backbone_optimizer: str = "adamw"

    @property
    def weights_file(self) -> str:
        """Name of the backbone weights file in `output_dir`."""
        return f"{self.backbone}_fer2013.weights.h5"

    @property
    def report_file(self) -> str:
        """Name of the JSON report in `output_dir`."""
        return f"{self.backbone}_fer2013.json"

    def __post_init__(self):
        if self.backbone not in PRETRAINABLE_BACKBONES:
            raise ValueError(f"backbone={self.backbone!r}; expected one of {PRETRAINABLE_BACKBONES}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs={self.epochs}, batch_size={self.batch_size}; both must be >= 1")
        if self.max_per_class is not None and self.max_per_class < 1:
            raise ValueError(f"max_per_class={self.max_per_class}; must be >= 1 (or None for all)")
        if not 0 < self.min_crop_fraction <= 1:
            raise ValueError(f"min_crop_fraction={self.min_crop_fraction}; must be in (0, 1]")
        if not 0 <= self.ferplus_weight <= 1 or not 0 < self.holdout_fraction < 1:
            raise ValueError(
                f"ferplus_weight={self.ferplus_weight}, holdout_fraction={self.holdout_fraction}; "
                "expected 0 <= ferplus_weight <= 1 and 0 < holdout_fraction < 1"
            )
        self.extra_data_dirs = tuple(self.extra_data_dirs)


@dataclasses.dataclass
class ImageSplit:
    """One split of an image-classification folder, decoded into memory.

    Attributes:
        images: uint8 (n, S, S, 3) RGB.
        labels: int32 (n,) class indices into `class_names`.
        class_names: E names, in label order.
        paths: n source files, in the order of `images`.
        targets: float32 (n, E) training targets (rows sum to 1), or None for one-hot labels.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list
    paths: list
    targets: Optional[np.ndarray] = None

    def one_hot_or_targets(self) -> np.ndarray:
        """float32 (n, E): `targets`, or the one-hot labels when there are none."""
        if self.targets is not None:
            return self.targets
        return np.eye(len(self.class_names), dtype=np.float32)[self.labels]

    @staticmethod
    def concatenate(splits: Sequence["ImageSplit"]) -> "ImageSplit":
        """One split holding the images of `splits` (same classes), in order."""
        return ImageSplit(
            np.concatenate([split.images for split in splits]),
            np.concatenate([split.labels for split in splits]),
            splits[0].class_names,
            [path for split in splits for path in split.paths],
            np.concatenate([split.one_hot_or_targets() for split in splits]),
        )


@dataclasses.dataclass
class PretrainResult:
    """What `pretrain` wrote: the backbone weights file, the JSON report and its content."""

    weights_path: str
    report_path: str
    report: dict


def load_split(
    split_dir: str,
    image_size: int,
    class_names: Optional[Sequence[str]] = None,
    max_per_class: Optional[int] = None,
) -> ImageSplit:
    """Reads `split_dir/<class>/<image>` into memory, every image resized to S x S RGB.

    Args:
        split_dir: the split folder.
        image_size: S.
        class_names: the classes in label order; None: the sub-folders of `split_dir`, sorted.
        max_per_class: if set, at most this many images per class.

    Raises:
        InputError: naming the folder that is missing or empty, or the file that does not
            decode as an image.
    """
    class_names = list(class_names) if class_names is not None else list_class_folders(split_dir)
    paths, labels = list_image_files(split_dir, class_names, max_per_class)
    return ImageSplit(decode_images(paths, image_size), labels, class_names, paths)


def ferplus_targets(
    data_dir: str, paths: Sequence[str], labels: np.ndarray, class_names: Sequence[str], weight: float
) -> np.ndarray:
    """Training targets of FER2013 images blending their label with their FER+ votes.

    Args:
        data_dir: the FER2013 folder holding `ferplus_labels.csv` (columns `file`, relative
            to `data_dir`, and `votes_<class>`; FER+ votes for classes without an emotion,
            such as contempt, unknown or NF, are ignored).
        paths: n image files under `data_dir`.
        labels: int (n,) their labels, indices into `class_names`.
        class_names: E class names.
        weight: w in (1 - w) x one-hot + w x vote distribution.

    Returns:
        float32 (n, E), rows summing to 1; an image without votes for the E classes keeps
        its one-hot label.

    Raises:
        InputError: the CSV is missing, or lacks a `file` column or a vote column of a class.
    """
    csv_path = os.path.join(data_dir, FERPLUS_LABELS_FILE)
    if not os.path.isfile(csv_path):
        raise InputError(csv_path, "FER+ labels file is missing (needed for ferplus_weight > 0)")
    with open(csv_path, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    columns = {canonical_emotion(name[len(FERPLUS_VOTE_PREFIX):]): name for name in (rows[0] if rows else {})
               if name.startswith(FERPLUS_VOTE_PREFIX)}
    missing = [name for name in class_names if canonical_emotion(name) not in columns]
    if "file" not in (rows[0] if rows else {}) or missing:
        raise InputError(csv_path, f"expected a 'file' column and vote columns for the classes {missing or list(class_names)}")
    class_columns = [columns[canonical_emotion(name)] for name in class_names]
    votes_of_file = {row["file"]: [float(row[column]) for column in class_columns] for row in rows}
    one_hot = np.eye(len(class_names), dtype=np.float32)[labels]
    votes = np.array(
        [votes_of_file.get(os.path.relpath(path, data_dir).replace(os.sep, "/"), [0.0] * len(class_columns))
         for path in paths],
        np.float32,
    )
    totals = votes.sum(axis=1, keepdims=True)
    distribution = np.where(totals > 0, votes / np.maximum(totals, 1.0), one_hot)
    return ((1.0 - weight) * one_hot + weight * distribution).astype(np.float32)


def is_held_out(path: str, fraction: float) -> bool:
    """Whether `path` falls in the held-out part: a fixed function of its file name."""
    return zlib.crc32(os.path.basename(path).encode("utf8")) % 10_000 < fraction * 10_000


def held_out_part(paths: Sequence[str], labels: np.ndarray, fraction: float, held_out: bool = True) -> tuple:
    """(paths, labels) of the images `is_held_out` holds out (`held_out` True) or trains on."""
    keep = np.array([is_held_out(path, fraction) == held_out for path in paths], bool)
    return [path for path, kept in zip(paths, keep) if kept], labels[keep]


def load_extra_split(
    folder: str, class_names: Sequence[str], image_size: int, holdout_fraction: float,
    max_per_class: Optional[int] = None,
) -> tuple:
    """An extra corpus of class folders split into (train, held_out) ImageSplits."""
    paths, labels, _ = list_matched_images(folder, class_names, max_per_class)
    return tuple(
        ImageSplit(decode_images(part_paths, image_size), part_labels, list(class_names), part_paths)
        for part_paths, part_labels in (
            held_out_part(paths, labels, holdout_fraction, held_out=False),
            held_out_part(paths, labels, holdout_fraction, held_out=True),
        )
    )


def augment(images, seed, config: PretrainConfig):
    """Random zoom-crop, shift, horizontal flip, brightness and contrast, per image.

    Args:
        images: uint8 or float32 (B, S, S, 3) RGB in 0..255.
        seed: int (2,) stateless seed.
        config: supplies `min_crop_fraction`, `brightness_delta` and `contrast_range`.

    Returns:
        float32 (B, S, S, 3) in 0..255.
    """
    batch_size, size = tf.shape(images)[0], tf.shape(images)[1]
    crop_seed, top_seed, left_seed, flip_seed, brightness_seed, contrast_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, num=6)
    )
    crop = tf.random.stateless_uniform([batch_size], crop_seed, config.min_crop_fraction, 1.0)
    top = tf.random.stateless_uniform([batch_size], top_seed) * (1.0 - crop)
    left = tf.random.stateless_uniform([batch_size], left_seed) * (1.0 - crop)
    # A box with x1 > x2 samples a left-right mirrored crop.
    flip = tf.random.stateless_uniform([batch_size], flip_seed) < 0.5
    x1 = tf.where(flip, left + crop, left)
    x2 = tf.where(flip, left, left + crop)
    boxes = tf.stack([top, x1, top + crop, x2], axis=1)  # normalised (y1, x1, y2, x2)
    images = tf.image.crop_and_resize(
        tf.cast(images, tf.float32), boxes, tf.range(batch_size), tf.stack([size, size])
    )

    low, high = config.contrast_range
    contrast = tf.random.stateless_uniform([batch_size, 1, 1, 1], contrast_seed, low, high)
    brightness = tf.random.stateless_uniform(
        [batch_size, 1, 1, 1], brightness_seed, -config.brightness_delta, config.brightness_delta
    )
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    return tf.clip_by_value((images - mean) * contrast + mean + brightness, 0.0, 255.0)


def training_dataset(split: ImageSplit, config: PretrainConfig) -> tf.data.Dataset:
    """Endless shuffled, augmented batches: (float32 (B, S, S, 3) 0..255, one-hot (B, E)).

    Each pass over the images is a new shuffle; the last partial batch of a pass is merged
    into the next pass (the stream is cut into batches after repeating).
    """
    images = tf.constant(split.images)
    labels = tf.constant(split.one_hot_or_targets())
    indices = (
        tf.data.Dataset.range(len(split.labels))
        .shuffle(len(split.labels), seed=config.seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(config.batch_size, drop_remainder=True)
    )
    seeds = tf.data.Dataset.random(seed=config.seed).batch(2)
    return (
        tf.data.Dataset.zip(indices, seeds)
        .map(
            lambda batch, seed: (augment(tf.gather(images, batch), seed, config), tf.gather(labels, batch)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .prefetch(tf.data.AUTOTUNE)
    )


def evaluation_dataset(split: ImageSplit, batch_size: int) -> tf.data.Dataset:
    """One pass, in order, without augmentation: (float32 (B, S, S, 3) 0..255, one-hot (B, E))."""
    return (
        tf.data.Dataset.from_tensor_slices((split.images, tf.one_hot(split.labels, len(split.class_names))))
        .batch(batch_size)
        .map(lambda images, labels: (tf.cast(images, tf.float32), labels))
        .prefetch(tf.data.AUTOTUNE)
    )


def build_classifier(backbone: keras.Model, num_classes: int, dropout: float) -> keras.Model:
    """backbone -> global average -> dropout -> Dense(E): images (B, S, S, 3) 0..255 -> logits (B, E)."""
    images = keras.Input(backbone.input_shape[1:], name="images")
    features = keras.layers.GlobalAveragePooling2D(name="feature_average")(backbone(images))
    features = keras.layers.Dropout(dropout, name="feature_dropout")(features)
    logits = keras.layers.Dense(num_classes, name="class_logits")(features)
    return keras.Model(images, logits, name="fer2013_classifier")


def flip_averaged_logits(classifier: keras.Model, images: np.ndarray, batch_size: int) -> tuple:
    """(logits, flip-averaged logits) of uint8 (n, S, S, 3) images: float32 (n, E) each; the
    second is the mean of the logits of each image and of its left-right mirror."""
    plain, mirrored = [], []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].astype(np.float32)
        plain.append(keras.ops.convert_to_numpy(classifier(batch, training=False)))
        mirrored.append(keras.ops.convert_to_numpy(classifier(batch[:, :, ::-1], training=False)))
    plain, mirrored = np.concatenate(plain), np.concatenate(mirrored)
    return plain, (plain + mirrored) / 2.0


class HeldOutEvaluation(keras.callbacks.Callback):
    """After each epoch, scores held-out image sets: adds `val_<name>_accuracy` and
    `val_<name>_flip_accuracy` (logits averaged with the mirrored image's) to the epoch logs.

    Args:
        splits: {name: ImageSplit}.
        batch_size: images per forward pass.
    """

    def __init__(self, splits: dict, batch_size: int):
        super().__init__()
        self.splits = splits
        self.batch_size = batch_size

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for name, split in self.splits.items():
            plain, averaged = flip_averaged_logits(self.model, split.images, self.batch_size)
            logs[f"val_{name}_accuracy"] = float(np.mean(plain.argmax(axis=1) == split.labels))
            logs[f"val_{name}_flip_accuracy"] = float(np.mean(averaged.argmax(axis=1) == split.labels))


class EpochTimeAndRates(keras.callbacks.Callback):
    """Adds to each epoch's logs "seconds", the epoch's duration up to this callback (so the
    scoring of held-out sets before it is included), and the learning rates: "learning_rate",
    or "learning_rate_<group>" per parameter group of a `MultiOptimizer`."""

    def __init__(self):
        super().__init__()
        self._epoch_start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logs["seconds"] = round(time.perf_counter() - self._epoch_start, 1)
        optimizer = self.model.optimizer
        if isinstance(optimizer, keras.optimizers.MultiOptimizer):
            logs.update({f"learning_rate_{name}": rate for name, rate in group_learning_rates(optimizer).items()})
        else:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def write_report(path: str, history_csv: str, fixed: dict, completed: bool) -> dict:
    """Writes the JSON report of a run: `fixed` (classes, image size, ...), then "completed",
    "val_accuracy" (per epoch), "best_epoch", "best_val_accuracy" and "history" (per epoch, the
    row of `history_csv` as numbers, epochs counted from 1). Returns the report."""
    history = [
        {**{name: float(value) for name, value in row.items() if value}, "epoch": int(row["epoch"]) + 1}
        for row in read_history(history_csv)
    ]
    accuracies = [record["val_accuracy"] for record in history]
    best = int(np.argmax(accuracies)) if accuracies else None
    report = dict(
        fixed,
        completed=completed,
        val_accuracy=accuracies,
        best_epoch=None if best is None else best + 1,
        best_val_accuracy=None if best is None else accuracies[best],
        history=history,
    )
    write_json_atomically(path, report)
    return report


def pretrain(
    config: PretrainConfig, callbacks: Sequence[keras.callbacks.Callback] = (), verbose="auto"
) -> PretrainResult:
    """Trains `config.backbone` on `config.data_dir` and saves its best-epoch weights, holding the
    lock of `config.output_dir` (`files.OutputDirLock`) while it runs.

    Resumes from `config.output_dir/backup` when an earlier run of the same config was
    interrupted (history.csv keeps the finished epochs).

    Args:
        config: the run.
        callbacks: extra Keras callbacks for `fit`, run after the task's own.
        verbose: `model.fit` verbosity ("auto"/1 progress bar, 2 one line per epoch, 0 silent).

    Returns:
        The paths of the weights file and JSON report, and the report.

    Raises:
        InputError: a missing or empty split or class folder, or an undecodable image.
        files.OutputDirInUseError: another live run holds the output folder (naming it).
    """
    run = RunFolder(config.output_dir, best_weights_file=config.weights_file)
    with run.lock("pretrain"):
        return _pretrain_in_locked_dir(config, run, callbacks, verbose)


def _pretrain_in_locked_dir(config: PretrainConfig, run: RunFolder, callbacks, verbose) -> PretrainResult:
    """`pretrain` once `run`, its output folder, is locked."""
    train_split = load_split(
        os.path.join(config.data_dir, TRAIN_SPLIT), config.image_size, max_per_class=config.max_per_class
    )
    if config.ferplus_weight > 0:
        train_split.targets = ferplus_targets(
            config.data_dir, train_split.paths, train_split.labels, train_split.class_names, config.ferplus_weight
        )
    val_split = load_split(
        os.path.join(config.data_dir, VALIDATION_SPLIT),
        config.image_size,
        train_split.class_names,
        config.max_per_class,
    )
    held_out = {"fer2013": val_split}
    extra_train = []
    for folder, name in zip(config.extra_data_dirs, corpus_names(config.extra_data_dirs)):
        trained_part, held_out_split = load_extra_split(
            folder, train_split.class_names, config.image_size, config.holdout_fraction, config.max_per_class
        )
        extra_train.append(trained_part)
        held_out[name] = held_out_split
    if extra_train:
        train_split = ImageSplit.concatenate([train_split, *extra_train])
    steps_per_epoch = len(train_split.labels) // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"{config.data_dir}: {len(train_split.labels)} training images, fewer than one batch "
            f"of {config.batch_size}"
        )

    keras.utils.set_random_seed(config.seed)
    backbone = build_backbone(config.backbone, config.image_size, config.initial_weights)
    classifier = build_classifier(backbone, len(train_split.class_names), config.dropout)
    classifier.compile(
        optimizer=warmup_cosine_adamw(
            config.learning_rate,
            config.weight_decay,
            config.epochs,
            config.warmup_epochs,
            steps_per_epoch,
            backbone_variables=backbone_variables(classifier),
            head_variables=head_variables(classifier),
            backbone_lr_multiplier=config.backbone_lr_multiplier,
            backbone_optimizer=config.backbone_optimizer,
        ),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    report_path = os.path.join(run.path, config.report_file)
    fixed = {
        "backbone": config.backbone,
        "weights_file": config.weights_file,
        "classes": train_split.class_names,
        "image_size": config.image_size,
        "epochs": config.epochs,
        "train_images": len(train_split.labels),
        "val_images": len(val_split.labels),
        "held_out_images": {name: len(split.labels) for name, split in held_out.items()},
        "config": dataclasses.asdict(config),
    }
    report_writer = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: write_report(report_path, run.history_csv, fixed, completed=False)
    )
    classifier.fit(
        training_dataset(train_split, config),
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
        validation_data=evaluation_dataset(val_split, config.batch_size),
        shuffle=False,  # training_dataset shuffles
        callbacks=[
            HeldOutEvaluation(held_out, config.batch_size),
            EpochTimeAndRates(),
            *run.callbacks("val_accuracy", weights_of=backbone),
            report_writer,
            *callbacks,
        ],
        verbose=verbose,
    )
    report = write_report(report_path, run.history_csv, fixed, completed=True)
    run.finish()
    return PretrainResult(run.best_weights, report_path, report)


def average_backbone_weights(backbone: str, image_size: int, weight_files: Sequence[str], output: str) -> str:
    """Writes the element-wise mean of backbone weight files to `output` (a "model soup").

    Fine-tuning runs that start from the same weights stay in one basin of the loss, and the
    average of their weights often scores better than each of them (Wortsman et al., 2022,
    "Model soups"). The mean is taken over every variable, trainable or not.

    Args:
        backbone: the backbone name the files were saved from (`build_backbone`).
        image_size: S the backbone is built for.
        weight_files: two or more `.weights.h5` files of that backbone.
        output: the `.weights.h5` file to write (atomically).

    Returns:
        `output`.

    Raises:
        ValueError: fewer than two files, an output name without `.weights.h5`, or a file
            that does not load into the backbone (naming it).
        FileNotFoundError: naming a missing file.
    """
    if len(weight_files) < 2:
        raise ValueError(f"average_backbone_weights: {len(weight_files)} weights file(s) given; expected two or more")
    if not output.endswith(KERAS3_WEIGHTS_SUFFIX):
        raise ValueError(f"{output}: the averaged weights file's name must end with {KERAS3_WEIGHTS_SUFFIX}")
    models = [build_backbone(backbone, image_size, path) for path in weight_files]
    average = models[0]
    for index, variable in enumerate(average.weights):
        variable.assign(np.mean([keras.ops.convert_to_numpy(model.weights[index]) for model in models], axis=0))
    with atomic_write(output, keep_suffix=KERAS3_WEIGHTS_SUFFIX) as temp:
        average.save_weights(temp)
    return output
