"""The manifest of a preprocessed corpus folder: what preprocessing wrote and how, typed.

    <folder>/manifest.json          written by `data.preprocess` (local or Beam runner)
    <folder>/<split>-NNNNN.tfrecord the shards (`schema.shard_name`)

Every module reads a manifest through `read_manifest` and gets a `Manifest`; nothing else
opens manifest.json. Its JSON (unchanged since schema version 1):

    {"schema_version": 1, "complete": bool, "class_names": [E names],
     "image_size": S (aligned face side), "counts": {split: {class: clips}},
     "frames": {split: frames}, "num_clips": N,
     "preprocessing": {"alignment": AlignmentConfig fields, "max_side": pixels},
     "shard_bytes": bound, "versions": {library: version},
     "shards": [{"file", "split", "clips", "frames"}]}
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

from keras_emotion.data import schema
from keras_emotion.data.config import InputConfig
from keras_emotion.data.faces import AlignmentConfig
from keras_emotion.files import read_json, write_json_atomically


@dataclasses.dataclass(frozen=True)
class ShardSummary:
    """One shard of a corpus folder: its file name, split, clips and frames."""

    file: str
    split: str
    clips: int
    frames: int = 0


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What a preprocessed corpus folder holds and how its faces were made.

    Attributes:
        class_names: E names; a clip's label is its index here.
        alignment: how the faces were found and aligned (`output_size` = S, the stored side);
            None for shards not written by preprocessing (unknown).
        max_side: frames whose longer side exceeded this were downscaled when read (None: unknown).
        complete: False while (or after an interrupted) preprocessing run writes shards.
        counts: {split: {class name: clips}}.
        frames: {split: frames}.
        num_clips: clips in all shards.
        shard_bytes: the shard size bound of the run (0 for the Beam runner's count bound).
        shards: every shard, by file name.
        versions: {library: version} of the run (Python, TensorFlow, dlib, OpenCV, ...).
        schema_version: `schema.SCHEMA_VERSION` of the records.
    """

    class_names: tuple
    alignment: Optional[AlignmentConfig] = None
    max_side: Optional[int] = None
    complete: bool = True
    counts: dict = dataclasses.field(default_factory=dict)
    frames: dict = dataclasses.field(default_factory=dict)
    num_clips: int = 0
    shard_bytes: int = 0
    shards: tuple = ()
    versions: dict = dataclasses.field(default_factory=dict)
    schema_version: int = schema.SCHEMA_VERSION

    def __post_init__(self):
        object.__setattr__(self, "class_names", tuple(str(name) for name in self.class_names))
        object.__setattr__(self, "shards", tuple(self.shards))

    @property
    def image_size(self) -> Optional[int]:
        """S, the side of the stored aligned faces (None: unknown)."""
        return None if self.alignment is None else self.alignment.output_size

    @property
    def preprocessing(self) -> Optional[dict]:
        """The settings that shaped the faces (a resumed run must use the same), or None."""
        if self.alignment is None:
            return None
        return {"alignment": dataclasses.asdict(self.alignment), "max_side": self.max_side}

    def to_dict(self) -> dict:
        """The JSON object of the module docstring."""
        return {
            "schema_version": self.schema_version,
            "complete": self.complete,
            "class_names": list(self.class_names),
            "image_size": self.image_size,
            "counts": self.counts,
            "frames": self.frames,
            "num_clips": self.num_clips,
            "preprocessing": self.preprocessing,
            "shard_bytes": self.shard_bytes,
            "versions": self.versions,
            "shards": [dataclasses.asdict(shard) for shard in self.shards],
        }

    @classmethod
    def from_dict(cls, values: dict) -> "Manifest":
        """The Manifest of a manifest.json's object (KeyError/TypeError/ValueError if malformed)."""
        preprocessing = values.get("preprocessing")
        return cls(
            class_names=values["class_names"],
            alignment=None if preprocessing is None else AlignmentConfig(**preprocessing["alignment"]),
            max_side=None if preprocessing is None else preprocessing["max_side"],
            complete=values.get("complete", True),
            counts=values.get("counts", {}),
            frames=values.get("frames", {}),
            num_clips=values.get("num_clips", 0),
            shard_bytes=values.get("shard_bytes", 0),
            shards=tuple(ShardSummary(**shard) for shard in values.get("shards", [])),
            versions=values.get("versions", {}),
            schema_version=values.get("schema_version", schema.SCHEMA_VERSION),
        )


def data_folder(data: InputConfig | str) -> str:
    """The folder holding the shards of `data` (an InputConfig or a corpus folder)."""
    if isinstance(data, InputConfig):
        return os.path.dirname(data.resolved_pattern)
    return os.fspath(data)


def manifest_path(data: InputConfig | str) -> str:
    """The path of the manifest.json beside the shards of `data` (InputConfig or folder)."""
    return os.path.join(data_folder(data), schema.MANIFEST_NAME)


def read_manifest(data: InputConfig | str) -> Optional[Manifest]:
    """The Manifest beside the shards of `data` (InputConfig or folder), or None when there is
    no manifest.json.

    Raises:
        ValueError: the file is not valid JSON or lacks a field (naming the file).
    """
    path = manifest_path(data)
    if not os.path.isfile(path):
        return None
    values = read_json(path)
    try:
        return Manifest.from_dict(values)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: not a manifest of this library ({error!r})") from error


def write_manifest(folder: str, manifest: Manifest) -> str:
    """Writes `manifest` atomically to `<folder>/manifest.json`. Returns the file's path."""
    return write_json_atomically(manifest_path(folder), manifest.to_dict())
