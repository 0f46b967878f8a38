"""Trains the video model that ships with the package on face crops held in memory.

The paper's model (a face backbone, spatial attention SA, temporal softmax pooling TP) is
fine-tuned on the real faces we have: FER2013 images as 1-frame clips and CK+48 sequences as
3-frame clips. Both corpora are tight face crops of the same framing (eyes at about 0.38 of
the height, 0.37 of the width apart), so no dlib alignment is run on them; videos are aligned
to that framing when the model predicts (`SHIPPED_ALIGNMENT`).

    FER2013 <dir>/train/<class>/*.jpg        1-frame clips     \\  classes matched to
    CK+48   <dir>/<class>/S###_###_#.png     3-frame clips      >  data.emotions.EMOTIONS
      -> every frame decoded once, resized to S x S, uint8, one array of frames
      -> per step: B clips of one length F (CK+48 clips repeated `ck48_repeats` times a pass)
         -> gather their frames
         -> augment each frame (pretrain.augment: zoom-crop, shift, flip, brightness, contrast)
      -> model {"frames": (B, F, S, S, 3), "frame_mask": (B, F)} -> p(c) (B, 7)

With `cached_views`, the frozen backbone's maps of fixed views of every frame are computed once
(`feature_cache`) and the head trains on them, each step drawing one view per clip instead of
augmenting; the trained head is then put on the backbone and the image model is evaluated and saved.
With `fine_tune_blocks` k as well, the maps are those below the backbone's last k residual blocks
(`models.backbones.split_backbone`), and those k blocks train with the head: the CPU route to
fine-tuning the top of the backbone on every fold's clips (one block costs about a tenth of the
whole backbone per frame, and the blocks below run once).

The backbone is frozen (trainable False, so its BatchNorm layers also run in inference mode),
but for its top `fine_tune_blocks`; SA and the frame scores W_sm (and those blocks, at
`backbone_lr_multiplier` x the rate, with `backbone_optimizer`) are
trained with AdamW (warm-up, cosine decay) on the clip cross-entropy (against one-hot labels;
with `ferplus_weight`, FER2013's blended with their FER+ votes; with `teacher_weight`, images
blended with other models' predictions: distillation). The paper's backbone
learning rate (1e-5 against 0.1 for the head) barely moves a backbone either.

CK+48 subjects are split into `folds` subject-wise folds (seeded); the folds in
`held_out_folds` are left out of training and evaluated at the end, so that a run with
held-out folds measures accuracy on unseen subjects and a run without trains on all of them.
`ck48_scored_dirs` scores the same held-out subjects in other cuts of the sequences too (a
`ck48_dir` of faces as `align-images` cuts them, scored as well on CK+48 as it is, or the
reverse), so that two recipes trained on different cuts compare on both; with
`ck48_train_scored_dirs` the training subjects' clips of those cuts are trained on as well (the
held-out subjects stay out of every cut).
The epoch with the best FER2013 validation accuracy is kept.

Files under `output_dir` (a `run_folder.RunFolder`, locked while the run goes on):

    model_info.json, model.float16.npz   the model (`models.saving.save_float16_weights`): a
                                         trained-model directory every tool reads
    report.json                          config, per-epoch history, final figures
    history.csv                          one row per epoch
    checkpoints/best.weights.h5          weights of the best epoch (FER2013 val accuracy)
    backup/                              `callbacks.EpochBackup` (a rerun resumes; removed
                                         once report.json is written: a run killed after
                                         training and before its report trains no epoch again)

`cross_validate` runs the recipe once per CK+48 fold, that fold held out, in
`output_dir/fold<k>/`, and writes `output_dir/cross_validation.json`: per fold and mean +- std
of the held-out accuracy and UAR, and of FER2013 validation accuracy. Folds already done
(their report.json exists) are not run again.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_emotion.data.datasets import list_ck48, split_by_subject
from keras_emotion.data.emotions import EMOTIONS, match_class_names
from keras_emotion.data.faces import AlignmentConfig
from keras_emotion.data.image_folders import corpus_names, list_matched_images
from keras_emotion.data.model_input import decode_images
from keras_emotion.data.video import InputError
from keras_emotion.files import read_json, write_json_atomically
from keras_emotion.models import ModelConfig, build_model
from keras_emotion.models.backbones import split_backbone
from keras_emotion.models.builder import (
    BACKBONE_NAME,
    backbone_variables,
    copy_head_weights,
    feature_map_backbone,
    head_variables,
)
from keras_emotion.models.info import ModelInfo, Preprocessing
from keras_emotion.training import feature_cache
from keras_emotion.training.callbacks import read_history
from keras_emotion.training.evaluation import load_evaluation
from keras_emotion.training.metrics import classification_report
from keras_emotion.training.optimizers import warmup_cosine_adamw
from keras_emotion.training.pretrain import augment, ferplus_targets, held_out_part
from keras_emotion.models.saving import save_float16_weights
from keras_emotion.training.run_folder import RunFolder
from keras_emotion.training.task import probabilities_model

VIDEO_FRAMES = 16
"""Frames the shipped model samples from a video window (the paper's 16)."""
SHIPPED_ALIGNMENT = AlignmentConfig(output_size=48, eye_level=0.38, eye_distance=0.37)
"""The framing of FER2013 and CK+48 crops (measured with dlib's landmarks on 150 images of each)."""
REPORT_FILE = "report.json"
CROSS_VALIDATION_FILE = "cross_validation.json"
FEATURE_CACHE_DIR = "feature_cache"


@dataclasses.dataclass
class FaceClipsConfig:
    """A training run of the shipped video model.

    Attributes:
        fer2013_dir: folder with `train/<class>/*` and `validation/<class>/*` images.
        ck48_dir: the CK+48 folder `<class>/S###_###_########.png`.
        backbone_weights: the pre-trained backbone (scripts/pretrain_backbone.py).
        output_dir: folder receiving the model, report and backup.
        backbone: the backbone those weights are for.
        image_size: S, side the faces are resized to (the backbone's pre-training size).
        num_heads: N, heads of spatial attention.
        attention_units: U, hidden size of SA's scoring MLP.
        penalty: coefficient of SA's ||A A^T - I||_F^2 penalty.
        epochs: passes over the training clips.
        batch_size: clips per step.
        learning_rate: peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        ck48_repeats: times each CK+48 training clip appears in a pass (FER2013 has ~100x more).
        folds: CK+48 subject-wise folds.
        held_out_folds: CK+48 folds left out of training and evaluated at the end.
        ck48_scored_dirs: other cuts of the same CK+48 sequences (e.g. CK+48 as it is, beside
            a `ck48_dir` of faces as `align-images` cut them) whose held-out clips are scored
            too; they must split into the same subject folds.
        ck48_train_scored_dirs: the training subjects' clips of `ck48_scored_dirs` are
            trained on too, each `ck48_repeats` times a pass (CK+48 in several cuts).
        min_crop_fraction, brightness_delta, contrast_range: augmentation (`pretrain.augment`).
        seed: seed of initialisation, fold split, shuffling and augmentation.
        max_per_class: if set, at most this many FER2013 images per class and split (quick runs).
        cached_views: 0: augment the images at every step (the backbone runs on every frame
            of every step); V in 1..4: train on the backbone's maps of the first V fixed views
            of `feature_cache.VIEWS` (computed once, each step draws one view per clip), the
            model is then assembled with the backbone and evaluated on the images.
        cache_dir: where the maps are kept between runs (`feature_cache`); None:
            `<output_dir>/feature_cache`.
        extra_image_dirs: more folders of class folders trained on as 1-frame clips (e.g. the
            in-the-wild ExpW and SFEW), minus the part backbone pre-training holds out of them
            (`pretrain.is_held_out` with `holdout_fraction`), so that part stays unseen.
        holdout_fraction: see `extra_image_dirs` (pre-training's `holdout_fraction`).
        fine_tune_blocks: k, the backbone's last k residual blocks trained with the head on
            the cached maps of the layer below them (needs `cached_views`); 0: all frozen.
        backbone_lr_multiplier, backbone_optimizer: those blocks' learning rate (x
            `learning_rate`) and optimizer (`optimizers.warmup_cosine_adamw`).
        ferplus_weight: w; a FER2013 training image's target is (1 - w) x its one-hot label + w
            x its FER+ vote distribution (`fer2013_dir/ferplus_labels.csv`), as in backbone
            pre-training; the other corpora keep one-hot targets. 0: labels only.
        teacher_evaluations: evaluation.json files of other models (teachers) on training
            images (`scripts/evaluate.py --input <image folder>`, e.g. FER2013 train).
        teacher_weight: t; a training image's target (after `ferplus_weight`) becomes (1 - t) x
            itself + t x the mean of the teachers' probabilities for it (knowledge distillation
            from their ensemble); images no teacher evaluated keep their targets.
        mixup_alpha: alpha > 0: training batches mixed (`mix_clips`, on images or cached maps:
            manifold mixup below the blocks that train); 0: none.
    """

    fer2013_dir: str
    ck48_dir: str
    backbone_weights: str
    output_dir: str
    backbone: str = "compact_wide"
    image_size: int = 48
    num_heads: int = 1
    attention_units: int = 64
    penalty: float = 0.0
    epochs: int = 6
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    ck48_repeats: int = 10
    folds: int = 10
    held_out_folds: Sequence[int] = ()
    ck48_scored_dirs: tuple = ()
    ck48_train_scored_dirs: bool = False
    min_crop_fraction: float = 0.85
    brightness_delta: float = 25.0
    contrast_range: tuple = (0.8, 1.2)
    seed: int = 0
    max_per_class: Optional[int] = None
    cached_views: int = 0
    cache_dir: Optional[str] = None
    extra_image_dirs: tuple = ()
    holdout_fraction: float = 0.15
    fine_tune_blocks: int = 0
    backbone_lr_multiplier: float = 1.0
    backbone_optimizer: str = "adamw"
    ferplus_weight: float = 0.0
    teacher_evaluations: tuple = ()
    teacher_weight: float = 0.0
    mixup_alpha: float = 0.0

    def __post_init__(self):
        self.held_out_folds = tuple(sorted(set(self.held_out_folds)))
        if any(not 0 <= fold < self.folds for fold in self.held_out_folds):
            raise ValueError(f"held_out_folds={self.held_out_folds}; folds are 0..{self.folds - 1}")
        if not 0 <= self.cached_views <= len(feature_cache.VIEWS):
            raise ValueError(f"cached_views={self.cached_views}; expected 0..{len(feature_cache.VIEWS)}")
        if not 0 <= self.ferplus_weight <= 1:
            raise ValueError(f"ferplus_weight={self.ferplus_weight}; expected 0 <= ferplus_weight <= 1")
        if not 0 <= self.teacher_weight <= 1:
            raise ValueError(f"teacher_weight={self.teacher_weight}; expected 0 <= teacher_weight <= 1")
        if self.mixup_alpha < 0:
            raise ValueError(f"mixup_alpha={self.mixup_alpha}; expected >= 0 (0: no mixup)")
        if self.teacher_weight > 0 and not self.teacher_evaluations:
            raise ValueError(f"teacher_weight={self.teacher_weight} needs teacher_evaluations")
        if self.ck48_train_scored_dirs and not self.ck48_scored_dirs:
            raise ValueError("ck48_train_scored_dirs needs ck48_scored_dirs: the other CK+48 cuts to train on")
        if self.fine_tune_blocks and not self.cached_views:
            raise ValueError(
                f"fine_tune_blocks={self.fine_tune_blocks} needs cached_views: the blocks below them run once, on cached views"
            )

    def model_config(self) -> ModelConfig:
        """The video model: the backbone, SA (N heads), frame scores, TP; 7 classes."""
        return ModelConfig(
            num_classes=len(EMOTIONS),
            num_frames=None,
            image_size=self.image_size,
            backbone=self.backbone,
            backbone_weights=self.backbone_weights,
            spatial="sa",
            num_heads=self.num_heads,
            attention_units=self.attention_units,
            penalty=self.penalty,
            temporal="tp",
        )


@dataclasses.dataclass
class FaceClips:
    """Clips of face crops held in memory as one array of frames.

    Attributes:
        frames: uint8 (n_frames, S, S, 3) RGB, the frames of every clip, clip after clip; or
            float16 (n_frames, V, h, w, D), the backbone maps of V views of each frame
            (`feature_cache`).
        starts: int32 (N,) index of each clip's first frame in `frames`.
        lengths: int32 (N,) frames of each clip.
        labels: int32 (N,) class indices into EMOTIONS.
        targets: float32 (N, E) training targets (rows sum to 1, e.g. FER+ votes blended in),
            or None for the one-hot labels.
    """

    frames: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray
    targets: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.labels)

    def one_hot_or_targets(self) -> np.ndarray:
        """float32 (N, E): `targets`, or the one-hot labels when there are none."""
        if self.targets is not None:
            return self.targets
        return np.eye(len(EMOTIONS), dtype=np.float32)[self.labels]

    def subset(self, clip_indices) -> "FaceClips":
        """The clips at `clip_indices`, their frames copied into a new array."""
        clip_indices = np.asarray(clip_indices, np.int64)
        lengths = self.lengths[clip_indices]
        frame_indices = np.concatenate(
            [np.arange(start, start + length) for start, length in zip(self.starts[clip_indices], lengths)]
        ) if len(clip_indices) else np.zeros(0, np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32)
        targets = None if self.targets is None else self.targets[clip_indices]
        return FaceClips(self.frames[frame_indices], starts, lengths, self.labels[clip_indices], targets)


