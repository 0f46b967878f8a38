"""Checks of preprocessed data before training or evaluation reads it.

`verify_shards(paths, allow_incomplete)` reads every record of every shard once (TensorFlow's
TFRecord reader checks each record's framing: the length and its masked CRC32C, the data and
its masked CRC32C) and compares the record counts with the `manifest.json` beside the shards,
so a truncated or damaged shard is named before the first epoch, not as a `DataLossError`
deep inside `model.fit` (after a whole epoch, for a validation shard). A manifest of an
interrupted preprocessing run (`"complete": false`) is refused unless `allow_incomplete`.

Reading is C++ only (a `tf.data` reduction per shard): about the cost of copying the files.
"""

from __future__ import annotations

import os
import warnings
from typing import Sequence

import tensorflow as tf

from keras_emotion.data.manifest import manifest_path, read_manifest


class DataIntegrityError(ValueError):
    """A shard or manifest that training or evaluation must not read; the message names it."""


def count_records(path: str) -> int:
    """The number of records of the TFRecord file `path`, every CRC checked.

    Raises:
        DataIntegrityError: a truncated file or a record whose length or data fails its CRC.
    """
    try:
        return int(tf.data.TFRecordDataset(path).reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))
    except tf.errors.DataLossError as error:
        raise DataIntegrityError(
            f"{path}: corrupt TFRecord shard ({error.message}); delete it and rerun preprocess.py "
            "with the same arguments to write its clips again"
        ) from None


def verify_shards(paths: Sequence[str], allow_incomplete: bool = False) -> None:
    """Checks the shards `paths` (of one folder) and the `manifest.json` beside them, if any.

    Raises:
        DataIntegrityError: the manifest says `"complete": false` (and not `allow_incomplete`),
            a shard is corrupt, or holds another number of records than the manifest lists.
    """
    if not paths:
        return
    folder = os.path.dirname(paths[0])
    manifest = read_manifest(folder)
    if manifest is not None and not manifest.complete:
        message = (
            f"{manifest_path(folder)}: preprocessing did not finish (\"complete\": false, {manifest.num_clips} "
            "clips written so far)"
        )
        if not allow_incomplete:
            raise DataIntegrityError(
                f"{message}; rerun preprocess.py with the same arguments to finish it, or pass "
                "--allow_incomplete to use the clips written so far"
            )
        warnings.warn(f"{message}; using them (allow_incomplete)", stacklevel=2)
    listed = {shard.file: shard for shard in (manifest.shards if manifest is not None else ())}
    for path in paths:
        records = count_records(path)
        entry = listed.get(os.path.basename(path))
        if entry is not None and records != entry.clips:
            raise DataIntegrityError(
                f"{path}: {records} records, but {manifest_path(folder)} lists {entry.clips}; rerun "
                "preprocess.py into a new output folder"
            )
