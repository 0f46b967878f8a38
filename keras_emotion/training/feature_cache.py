"""Backbone maps of face frames, computed once per fixed view, to train heads on a frozen backbone.

With the backbone frozen, everything a head learns from sits above the backbone's last map, so
the maps can be computed once and reused by every epoch, fold and seed. Random augmentation
is replaced by a fixed set of views of each frame:

    VIEWS = (1.0, no mirror), (1.0, mirror), (0.9 centred zoom, no mirror), (0.9, mirror)

the mirror (faces are left-right symmetric, the cheapest real augmentation) and one zoom
(the pre-training crops zoom by up to 1/0.85; 0.9 is its middle). Four views cost 4 backbone
passes per frame once, against one pass per frame per epoch when augmenting images.

    frames uint8 (n, S, S, 3) -> view v: centred crop of side crop_v x S, resized to S,
    mirrored if flip_v -> backbone -> float16 (n, V, h, w, D)

A cache on disk is a folder holding `maps.npy` and `key.json`: the backbone (name, size,
SHA-256 of its weights), the data (a digest of the frames), the views and what the caller adds
(e.g. the face alignment). A cache whose key differs from the one asked for is refused, naming
both: maps of another backbone or alignment must never be mixed in silently. `maps.npy` is
written under a temporary name and renamed, then the key, so a killed run leaves no cache that
looks complete.
"""

from __future__ import annotations

import hashlib
import os
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_emotion.files import atomic_write, read_json, write_json_atomically

VIEWS = ((1.0, False), (1.0, True), (0.9, False), (0.9, True))
"""(crop fraction, mirrored) of each view, view 0 being the frame itself."""
MAPS_FILE = "maps.npy"
KEY_FILE = "key.json"
BATCH_SIZE = 128


def view_frames(frames: np.ndarray, crop_fraction: float, mirrored: bool) -> np.ndarray:
    """One view of uint8 (n, S, S, 3) frames: float32 (n, S, S, 3) 0..255, the centred square of
    side crop_fraction x S resized back to S (bilinear), mirrored left-right if asked."""
    images = tf.cast(tf.convert_to_tensor(frames), tf.float32)
    if crop_fraction < 1.0:
        margin = (1.0 - crop_fraction) / 2.0
        boxes = tf.constant([[margin, margin, 1.0 - margin, 1.0 - margin]], tf.float32)
        count, size = tf.shape(images)[0], tf.shape(images)[1]
        images = tf.image.crop_and_resize(images, tf.repeat(boxes, count, axis=0), tf.range(count), tf.stack([size, size]))
    if mirrored:
        images = images[:, :, ::-1]
    return images.numpy()


def compute_feature_maps(
    backbone: keras.Model,
    frames: np.ndarray,
    views: Sequence = VIEWS,
    batch_size: int = BATCH_SIZE,
    verbose: bool = False,
) -> np.ndarray:
    """The backbone's maps of every view of every frame: uint8 (n, S, S, 3) -> float16 (n, V, h, w, D).

    `verbose`: show a progress bar over the frames (Keras' `Progbar`).
    """
    _, height, width, depth = backbone.output_shape
    maps = np.empty((len(frames), len(views), height, width, depth), np.float16)
    progress = keras.utils.Progbar(len(frames), unit_name="frame") if verbose else None
    for start in range(0, len(frames), batch_size):
        batch = frames[start : start + batch_size]
        for index, (crop_fraction, mirrored) in enumerate(views):
            maps[start : start + len(batch), index] = keras.ops.convert_to_numpy(
                backbone(view_frames(batch, crop_fraction, mirrored), training=False)
            )
        if progress is not None:
            progress.add(len(batch))
    return maps


def weights_digest(backbone: keras.Model) -> str:
    """SHA-256 of the backbone's weight values, in order (what its maps depend on)."""
    digest = hashlib.sha256()
    for weight in backbone.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


def cache_key(backbone_name: str, backbone: keras.Model, frames: np.ndarray, views: Sequence, **extra) -> dict:
    """The key of a cache: what its maps depend on (see the module doc), JSON-ready."""
    return {
        "backbone": backbone_name,
        "input_shape": list(backbone.input_shape[1:]),
        "weights_sha256": weights_digest(backbone),
        "frames": len(frames),
        "frames_blake2b": hashlib.blake2b(np.ascontiguousarray(frames).tobytes(), digest_size=16).hexdigest(),
        "views": [list(view) for view in views],
        **extra,
    }


def load_or_compute(
    cache_dir: Optional[str],
    key: dict,
    backbone: keras.Model,
    frames: np.ndarray,
    views: Sequence = VIEWS,
    verbose: bool = False,
) -> np.ndarray:
    """The maps of `frames` (`compute_feature_maps`), read from `cache_dir` when it holds them.

    Args:
        cache_dir: the cache folder, or None (compute, store nothing).
        key: `cache_key(...)` of this backbone, data and views.
        verbose: show the progress of computing the maps.

    Raises:
        ValueError: `cache_dir` holds maps made with another key; the message names the fields
            that differ, with both values.
    """
    if cache_dir is None:
        return compute_feature_maps(backbone, frames, views, verbose=verbose)
    key_path, maps_path = os.path.join(cache_dir, KEY_FILE), os.path.join(cache_dir, MAPS_FILE)
    if os.path.exists(key_path) and os.path.exists(maps_path):
        cached = read_json(key_path)
        if cached != key:
            differences = {
                field: {"cached": cached.get(field), "wanted": key.get(field)}
                for field in sorted(set(cached) | set(key))
                if cached.get(field) != key.get(field)
            }
            raise ValueError(
                f"{cache_dir}: feature cache made for another backbone, data or alignment: {differences}; "
                "use another cache folder or delete this one"
            )
        return np.load(maps_path)
    maps = compute_feature_maps(backbone, frames, views, verbose=verbose)
    os.makedirs(cache_dir, exist_ok=True)
    with atomic_write(maps_path, keep_suffix=".npy") as temp:
        np.save(temp, maps)
    write_json_atomically(key_path, key)
    return maps