def teacher_probabilities(evaluation_files: Sequence[str]) -> dict:
    """The mean of several models' predictions for each image they evaluated.

    Args:
        evaluation_files: evaluation.json files of `evaluation.evaluate_images` (any class
            order; the classes must be EMOTIONS').

    Returns:
        {real path of an image: float32 (E,) the mean probabilities, in EMOTIONS order, of the
        files that evaluated it}.

    Raises:
        InputError: naming a file that cannot be read, is not an evaluation of an image folder,
            names a folder that is not there, or whose classes are not EMOTIONS'.
    """
    totals, counts = {}, {}
    for evaluation_file in evaluation_files:
        try:
            report = load_evaluation(evaluation_file)
        except (OSError, ValueError) as error:
            raise InputError(evaluation_file, f"cannot read a teacher's evaluation: {error}") from None
        if "images" not in report:
            raise InputError(evaluation_file, "not an evaluation of an image folder (scripts/evaluate.py --input <folder>)")
        if not os.path.isdir(report["images"]):
            raise InputError(evaluation_file, f"its image folder {report['images']!r} is not a folder here (relative paths "
                             "are to the folder evaluate.py ran in: run this from there)")
        if sorted(report["class_names"]) != sorted(EMOTIONS):
            raise InputError(evaluation_file, f"classes {report['class_names']}; expected those of {list(EMOTIONS)}")
        order = [report["class_names"].index(name) for name in EMOTIONS]
        for clip in report["clips"]:
            path = os.path.realpath(os.path.join(report["images"], clip["clip_id"]))
            totals[path] = totals.get(path, 0.0) + np.asarray(clip["probabilities"], np.float32)[order]
            counts[path] = counts.get(path, 0) + 1
    return {path: totals[path] / counts[path] for path in totals}


