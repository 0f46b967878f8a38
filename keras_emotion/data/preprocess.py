"""The corpus runner: clips -> aligned faces -> sharded TFRecords, in parallel and resumable.

`process_clip` is the one per-clip function (read frames, align, JPEG-encode, build an
`AlignedClip`); `preprocess_corpus` runs it over a corpus with N worker processes and
writes, in the corpus's clip order whatever the number of workers (the same shards every run),

    <output_dir>/<split>-NNNNN.tfrecord   shards of serialised clips, each at most
                                          `shard_bytes` (unless one clip is larger)
    <output_dir>/manifest.json            class names, counts, parameters, versions, shards
    <output_dir>/report.json              what this run did, every failure with its reason,
                                          every video kept with fewer frames than it claims

Atomicity and resume. A shard is written as `.<split>-NNNNN.tfrecord.tmp` (never matched
by `schema.shard_pattern`) and renamed only once closed, so every file that looks like a
shard is complete. On a new run the clip ids are read back from the complete shards
themselves (the one source of truth: no sidecar index can disagree with them); those
clips are skipped, leftover temp shards of an interrupted run are deleted, and new
shards continue the numbering. A clip is therefore written exactly once. The manifest
(written first with `"complete": false`) records the parameters; resuming with other
parameters or class names is refused. One run per output folder at a time (scripts/
preprocess.py holds its `files.OutputDirLock`). Workers end with their parent, even a
SIGKILLed one (`processes.die_with_parent`).

TensorFlow is imported only where records are written or read, so worker processes,
which only align faces, start without it.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import importlib.metadata
import multiprocessing
import os
import platform
import sys
import time
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

import cv2
import dlib
import numpy as np

import keras_emotion
from keras_emotion.data import schema
from keras_emotion.data.datasets import ClipSource, Failure
from keras_emotion.data.faces import AlignmentConfig, FaceAligner, encode_jpeg
from keras_emotion.data.manifest import Manifest, ShardSummary, manifest_path, read_manifest, write_manifest
from keras_emotion.data.video import InputError, claimed_frame_count, read_frames, read_image
from keras_emotion.files import TEMP_SUFFIX, temp_path, write_json_atomically
from keras_emotion.processes import die_with_parent

STAGES = ("reading", "detection", "landmarks", "alignment", "encoding")
REPORT_NAME = "report.json"
# Clips per worker process submitted ahead of the one written next (see `_outcomes_in_pool`).
CLIPS_AHEAD_PER_WORKER = 4
_RECORD_OVERHEAD = 16  # TFRecord framing per record: length (8), its CRC (4), data CRC (4)


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """Settings of preprocessing.

    Attributes:
        alignment: the face aligner's settings (output size, landmarks, CNN fallback, JPEG quality).
        max_side: frames whose longer side exceeds this are downscaled when read.
        shard_bytes: a shard is closed before it would grow beyond this many bytes.
    """

    alignment: AlignmentConfig = AlignmentConfig()
    max_side: int = 1280
    shard_bytes: int = 64 * 2**20

    def parameters(self) -> dict:
        """The settings that change what is written (a resumed run must use the same)."""
        return {"alignment": dataclasses.asdict(self.alignment), "max_side": self.max_side}


@dataclasses.dataclass
class ClipStats:
    """Counters of processed clips: frames, frames with a detected face, CNN fallbacks, seconds
    per stage; and `truncated_clips`, one record per clip kept although fewer frames decoded
    than its container claims ({"clip_id", "path", "truncated": True, "frames_read",
    "frames_expected"}): a truncated file or a decode error mid-video."""

    frames: int = 0
    faces_found: int = 0
    cnn_fallbacks: int = 0
    seconds: dict = dataclasses.field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    truncated_clips: list = dataclasses.field(default_factory=list)

    def add(self, other: "ClipStats") -> None:
        self.frames += other.frames
        self.faces_found += other.faces_found
        self.cnn_fallbacks += other.cnn_fallbacks
        self.truncated_clips += other.truncated_clips
        for stage, seconds in other.seconds.items():
            self.seconds[stage] += seconds


@dataclasses.dataclass(frozen=True)
class ShardEntry:
    """What the manifest needs to know of one clip in a shard."""

    clip_id: str
    split: str
    label_name: str
    num_frames: int


@dataclasses.dataclass
class Report:
    """The outcome of `preprocess_corpus`.

    Attributes:
        clips: clips asked for.
        written: clips written by this run.
        already_done: clips found in complete shards of an earlier run and skipped.
        stats: frames, faces found, CNN fallbacks and seconds per stage of the written clips.
        wall_seconds: duration of the run.
        failures: every clip left out (and every file the dataset listing skipped), with why.
    """

    clips: int
    written: int
    already_done: int
    stats: ClipStats
    wall_seconds: float
    failures: list

    @property
    def faces_found_percent(self) -> float:
        return 100.0 * self.stats.faces_found / self.stats.frames if self.stats.frames else 0.0

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["faces_found_percent"] = self.faces_found_percent
        return values

    def summary(self, max_failures: int = 20) -> str:
        """A few human-readable lines: counts, faces found, time shares, the first failures."""
        total = sum(self.stats.seconds.values()) or 1.0
        shares = ", ".join(f"{stage} {100 * sec / total:.0f}%" for stage, sec in self.stats.seconds.items())
        lines = [
            f"{self.clips} clips: {self.written} written, {self.already_done} already done, "
            f"{len(self.failures)} failures; {self.stats.frames} frames, faces found in "
            f"{self.faces_found_percent:.1f}%, {self.stats.cnn_fallbacks} CNN fallbacks, "
            f"{len(self.stats.truncated_clips)} truncated videos kept; "
            f"{self.wall_seconds:.1f} s wall; worker time: {shares}"
        ]
        lines += [f"  failed: {failure}" for failure in self.failures[:max_failures]]
        lines += [
            f"  truncated: {clip['path']}: {clip['frames_read']} of {clip['frames_expected']} frames decoded"
            for clip in self.stats.truncated_clips[:max_failures]
        ]
        if len(self.failures) > max_failures:
            lines.append(f"  ... and {len(self.failures) - max_failures} more (see {REPORT_NAME})")
        return "\n".join(lines)


def _read_clip_frames(source: ClipSource, max_side: int) -> tuple[list, float, int]:
    """Frames (F uint8 (H, W, 3) RGB arrays), fps and the number of frames expected (the
    container's claim for a video, else F) of a video, a frame folder or a frame list."""
    if isinstance(source.path, tuple):
        frames = [read_image(path, max_side) for path in source.path]
        return frames, 0.0, len(frames)
    frames, fps = read_frames(source.path, max_side)
    return frames, fps, claimed_frame_count(source.path) or len(frames)


def process_clip(
    source: ClipSource,
    aligner: FaceAligner,
    class_names: Sequence[str],
    config: PreprocessConfig = PreprocessConfig(),
    stats: Optional[ClipStats] = None,
) -> schema.AlignedClip:
    """Reads, aligns and JPEG-encodes one clip (pure: writes nothing).

    Args:
        source: the clip.
        aligner: the face aligner (its config gives output size and JPEG quality).
        class_names: the classes; the label is the index of `source.label_name`.
        config: `max_side` applies when reading frames.
        stats: when given, this clip's frames, faces, CNN fallbacks and seconds are added to
            it, and its record to `truncated_clips` when fewer frames decoded than expected.

    Returns:
        An AlignedClip with F JPEGs of S x S aligned faces, `detected` bool (F,) and
        `landmarks` float32 (F, K, 2).

    Raises:
        InputError: unknown label, missing path, unreadable or corrupt input, no frames.
        NoFaceError: no frame has a face.
    """
    if source.label_name not in class_names:
        reason = f"unknown label {source.label_name!r}; expected one of {list(class_names)}"
        raise InputError(source.display_path, reason)
    if isinstance(source.path, tuple) and not source.path:
        raise InputError(source.clip_id, "clip has no frame files")
    started = time.perf_counter()
    frames, fps, frames_expected = _read_clip_frames(source, config.max_side)
    reading_seconds = time.perf_counter() - started
    aligned = aligner.align_clip(frames, source=source.display_path)
    started = time.perf_counter()
    jpegs = [encode_jpeg(face, aligner.config.jpeg_quality) for face in aligned.faces]
    if stats is not None:
        truncated = {
            "clip_id": source.clip_id,
            "path": source.display_path,
            "truncated": True,
            "frames_read": len(frames),
            "frames_expected": frames_expected,
        }
        stats.add(
            ClipStats(
                frames=len(jpegs),
                faces_found=int(aligned.detected.sum()),
                cnn_fallbacks=aligned.cnn_fallbacks,
                seconds={"reading": reading_seconds, **aligned.seconds, "encoding": time.perf_counter() - started},
                truncated_clips=[truncated] if len(frames) < frames_expected else [],
            )
        )
    return schema.AlignedClip(
        clip_id=source.clip_id,
        label=list(class_names).index(source.label_name),
        label_name=source.label_name,
        source=source.display_path,
        subject=source.subject,
        split=source.split,
        fps=fps,
        frames_jpeg=jpegs,
        detected=aligned.detected,
        landmarks=aligned.landmarks,
    )


def describe_failure(error: Exception, source: ClipSource) -> Failure:
    """The Failure of `source` for an error raised while processing it; the path is the bad file."""
    if isinstance(error, InputError):
        return Failure(error.path, error.reason, source.clip_id)
    message = str(error)
    prefix = f"{source.display_path}: "
    if message.startswith(prefix):
        message = message[len(prefix) :]
    if not isinstance(error, ValueError):
        message = f"{type(error).__name__}: {message}"
    return Failure(source.display_path, message, source.clip_id)


@dataclasses.dataclass
class ClipOutcome:
    """The result of one clip: the clip, or its failure; and its stats."""

    clip: Optional[schema.AlignedClip]
    failure: Optional[Failure]
    stats: ClipStats


def run_clip(
    source: ClipSource, aligner: FaceAligner, class_names: Sequence[str], config: PreprocessConfig
) -> ClipOutcome:
    """`process_clip` that never raises: an Exception becomes the outcome's failure."""
    stats = ClipStats()
    try:
        return ClipOutcome(process_clip(source, aligner, class_names, config, stats), None, stats)
    except Exception as error:  # noqa: BLE001 - any bad clip is a reported skip, never the job's end
        return ClipOutcome(None, describe_failure(error, source), stats)


_worker_state: dict = {}


def _start_worker(parent_pid: int, class_names: Sequence[str], config: PreprocessConfig) -> None:
    """Initializer of a worker process: ends with its parent `parent_pid` (even a SIGKILLed
    one); its own FaceAligner."""
    die_with_parent(parent_pid)
    _worker_state.update(aligner=FaceAligner(config.alignment), class_names=class_names, config=config)


def _run_clip_in_worker(source: ClipSource) -> ClipOutcome:
    return run_clip(source, _worker_state["aligner"], _worker_state["class_names"], _worker_state["config"])


def _outcomes_in_process(clips: Sequence[ClipSource], class_names, config) -> Iterator[ClipOutcome]:
    aligner = FaceAligner(config.alignment)
    for source in clips:
        yield run_clip(source, aligner, class_names, config)


def _outcomes_in_pool(clips: Sequence[ClipSource], class_names, config, num_workers: int) -> Iterator[ClipOutcome]:
    """Outcomes in the order of `clips` from `num_workers` spawned processes, so that the
    shards hold the clips in the same order whatever the workers' speeds.

    At most `CLIPS_AHEAD_PER_WORKER` clips per worker are in flight or done but waiting for an
    earlier one, so finished clips never pile up in memory.
    """
    executor = concurrent.futures.ProcessPoolExecutor(
        num_workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(os.getpid(), class_names, config),
    )
    waiting = iter(clips)
    in_order = collections.deque()

    def submit_next() -> None:
        source = next(waiting, None)
        if source is not None:
            in_order.append(executor.submit(_run_clip_in_worker, source))

    try:
        for _ in range(CLIPS_AHEAD_PER_WORKER * num_workers):
            submit_next()
        while in_order:
            outcome = in_order.popleft().result()
            submit_next()
            yield outcome
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def read_shard_entries(path: str) -> list:
    """The ShardEntry of every clip in one shard file (`schema.parse_clip` reads them)."""
    import tensorflow as tf

    entries = []
    try:
        for parsed in tf.data.TFRecordDataset(path).map(schema.parse_clip).as_numpy_iterator():
            names = (parsed[name].decode() for name in ("clip_id", "split", "label_name"))
            entries.append(ShardEntry(*names, int(parsed["num_frames"])))
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
        raise InputError(path, f"corrupt shard ({error.message}); delete it to process its clips again") from None
    return entries


def index_shards(output_dir: str) -> dict:
    """{shard file name: [ShardEntry, ...]} of every complete shard in `output_dir`."""
    import tensorflow as tf

    paths = tf.io.gfile.glob(schema.shard_pattern(output_dir))
    return {
        os.path.basename(path): read_shard_entries(path)
        for path in sorted(paths)
        if schema.parse_shard_name(os.path.basename(path))
    }


def library_versions() -> dict:
    """Versions of Python and of the libraries that shape the preprocessed data."""
    import tensorflow as tf

    return {
        "keras_emotion": keras_emotion.__version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": importlib.metadata.version("keras"),
        "dlib": dlib.__version__,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
    }


def build_manifest(class_names: Sequence[str], config: PreprocessConfig, shards: dict, complete: bool) -> Manifest:
    """The manifest of an output folder whose shards hold `shards` ({file name: [ShardEntry]})."""
    counts, frames = {}, {}
    summaries = []
    for name, entries in sorted(shards.items()):
        split, _ = schema.parse_shard_name(name)
        summaries.append(ShardSummary(name, split, len(entries), sum(entry.num_frames for entry in entries)))
        for entry in entries:
            counts.setdefault(entry.split, dict.fromkeys(class_names, 0))[entry.label_name] += 1
            frames[entry.split] = frames.get(entry.split, 0) + entry.num_frames
    return Manifest(
        class_names=class_names,
        alignment=config.alignment,
        max_side=config.max_side,
        complete=complete,
        counts=counts,
        frames=frames,
        num_clips=sum(len(entries) for entries in shards.values()),
        shard_bytes=config.shard_bytes,
        shards=summaries,
        versions=library_versions(),
    )


class _ShardWriter:
    """Writes the records of one split into shards of at most `max_bytes` bytes.

    Each shard is written under its `files.temp_path` and renamed to `<split>-NNNNN.tfrecord`
    when closed; `shards` receives its entries at that moment.
    """

    def __init__(self, output_dir: str, split: str, first_index: int, max_bytes: int, shards: dict):
        self._output_dir, self._split, self._next_index = output_dir, split, first_index
        self._max_bytes, self._shards = max_bytes, shards
        self._writer, self._path, self._entries, self._bytes = None, "", [], 0

    def write(self, record: bytes, entry: ShardEntry) -> None:
        import tensorflow as tf

        size = len(record) + _RECORD_OVERHEAD
        if self._writer is not None and self._bytes + size > self._max_bytes:
            self.close()
        if self._writer is None:
            self._path = os.path.join(self._output_dir, schema.shard_name(self._split, self._next_index))
            self._next_index += 1
            self._writer = tf.io.TFRecordWriter(temp_path(self._path))
        self._writer.write(record)
        self._entries.append(entry)
        self._bytes += size

    def close(self) -> None:
        """Finishes the open shard: closes it and renames it to its final name."""
        if self._writer is None:
            return
        self._writer.close()
        os.replace(temp_path(self._path), self._path)
        self._shards[os.path.basename(self._path)] = self._entries
        self._writer, self._entries, self._bytes = None, [], 0

    def abandon(self) -> None:
        """Drops the open shard (its clips will be processed again by the next run)."""
        if self._writer is None:
            return
        self._writer.close()
        os.remove(temp_path(self._path))
        self._writer, self._entries, self._bytes = None, [], 0


class ConsoleProgress:
    """Progress line on stderr, rewritten in place at most every `interval` seconds:
    `task`: items done (`unit`), failures (`failed`), rate, time left."""

    def __init__(
        self, stream=None, interval: float = 0.5, task: str = "preprocess", unit: str = "clips", failed: str = "failed"
    ):
        self._stream = stream or sys.stderr
        self._interval = interval
        self._task, self._unit, self._failed = task, unit, failed
        self._started = time.monotonic()
        self._shown = -interval

    def __call__(self, done: int, total: int, failed: int) -> None:
        elapsed = time.monotonic() - self._started
        if elapsed - self._shown < self._interval and done < total:
            return
        self._shown = elapsed
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (total - done) / rate if rate > 0 else 0.0
        self._stream.write(
            f"\r{self._task}: {done}/{total} {self._unit} ({100 * done / max(total, 1):.0f}%), {failed} {self._failed}, "
            f"{rate:.1f} {self._unit}/s, {left:.0f} s left "
        )
        if done == total:
            self._stream.write("\n")
        self._stream.flush()


def _check_resumable(output_dir: str, class_names: list, config: PreprocessConfig, shards: dict) -> None:
    """Raises ValueError when existing shards were written with other class names or parameters."""
    if not shards:
        return
    manifest = read_manifest(output_dir)
    if manifest is None:
        raise ValueError(f"{output_dir}: has shards but no {schema.MANIFEST_NAME}; use an empty output folder")
    wanted = {
        "class_names": list(class_names),
        "preprocessing": config.parameters(),
        "schema_version": schema.SCHEMA_VERSION,
    }
    found = {
        "class_names": list(manifest.class_names),
        "preprocessing": manifest.preprocessing,
        "schema_version": manifest.schema_version,
    }
    differing = [key for key, value in wanted.items() if found[key] != value]
    if differing:
        raise ValueError(
            f"{manifest_path(output_dir)}: existing shards were written with other {', '.join(differing)} "
            f"({', '.join(f'{key}={found[key]!r}' for key in differing)}); use another output folder"
        )


def _remove_stale_temp_shards(output_dir: str) -> None:
    for name in os.listdir(output_dir):
        shard_name = name[1 : -len(TEMP_SUFFIX)]
        if schema.parse_shard_name(shard_name) and name == temp_path(shard_name):
            os.remove(os.path.join(output_dir, name))


def preprocess_corpus(
    clips: Iterable[ClipSource],
    output_dir: str,
    config: PreprocessConfig = PreprocessConfig(),
    num_workers: int = 1,
    class_names: Optional[Sequence[str]] = None,
    skipped: Sequence[Failure] = (),
    progress: Union[bool, Callable[[int, int, int], None]] = True,
) -> Report:
    """Preprocesses clips into sharded TFRecords with a manifest and a report (see the module doc).

    Args:
        clips: the clips (unique clip ids; split names of letters, digits and "_").
        output_dir: the output folder, created if missing; a folder of an interrupted run
            with the same parameters is resumed.
        config: preprocessing settings.
        num_workers: processes aligning faces; 1 aligns in this process.
        class_names: the classes in label-index order; None: sorted labels of `clips`.
        skipped: failures of the dataset listing, copied into the report.
        progress: True for a progress line on stderr, False for none, or a callable
            `(clips done, clips to do, failures)` called after each clip.

    Returns:
        The Report, also saved as `<output_dir>/report.json`.

    Raises:
        ValueError: repeated clip ids, bad split names, or an output folder written with
            other parameters. Whatever stops the run (KeyboardInterrupt, a dead worker)
            is raised after the open shards are dropped; complete shards stay.
    """
    started = time.monotonic()
    clips = list(clips)
    class_names = list(class_names) if class_names is not None else sorted({clip.label_name for clip in clips})
    repeated = sorted(clip_id for clip_id, count in collections.Counter(c.clip_id for c in clips).items() if count > 1)
    if repeated:
        raise ValueError(f"clip ids repeat: {repeated[:10]}")
    bad_splits = sorted({clip.split for clip in clips if not schema.SPLIT_NAME.match(clip.split)})
    if bad_splits:
        raise ValueError(f"split names must be letters, digits and '_': {bad_splits}")

    os.makedirs(output_dir, exist_ok=True)
    _remove_stale_temp_shards(output_dir)
    shards = index_shards(output_dir)
    _check_resumable(output_dir, class_names, config, shards)
    done_split = {entry.clip_id: entry.split for entries in shards.values() for entry in entries}
    moved = [clip.clip_id for clip in clips if done_split.get(clip.clip_id, clip.split) != clip.split]
    if moved:
        raise ValueError(f"{output_dir}: clips already in shards of another split: {moved[:10]}; use another folder")
    write_manifest(output_dir, build_manifest(class_names, config, shards, complete=False))

    todo = [clip for clip in clips if clip.clip_id not in done_split]
    last_index = {}
    for name in shards:
        split, index = schema.parse_shard_name(name)
        last_index[split] = max(last_index.get(split, -1), index)
    writers = {
        split: _ShardWriter(output_dir, split, last_index.get(split, -1) + 1, config.shard_bytes, shards)
        for split in sorted({clip.split for clip in todo})
    }
    report_progress = ConsoleProgress() if progress is True else progress or None
    stats, failures, written = ClipStats(), list(skipped), 0
    outcomes = (
        _outcomes_in_pool(todo, class_names, config, num_workers)
        if num_workers > 1 and len(todo) > 1
        else _outcomes_in_process(todo, class_names, config)
    )
    try:
        for done, outcome in enumerate(outcomes, start=1):
            stats.add(outcome.stats)
            if outcome.clip is None:
                failures.append(outcome.failure)
            else:
                clip = outcome.clip
                entry = ShardEntry(clip.clip_id, clip.split, clip.label_name, clip.num_frames)
                writers[clip.split].write(schema.serialize_clip(clip), entry)
                written += 1
            if report_progress:
                report_progress(done, len(todo), len(failures) - len(skipped))
    except BaseException:
        outcomes.close()
        for writer in writers.values():
            writer.abandon()
        raise
    for writer in writers.values():
        writer.close()

    write_manifest(output_dir, build_manifest(class_names, config, shards, complete=True))
    report = Report(len(clips), written, len(clips) - len(todo), stats, time.monotonic() - started, failures)
    write_json_atomically(os.path.join(output_dir, REPORT_NAME), report.to_dict())
    return report
