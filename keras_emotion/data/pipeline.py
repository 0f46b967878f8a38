"""The tf.data input pipeline: aligned-face TFRecord shards -> batches of frame stacks.

What is read and how is an `InputConfig` (`data.config`, importable without TensorFlow).

Order of the stages (`build_dataset`):

    list shards -> shard per input pipeline (tf.distribute) -> interleave TFRecordDataset
    -> shuffle (training) -> repeat (optional) -> parse with `schema.parse_clip`
    -> choose frame indices -> decode ONLY the chosen JPEGs -> resize, crop, flip, jitter
    -> batch per replica -> prefetch

Elements are `(features, labels)`:

    features["frames"]      float32 (B, F, S, S, 3) RGB, values in 0..255
    features["frame_mask"]  float32 (B, F), 1 for a real frame, 0 for padding
    labels                  int32 (B,)

Pixels are NOT normalised here: the model's backbone normalises its own input, so the
normalisation always matches the backbone that is used.

Frame sampling (F = `InputConfig.num_frames`, T = frames in the clip):

    "random"  (training default) F frames drawn per clip, in temporal order. When T >= F they
              are F distinct frames. A clip shorter than F is looped: every frame is used
              F // T times and F % T randomly chosen frames once more, so nothing is zero-padded.
    "uniform" (evaluation default) F evenly spaced frames, frame floor((2i + 1) T / 2F) for
              i = 0..F-1 (the centres of F equal segments); a short clip repeats frames the
              same way.
    "all"     every frame of the clip; a batch is padded to its longest clip and
              `frame_mask` marks the padding.

Augmentation (only when `training`): one random crop, one horizontal flip and one
brightness/contrast change per clip, applied identically to all of its frames. At evaluation
the crop is the centre crop. A crop is S x S out of the frame resized to R = image_size /
crop_fraction (the paper resizes to 256 and crops 224: crop_fraction 0.875). Decoding, resizing
and cropping are `data.model_input`'s (what the SavedModel and inference do too): at evaluation
`decode_resized` then `centre_crop`, in training `decode_random_crop`. Flip and jitter follow on
the S x S floats, and one clip to 0..255 ends them.

The CPU cost (`scripts/bench_pipeline.py`, 16 of 48 frames, S = 64, R = 73): a decode at 1/2
scale costs about 0.72 of a full-scale decode of the same JPEG (the entropy decoding is the same),
so the window resize, parsing and augmentation have to stay within about a third of a decode for
the pipeline to run near the speed of bare decoding; hence only the chosen frames are decoded,
only the needed features parsed, uint8 pixels averaged directly and every pass over the floats
counted.

Randomness is stateless: every clip gets its own seed from `tf.data.Dataset.random(seed)`, so
the same `InputConfig.seed` gives the same batches and a different seed different ones.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from keras_emotion.data import schema
from keras_emotion.data.config import SAMPLINGS, InputConfig
from keras_emotion.data.model_input import centre_crop, decode_random_crop, decode_resized


def build_dataset(
    config: InputConfig, input_context: Optional[tf.distribute.InputContext] = None
) -> tf.data.Dataset:
    """Builds the input pipeline described in the module docstring.

    Args:
        config: the InputConfig.
        input_context: given by `strategy.distribute_datasets_from_function`; this pipeline then
            reads only its share of the shards and batches per replica.

    Returns:
        A dataset of `({"frames": float32 (B, F, S, S, 3), "frame_mask": float32 (B, F)},
        labels int32 (B,))`, B the per-replica batch size. F is `num_frames`, or the longest clip
        of the batch for "all" sampling.
    """
    records = _ordered_records(config, input_context)
    clip_seeds = tf.data.Dataset.random(
        seed=_pipeline_seed(config, input_context), rerandomize_each_iteration=True
    )
    examples = tf.data.Dataset.zip((records, clip_seeds)).map(
        lambda serialized, clip_seed: _make_example(serialized, clip_seed, config),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=config.deterministic,
    )
    batch_size = _per_replica_batch_size(config, input_context)
    if config.sampling == "all":
        batches = examples.padded_batch(batch_size, drop_remainder=config.drop_remainder)
    else:
        batches = examples.batch(
            batch_size,
            drop_remainder=config.drop_remainder,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=config.deterministic,
        )
    return batches.prefetch(tf.data.AUTOTUNE)


def build_clip_id_dataset(
    config: InputConfig, input_context: Optional[tf.distribute.InputContext] = None
) -> tf.data.Dataset:
    """The clip ids of the batches of `build_dataset(config, input_context)`, batch for batch.

    Keras functional models reject feature dicts with extra keys, so the ids are kept out of
    the model's inputs and come from this second, cheap dataset (no JPEG is decoded). Zip the
    two to label predictions with clip ids.

    Returns:
        A dataset of string tensors (B,).

    Raises:
        ValueError: when `config.deterministic` is False (the two orders could then differ).
    """
    if not config.deterministic:
        raise ValueError(
            "build_clip_id_dataset needs InputConfig.deterministic=True to match build_dataset's order"
        )
    clip_ids = _ordered_records(config, input_context).map(
        lambda serialized: schema.parse_clip(serialized, features=("clip_id",))["clip_id"],
        num_parallel_calls=tf.data.AUTOTUNE
    )
    batch_size = _per_replica_batch_size(config, input_context)
    return clip_ids.batch(batch_size, drop_remainder=config.drop_remainder)


def list_shards(config: InputConfig) -> list:
    """The sorted shard paths of `config`, checked when `config.check_shards`.

    Raises:
        ValueError: no file matches the pattern (naming it), or a shard is not a clip TFRecord
            (naming the shard).
    """
    pattern = config.resolved_pattern
    paths = sorted(tf.io.gfile.glob(pattern))
    if not paths:
        raise ValueError(f"no TFRecord shards match {pattern!r}")
    if config.check_shards:
        for path in paths:
            _check_shard(path)
    return paths


def sample_frame_indices(clip_length, num_frames: int, sampling: str, seed):
    """Indices of the frames to use from a clip, in temporal order (see the module docstring).

    Args:
        clip_length: T, scalar int32 tensor, frames in the clip (> 0).
        num_frames: F, frames wanted ("random" and "uniform"; ignored by "all").
        sampling: one of SAMPLINGS.
        seed: int shape (2,) stateless seed (used by "random").

    Returns:
        int32 (F,) sorted indices into 0..T-1, or (T,) = 0..T-1 for "all".
    """
    if sampling == "all":
        return tf.range(clip_length)
    if sampling == "uniform":
        steps = tf.range(num_frames)
        return (2 * steps + 1) * clip_length // (2 * num_frames)
    if sampling == "random":
        every_frame = tf.tile(tf.range(clip_length), [num_frames // clip_length])
        shuffled = tf.argsort(tf.random.stateless_uniform([clip_length], seed=seed))
        extra_frames = shuffled[: num_frames % clip_length]
        return tf.sort(tf.concat([every_frame, tf.cast(extra_frames, tf.int32)], axis=0))
    raise ValueError(f"sampling={sampling!r}; expected one of {SAMPLINGS}")


def _check_shard(path: str) -> None:
    """Reads and parses the first record of `path`; raises ValueError naming it if that fails."""
    try:
        for serialized in tf.data.TFRecordDataset(path).take(1):
            schema.parse_clip(serialized)
    except tf.errors.DataLossError as error:
        raise ValueError(f"{path} is not a TFRecord file: {error.message}") from error
    except tf.errors.InvalidArgumentError as error:
        raise ValueError(f"{path}: the first record is not an aligned clip: {error.message}") from error


def _ordered_records(config: InputConfig, input_context) -> tf.data.Dataset:
    """Serialised clips in the order `build_dataset` uses: read, shuffled and repeated."""
    paths = list_shards(config)
    files = tf.data.Dataset.from_tensor_slices(paths)
    if input_context is not None and input_context.num_input_pipelines > 1:
        if len(paths) < input_context.num_input_pipelines:
            raise ValueError(
                f"{len(paths)} shards match {config.resolved_pattern!r}: too few for "
                f"{input_context.num_input_pipelines} input pipelines (need one shard each at least)"
            )
        files = files.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    seed = _pipeline_seed(config, input_context)
    if config.training:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    records = files.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(config.cycle_length, len(paths)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=config.deterministic,
    )
    if config.training:
        records = records.shuffle(config.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if config.repeat:
        records = records.repeat()
    return records


def _pipeline_seed(config: InputConfig, input_context) -> int:
    """The config's seed, made different for each input pipeline."""
    pipeline_id = 0 if input_context is None else input_context.input_pipeline_id
    return config.seed + pipeline_id