def fer2013_clips(
    split_dir: str,
    image_size: int,
    max_per_class: Optional[int] = None,
    held_out_fraction: Optional[float] = None,
    ferplus_weight: float = 0.0,
    teacher: Optional[dict] = None,
    teacher_weight: float = 0.0,
) -> tuple:
    """The images of a FER2013-layout split (a folder of class folders) as 1-frame clips.

    Args:
        held_out_fraction: if set, leave out the images `pretrain.held_out_part` holds out.
        ferplus_weight: w > 0: the clips' targets are (1 - w) x one-hot + w x each image's FER+
            vote distribution (`pretrain.ferplus_targets`, from the `ferplus_labels.csv` of the
            folder above `split_dir`, FER2013's layout).
        teacher, teacher_weight: t > 0: each image in `teacher` (`teacher_probabilities`) gets
            the target (1 - t) x its target + t x the teacher's probabilities.

    Returns:
        (clips, skipped): FaceClips with labels in EMOTIONS order, and the class folders that
        match no emotion.
    """
    paths, labels, skipped = list_matched_images(split_dir, EMOTIONS, max_per_class)
    if held_out_fraction is not None:
        paths, labels = held_out_part(paths, labels, held_out_fraction, held_out=False)
    targets = None
    if ferplus_weight > 0:
        targets = ferplus_targets(os.path.dirname(os.path.normpath(split_dir)), paths, labels, EMOTIONS, ferplus_weight)
    if teacher_weight > 0:
        targets = np.eye(len(EMOTIONS), dtype=np.float32)[labels] if targets is None else targets
        for index, path in enumerate(paths):
            taught = teacher.get(os.path.realpath(path))
            if taught is not None:
                targets[index] = (1 - teacher_weight) * targets[index] + teacher_weight * taught
    starts = np.arange(len(paths), dtype=np.int32)
    clips = FaceClips(decode_images(paths, image_size), starts, np.ones(len(paths), np.int32), labels, targets)
    return clips, skipped


