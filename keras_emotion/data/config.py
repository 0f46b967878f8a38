"""`InputConfig`: what the tf.data input pipeline (`data.pipeline`) reads and how it samples,
augments and batches.

A plain dataclass: importing it loads neither TensorFlow nor dlib nor OpenCV, so training
configurations can be read and written, and models built, where TensorFlow is absent.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Optional

from keras_emotion.data import schema

SAMPLINGS = ("random", "uniform", "all")
# S, the side of the face crop a model is fed, unless configured: the input pipeline's and the
# model's default (`models.config.ModelConfig.image_size`), so that the two agree.
DEFAULT_IMAGE_SIZE = 112


def resize_size(image_size: int, crop_fraction: float) -> int:
    """R, the side a frame is resized to before its S x S crop: S / crop_fraction rounded,
    at least S (the paper resizes to 256 to crop 224: crop_fraction 0.875)."""
    return max(image_size, round(image_size / crop_fraction))


@dataclasses.dataclass
class InputConfig:
    """What `build_dataset` reads and how it samples, augments and batches.

    Attributes:
        file_pattern: a glob of TFRecord shards, or a directory holding
            `<split>-*.tfrecord` shards (see `schema.shard_pattern`).
        split: split name, used only when `file_pattern` is a directory.
        training: True for training (shuffle, random crop, flip, jitter), False for evaluation.
        num_frames: F, frames per clip for "random" and "uniform" sampling.
        image_size: S, side of the square crop that is returned.
        crop_fraction: S / side of the resized frame the crop is taken from, in (0, 1].
        sampling: one of SAMPLINGS; None picks "random" when training, else "uniform".
        global_batch_size: clips per step over all replicas.
        shuffle_buffer: clips in the shuffle buffer (training only).
        repeat: repeat the data forever (the caller decides epochs / steps).
        drop_remainder: drop the last partial batch; None means "when training".
        seed: seed of shuffling, sampling and augmentation. None draws one when the config is
            created and stores it here, so it can be logged and reused.
        deterministic: keep the element order fixed despite parallel reads and maps.
        flip: random horizontal flip when training.
        color_jitter: random brightness and contrast change when training.
        brightness_delta: brightness shift drawn from [-delta, delta], in 0..255 pixel units.
        contrast_range: (low, high) of the contrast factor.
        cycle_length: shards read in parallel.
        check_shards: read the first record of every shard when the dataset is built, so that
            a file that is not a clip TFRecord is reported by name (one small read per shard).
    """

    file_pattern: str
    split: str = "train"
    training: bool = False
    num_frames: int = 16
    image_size: int = DEFAULT_IMAGE_SIZE
    crop_fraction: float = 0.875
    sampling: Optional[str] = None
    global_batch_size: int = 8
    shuffle_buffer: int = 256
    repeat: bool = False
    drop_remainder: Optional[bool] = None
    seed: Optional[int] = None
    deterministic: bool = True
    flip: bool = True
    color_jitter: bool = False
    brightness_delta: float = 32.0
    contrast_range: tuple = (0.8, 1.25)
    cycle_length: int = 4
    check_shards: bool = True

    def __post_init__(self):
        if self.sampling is None:
            self.sampling = "random" if self.training else "uniform"
        if self.drop_remainder is None:
            self.drop_remainder = self.training
        if self.seed is None:
            self.seed = random.SystemRandom().randrange(2**31)
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"InputConfig.sampling={self.sampling!r}; expected one of {SAMPLINGS}")
        if not 0.0 < self.crop_fraction <= 1.0:
            raise ValueError(f"InputConfig.crop_fraction={self.crop_fraction}; must be in (0, 1]")
        for field in ("num_frames", "image_size", "global_batch_size", "shuffle_buffer", "cycle_length"):
            if getattr(self, field) < 1:
                raise ValueError(f"InputConfig.{field}={getattr(self, field)}; must be >= 1")
        low, high = self.contrast_range
        if not 0.0 < low <= high:
            raise ValueError(f"InputConfig.contrast_range={self.contrast_range}; need 0 < low <= high")

    @property
    def resize_size(self) -> int:
        """R, the side every frame is resized to before the S x S crop (`resize_size`)."""
        return resize_size(self.image_size, self.crop_fraction)

    @property
    def resolved_pattern(self) -> str:
        """The glob of the shards: `file_pattern`, or the split's shards when it is a directory
        (checked with `tf.io.gfile`, so any filesystem TensorFlow knows works)."""
        import tensorflow as tf

        if tf.io.gfile.isdir(self.file_pattern):
            return schema.shard_pattern(self.file_pattern, self.split)
        return self.file_pattern