def _per_replica_batch_size(config: InputConfig, input_context) -> int:
    if input_context is None:
        return config.global_batch_size
    return input_context.get_per_replica_batch_size(config.global_batch_size)


def _make_example(serialized, clip_seed, config: InputConfig):
    """One serialised clip -> ({"frames": (F, S, S, 3), "frame_mask": (F,)}, label)."""
    clip = schema.parse_clip(serialized, features=("clip_id", "label", "frames"))
    # Every use of the length waits for the check, so an empty clip is reported by id and never
    # reaches the frame gather first (parallel maps run independent ops in any order).
    has_frames = tf.debugging.Assert(tf.shape(clip["frames"])[0] > 0, ["clip has no frames:", clip["clip_id"]])
    with tf.control_dependencies([has_frames]):
        clip_length = tf.identity(tf.shape(clip["frames"])[0])
    sampling_seed, crop_seed, flip_seed, jitter_seed = tf.unstack(
        tf.random.experimental.stateless_split(tf.stack([clip_seed, tf.constant(0, tf.int64)]), num=4)
    )
    indices = sample_frame_indices(clip_length, config.num_frames, config.sampling, sampling_seed)
    if config.training:
        frames = decode_random_crop(clip["frames"], indices, config.resize_size, config.image_size, crop_seed)
        if config.flip:
            flip = tf.random.stateless_uniform([], seed=flip_seed) < 0.5
            frames = tf.cond(flip, lambda: _flip_left_right(frames), lambda: frames)
        if config.color_jitter:
            frames = _jitter(frames, config, jitter_seed)
        frames = tf.clip_by_value(frames, 0.0, 255.0)  # one clip for the jitter and for rounding
    else:
        frames = decode_resized(clip["frames"], indices, config.resize_size)
        frames = centre_crop(frames, config.resize_size, config.image_size)
    num_frames = None if config.sampling == "all" else config.num_frames
    frames = tf.ensure_shape(frames, [num_frames, config.image_size, config.image_size, 3])
    frame_mask = tf.ones([tf.shape(frames)[0]], tf.float32)
    return {"frames": frames, "frame_mask": frame_mask}, clip["label"]


def _jitter(frames, config: InputConfig, seed):
    """One brightness shift and one contrast factor for the whole clip (F, S, S, 3)."""
    brightness_seed, contrast_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    delta = tf.random.stateless_uniform(
        [], seed=brightness_seed, minval=-config.brightness_delta, maxval=config.brightness_delta
    )
    low, high = config.contrast_range
    factor = tf.random.stateless_uniform([], seed=contrast_seed, minval=low, maxval=high)
    return tf.image.adjust_contrast(frames, factor) + delta  # clipped by the caller


def _flip_left_right(frames):
    """(F, S, S, C) mirrored left-right. tf.reverse runs about twice as fast on the 3-D view
    (F * S, S, C) as on the 4-D tensor."""
    shape = tf.shape(frames)
    rows = tf.reshape(frames, [-1, shape[2], shape[3]])
    return tf.reshape(tf.reverse(rows, axis=[1]), shape)