def ck48_clips(root: str, image_size: int, folds: int, seed: int) -> tuple:
    """CK+48 sequences as clips, each with its subject-wise fold.

    Returns:
        (clips, fold_of_clip, skipped): FaceClips (labels in EMOTIONS order), int (N,) fold
        indices, and the class names that match no emotion (CK+ contempt).
    """
    sources, _ = list_ck48(root)
    class_names = sorted({source.label_name for source in sources})
    emotion_of_class, skipped = match_class_names(class_names, EMOTIONS)
    sources = [source for source in sources if class_names.index(source.label_name) in emotion_of_class]
    sources = [source for source in split_by_subject(sources, folds=folds, seed=seed)]
    lengths = np.array([len(source.path) for source in sources], np.int32)
    frames = decode_images([path for source in sources for path in source.path], image_size)
    labels = np.array([emotion_of_class[class_names.index(source.label_name)] for source in sources], np.int32)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32)
    fold_of_clip = np.array([int(source.split.removeprefix("fold")) for source in sources])
    return FaceClips(frames, starts, lengths, labels), fold_of_clip, skipped


def ck48_cut_clips(config: FaceClipsConfig, folder: str, fold_of_training_clip: np.ndarray) -> tuple:
    """`ck48_clips` of `folder`, another cut of `config.ck48_dir`'s sequences
    (`fold_of_training_clip`: the fold of each of `config.ck48_dir`'s clips).

    Returns:
        (clips, fold_of_clip) as `ck48_clips` returns them.

    Raises:
        InputError: naming `folder` where its clips fall into other subject folds.
    """
    clips, fold_of_clip, _ = ck48_clips(folder, config.image_size, config.folds, config.seed)
    clips_per_fold = np.bincount(fold_of_clip, minlength=config.folds).tolist()
    expected = np.bincount(fold_of_training_clip, minlength=config.folds).tolist()
    if clips_per_fold != expected:
        raise InputError(
            folder, f"its CK+48 clips per subject fold {clips_per_fold} differ from those of {config.ck48_dir} "
            f"{expected}: not a cut of the same sequences"
        )
    return clips, fold_of_clip


def training_data(config: FaceClipsConfig) -> list:
    """How model_info names what the model trained on, each folder as `<parent>/<name>` (so
    that a corpus as it is and its faces as `align-images` cut them read apart): "FER2013
    train", "CK+48 (<parent>/<cut>, ...)" (`ck48_dir`, and with `ck48_train_scored_dirs` each
    scored cut), then each of `extra_image_dirs`."""
    ck48_cuts = [config.ck48_dir, *(config.ck48_scored_dirs if config.ck48_train_scored_dirs else ())]
    return [
        "FER2013 train",
        f"CK+48 ({', '.join(corpus_names(ck48_cuts, with_parents=True))})",
        *[f"{name} (held-out part excluded)" for name in corpus_names(config.extra_image_dirs, with_parents=True)],
    ]


def concatenate(first: FaceClips, second: FaceClips) -> FaceClips:
    """The clips of `first`, then those of `second` (with targets if either has them)."""
    targets = None
    if first.targets is not None or second.targets is not None:
        targets = np.concatenate([first.one_hot_or_targets(), second.one_hot_or_targets()])
    return FaceClips(
        np.concatenate([first.frames, second.frames]),
        np.concatenate([first.starts, second.starts + len(first.frames)]).astype(np.int32),
        np.concatenate([first.lengths, second.lengths]),
        np.concatenate([first.labels, second.labels]),
        targets,
    )


def _gather_clips(frames, starts, num_frames: int, clip_indices, views=None):
    """Frames of clips of `num_frames` frames each: -> float32 (B, num_frames, ...).

    For view-major maps (n_frames, V, h, w, D), `views` (B,) picks each clip's view (None:
    view 0): -> (B, num_frames, h, w, D).
    """
    frame_indices = tf.gather(starts, clip_indices)[:, tf.newaxis] + tf.range(num_frames)[tf.newaxis, :]
    if frames.shape.rank == 5:
        views = tf.zeros_like(frame_indices[:, 0]) if views is None else tf.cast(views, frame_indices.dtype)
        frame_indices = tf.stack([frame_indices, tf.broadcast_to(views[:, tf.newaxis], tf.shape(frame_indices))], -1)
        return tf.cast(tf.gather_nd(frames, frame_indices), tf.float32)
    return tf.cast(tf.gather(frames, frame_indices), tf.float32)


def mix_clips(frames, targets, alpha: float, seed):
    """Mixup (Zhang et al. 2018) within a batch: clip i becomes lambda_i x clip i + (1 - lambda_i) x
    clip B-1-i, frames and targets alike, lambda_i ~ Beta(alpha, alpha).

    Args:
        frames: float32 (B, F, ...) clips of one length (images or backbone maps).
        targets: float32 (B, E).
        alpha: the Beta distribution's parameter (> 0).
        seed: int (2,) stateless seed.

    Returns:
        (frames, targets) of the same shapes.
    """
    first_seed, second_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    shape = tf.shape(frames)[:1]
    first = tf.random.stateless_gamma(shape, first_seed, alpha)
    second = tf.random.stateless_gamma(shape, second_seed, alpha)
    mix = first / (first + second)
    frame_mix = tf.reshape(mix, tf.concat([shape, tf.ones([tf.rank(frames) - 1], tf.int32)], 0))
    frames = frame_mix * frames + (1 - frame_mix) * tf.reverse(frames, [0])
    targets = mix[:, tf.newaxis] * targets + (1 - mix[:, tf.newaxis]) * tf.reverse(targets, [0])
    return frames, targets


def clip_dataset(
    clips: FaceClips,
    batch_size: int,
    seed: Optional[int] = None,
    augmentation=None,
    repeats=None,
    dense_targets=False,
    mixup_alpha: float = 0.0,
):
    """Batches ({"frames": (B, F, S, S, 3) float32 0..255, "frame_mask": (B, F)}, labels (B,)),
    or with `dense_targets` float32 targets (B, E) instead of the labels (`FaceClips.one_hot_or_targets`).

    Every batch holds clips of one length F, so a 1-frame FER2013 clip costs one backbone
    pass, not three.
    Training (`seed` given): endless, shuffled, augmented (`pretrain.augment` with the settings
    of `augmentation`, e.g. a FaceClipsConfig), clip i appearing `repeats[i]` times a pass,
    batches of each length drawn in proportion to their clips. Evaluation (`seed` None): one
    pass, clips grouped by length, no augmentation.
    Clips of backbone maps (`FaceClips.frames` (n, V, h, w, D)) give "frames" (B, F, h, w, D):
    training draws a view per clip instead of augmenting (no `augmentation` needed);
    evaluation takes view 0.
    `mixup_alpha` > 0 (training, dense targets): each batch is then mixed (`mix_clips`).
    """
    if seed is not None and clips.frames.ndim == 4 and augmentation is None:
        raise ValueError("clip_dataset: training on images needs the augmentation settings")
    if mixup_alpha and not (dense_targets and seed is not None):
        raise ValueError("clip_dataset: mixup needs training (a seed) and dense targets")
    frames, starts = tf.constant(clips.frames), tf.constant(clips.starts)
    labels = tf.constant(clips.one_hot_or_targets() if dense_targets else clips.labels)
    repeats = np.ones(len(clips), np.int64) if repeats is None else np.asarray(repeats)
    by_length, weights = [], []
    for num_frames in np.unique(clips.lengths):
        order = np.repeat(np.flatnonzero(clips.lengths == num_frames), repeats[clips.lengths == num_frames])
        indices = tf.data.Dataset.from_tensor_slices(order)

        def inputs_and_labels(batch, step_seed=None, num_frames=int(num_frames)):
            if step_seed is not None and frames.shape.rank == 5:  # maps: a random fixed view per clip
                views = tf.random.stateless_uniform(tf.shape(batch), step_seed, 0, frames.shape[1], tf.int64)
                clip_frames = _gather_clips(frames, starts, num_frames, batch, views)
            else:
                clip_frames = _gather_clips(frames, starts, num_frames, batch)
            if step_seed is not None and frames.shape.rank == 4:  # images: augmented
                shape = tf.shape(clip_frames)
                flat = tf.reshape(clip_frames, tf.concat([[-1], shape[2:]], 0))
                clip_frames = tf.reshape(augment(flat, step_seed, augmentation), shape)
            clip_labels = tf.gather(labels, batch)
            if mixup_alpha:
                clip_frames, clip_labels = mix_clips(clip_frames, clip_labels, mixup_alpha, step_seed)
            mask = tf.ones(tf.shape(clip_frames)[:2], tf.float32)
            return {"frames": clip_frames, "frame_mask": mask}, clip_labels

        if seed is None:
            by_length.append(indices.batch(batch_size).map(inputs_and_labels))
            continue
        step_seeds = tf.data.Dataset.random(seed=seed + int(num_frames)).batch(2)
        batches = indices.shuffle(len(order), seed=seed).repeat().batch(batch_size, drop_remainder=True)
        by_length.append(tf.data.Dataset.zip(batches, step_seeds).map(inputs_and_labels, num_parallel_calls=tf.data.AUTOTUNE))
        weights.append(len(order))
    if seed is None:
        dataset = by_length[0]
        for other in by_length[1:]:
            dataset = dataset.concatenate(other)
    else:
        weights = np.asarray(weights, np.float64) / np.sum(weights)
        dataset = tf.data.Dataset.sample_from_datasets(by_length, weights.tolist(), seed=seed)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _feature_map_clips(config: FaceClipsConfig, backbone: keras.Model, *clip_sets: FaceClips, verbose=0) -> list:
    """`clip_sets` with their frames replaced by `backbone`'s maps (the frozen backbone, or the
    part of it below the blocks that train, `split_backbone`'s lower): the first set (the
    training images) in the first `config.cached_views` views, the others in view 0 only.
    The maps come from `feature_cache` folders under `config.cache_dir` ("train" for the first
    set and CK+48, which folds split later; "validation" for FER2013 validation)."""
    cache_dir = config.cache_dir or os.path.join(config.output_dir, FEATURE_CACHE_DIR)
    fer_train, fer_val, ck48 = clip_sets
    train_frames = np.concatenate([fer_train.frames, ck48.frames])
    views = feature_cache.VIEWS[: config.cached_views]

    def maps(name, frames, views):
        key = feature_cache.cache_key(
            config.backbone, backbone, frames, views, alignment=dataclasses.asdict(SHIPPED_ALIGNMENT)
        )
        return feature_cache.load_or_compute(
            os.path.join(cache_dir, name), key, backbone, frames, views, verbose=bool(verbose)
        )

    train_maps = maps("train", train_frames, views)
    val_maps = maps("validation", fer_val.frames, views[:1])
    return [
        dataclasses.replace(fer_train, frames=train_maps[: len(fer_train.frames)]),
        dataclasses.replace(fer_val, frames=val_maps),
        dataclasses.replace(ck48, frames=train_maps[len(fer_train.frames) :]),
    ]


def evaluate_clips(model: keras.Model, clips: FaceClips, batch_size: int = 256) -> dict:
    """`metrics.classification_report` of `model` on `clips` (EMOTIONS as classes)."""
    labels, predictions = [], []
    for inputs, batch_labels in clip_dataset(clips, batch_size):
        predictions.append(np.argmax(model(inputs, training=False)["probabilities"], axis=-1))
        labels.append(batch_labels.numpy())
    return classification_report(np.concatenate(labels), np.concatenate(predictions), EMOTIONS)


def train_face_clips(config: FaceClipsConfig, verbose="auto") -> dict:
    """Trains the shipped model's head on FER2013 + CK+48 (see the module docstring), holding
    the lock of `config.output_dir` (`files.OutputDirLock`) while it runs.

    Returns:
        The report written to `output_dir/report.json`.

    Raises:
        files.OutputDirInUseError: another live run holds the output folder (naming it).
    """
    run = RunFolder(config.output_dir)
    with run.lock("train-face-clips"):
        return _train_in_locked_dir(config, run, verbose)


def _train_in_locked_dir(config: FaceClipsConfig, run: RunFolder, verbose) -> dict:
    """`train_face_clips` once `run`, its output folder, is locked."""
    teacher = teacher_probabilities(config.teacher_evaluations)
    fer_train, fer_skipped = fer2013_clips(
        os.path.join(config.fer2013_dir, "train"), config.image_size, config.max_per_class,
        ferplus_weight=config.ferplus_weight, teacher=teacher, teacher_weight=config.teacher_weight,
    )
    fer_val, _ = fer2013_clips(os.path.join(config.fer2013_dir, "validation"), config.image_size, config.max_per_class)
    extra_sizes = {}
    for folder, name in zip(config.extra_image_dirs, corpus_names(config.extra_image_dirs)):
        extra, _ = fer2013_clips(
            folder, config.image_size, config.max_per_class, config.holdout_fraction,
            teacher=teacher, teacher_weight=config.teacher_weight,
        )
        extra_sizes[name] = len(extra)
        fer_train = concatenate(fer_train, extra)
    ck48, fold_of_clip, ck48_skipped = ck48_clips(config.ck48_dir, config.image_size, config.folds, config.seed)

    def held_out_clips(clips: FaceClips, fold_of_clip: np.ndarray) -> FaceClips:
        return clips.subset(np.flatnonzero(np.isin(fold_of_clip, config.held_out_folds)))

    ck48_test = held_out_clips(ck48, fold_of_clip)
    ck48_scored = {}
    cuts = [(ck48, fold_of_clip)]
    for folder, name in zip(config.ck48_scored_dirs, corpus_names(config.ck48_scored_dirs)):
        cut, fold_of_cut_clip = ck48_cut_clips(config, folder, fold_of_clip)
        ck48_scored[name] = held_out_clips(cut, fold_of_cut_clip)
        cuts.append((cut, fold_of_cut_clip))
    if config.ck48_train_scored_dirs:
        ck48 = functools.reduce(concatenate, [cut for cut, _ in cuts])
        fold_of_clip = np.concatenate([folds for _, folds in cuts])
    held_out = np.isin(fold_of_clip, config.held_out_folds)
    keras.utils.set_random_seed(config.seed)
    model = build_model(config.model_config())
    backbone = model.get_layer(BACKBONE_NAME)
    backbone.trainable = False
    training_model = model
    if config.cached_views:
        if config.fine_tune_blocks:
            frozen_part, top_blocks = split_backbone(backbone, config.fine_tune_blocks)
            for layer in top_blocks.layers:  # `top_blocks.trainable = True` leaves its layers frozen
                layer.trainable = True
        else:
            frozen_part, top_blocks = backbone, feature_map_backbone(backbone.output_shape[1:])
        fer_train, fer_val_maps, ck48 = _feature_map_clips(config, frozen_part, fer_train, fer_val, ck48, verbose=verbose)
        training_model = build_model(dataclasses.replace(config.model_config(), backbone_weights=None), backbone=top_blocks)
    else:
        fer_val_maps = fer_val
    ck48_train = ck48.subset(np.flatnonzero(~held_out))
    train_clips = concatenate(fer_train, ck48_train)
    repeats = np.concatenate([np.ones(len(fer_train), np.int64), np.full(len(ck48_train), config.ck48_repeats)])
    steps_per_epoch = int(repeats.sum()) // config.batch_size

    trainable = probabilities_model(training_model)
    trainable.compile(
        optimizer=warmup_cosine_adamw(
            config.learning_rate,
            config.weight_decay,
            config.epochs,
            0.5,
            steps_per_epoch,
            backbone_variables=backbone_variables(training_model),
            head_variables=head_variables(training_model),
            backbone_lr_multiplier=config.backbone_lr_multiplier,
            backbone_optimizer=config.backbone_optimizer,
        ),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    trainable.fit(
        clip_dataset(train_clips, config.batch_size, config.seed, config, repeats, True, config.mixup_alpha),
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
        validation_data=clip_dataset(fer_val_maps, 256, dense_targets=True),
        shuffle=False,  # clip_dataset shuffles
        callbacks=run.callbacks("val_accuracy"),
        verbose=verbose,
    )
    trainable.load_weights(run.best_weights)  # top_blocks share the backbone's variables
    if training_model is not model:
        copy_head_weights(training_model, model)
    info = ModelInfo(
        class_names=list(EMOTIONS),
        preprocessing=Preprocessing(config.image_size, 1.0),
        num_frames=VIDEO_FRAMES,
        model_config=dataclasses.replace(config.model_config(), backbone_weights=None),
        alignment=dataclasses.replace(SHIPPED_ALIGNMENT, output_size=config.image_size),
        training_data=training_data(config),
        keras_version=keras.__version__,
    )
    save_float16_weights(model, config.output_dir, info)
    report = {
        "config": dataclasses.asdict(config),
        "train_clips": {"fer2013": len(fer_train) - sum(extra_sizes.values()), **extra_sizes, "ck48": len(ck48_train)},
        "skipped_classes": {"fer2013": fer_skipped, "ck48": ck48_skipped},
        "history": read_history(run.history_csv),
        "fer2013_validation": evaluate_clips(model, fer_val),
        "ck48_held_out": evaluate_clips(model, ck48_test) if len(ck48_test) else None,
        "ck48_held_out_folds": list(config.held_out_folds),
        "ck48_held_out_scored": {name: evaluate_clips(model, clips) for name, clips in ck48_scored.items() if len(clips)},
    }
    write_json_atomically(os.path.join(config.output_dir, REPORT_FILE), report)
    run.finish()
    return report


def cross_validate(config: FaceClipsConfig, verbose="auto", log=print) -> dict:
    """Subject-wise k-fold figures of the recipe on CK+48 (see the module docstring).

    Returns:
        The summary written to `output_dir/cross_validation.json`.

    Raises:
        InputError: naming the report.json of a fold done before that did not score one of
            `ck48_scored_dirs`.
    """
    reports = []
    for fold in range(config.folds):
        fold_config = dataclasses.replace(
            config,
            output_dir=os.path.join(config.output_dir, f"fold{fold}"),
            held_out_folds=(fold,),
            cache_dir=config.cache_dir or os.path.join(config.output_dir, FEATURE_CACHE_DIR),
        )
        report_path = os.path.join(fold_config.output_dir, REPORT_FILE)
        report = read_json(report_path) if os.path.exists(report_path) else train_face_clips(fold_config, verbose)
        unscored = sorted(set(corpus_names(config.ck48_scored_dirs)) - set(report.get("ck48_held_out_scored", {})))
        if unscored:
            raise InputError(report_path, f"this fold was run without scoring {unscored} (ck48_scored_dirs): use another output_dir")
        held_out = report["ck48_held_out"]
        log(f"fold {fold}: CK+48 held-out accuracy {held_out['accuracy']:.4f} ({held_out['num_examples']} clips)")
        reports.append(report)

    def mean_std(values) -> dict:
        return {"mean": float(np.mean(values)), "std": float(np.std(values)), "per_fold": [float(v) for v in values]}

    summary = {
        "config": dataclasses.asdict(config),
        "ck48_held_out_accuracy": mean_std([report["ck48_held_out"]["accuracy"] for report in reports]),
        "ck48_held_out_uar": mean_std([report["ck48_held_out"]["unweighted_average_recall"] for report in reports]),
        "ck48_held_out_clips": [report["ck48_held_out"]["num_examples"] for report in reports],
        "ck48_held_out_scored_accuracy": {
            name: mean_std([report["ck48_held_out_scored"][name]["accuracy"] for report in reports])
            for name in corpus_names(config.ck48_scored_dirs)
        },
        "fer2013_validation_accuracy": mean_std([report["fer2013_validation"]["accuracy"] for report in reports]),
    }
    write_json_atomically(os.path.join(config.output_dir, CROSS_VALIDATION_FILE), summary)
    return summary
