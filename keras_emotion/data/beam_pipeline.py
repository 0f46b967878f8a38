"""Preprocessing as an Apache Beam pipeline (optional extra: `pip install keras_emotion[beam]`).

The same per-clip function as `preprocess_corpus` (`preprocess.run_clip`, i.e. `process_clip`)
runs in a DoFn that builds one FaceAligner per worker in `setup()`. Clips are written per
split with `beam.io.WriteToTFRecord` as `<output_dir>/<split>-NNNNN.tfrecord` (Beam writes
to a temp folder and renames on completion, so shards appear complete or not at all), then
the driver indexes the shards and writes `manifest.json` and `report.json` exactly like
the local runner. Failures are written as JSON lines to `<output_dir>/failures.jsonl`
and copied into the report; frame and face counts come from Beam metrics.

Unlike the local runner, shards are bounded by count (`num_shards`, 0 = the runner
chooses), not by size, and a Beam run does not resume: the output folder must hold no
shards.

Only this module imports Beam; nothing else in the package imports this module.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Iterable, Optional, Sequence

try:
    import apache_beam as beam
    from apache_beam.metrics.metric import Metrics, MetricsFilter
except ImportError as error:  # pragma: no cover - depends on the installed extras
    message = "keras_emotion.data.beam_pipeline needs Apache Beam: pip install 'keras_emotion[beam]'"
    raise ImportError(message) from error

from keras_emotion.data import schema
from keras_emotion.data.datasets import ClipSource, Failure
from keras_emotion.data.faces import FaceAligner
from keras_emotion.data.manifest import write_manifest
from keras_emotion.data.preprocess import (
    REPORT_NAME,
    STAGES,
    ClipStats,
    PreprocessConfig,
    Report,
    index_shards,
    build_manifest,
    run_clip,
)
from keras_emotion.files import write_json_atomically

METRICS_NAMESPACE = "keras_emotion.preprocess"
FAILURES_TAG = "failures"
FAILURES_NAME = "failures.jsonl"
_COUNTERS = ("frames", "faces_found", "cnn_fallbacks")


class AlignClipsFn(beam.DoFn):
    """ClipSource -> AlignedClip (main output) or Failure (output tagged FAILURES_TAG)."""

    def __init__(self, class_names: Sequence[str], config: PreprocessConfig):
        self._class_names = list(class_names)
        self._config = config
        self._aligner = None

    def setup(self):
        self._aligner = FaceAligner(self._config.alignment)

    def process(self, source: ClipSource):
        outcome = run_clip(source, self._aligner, self._class_names, self._config)
        for name in _COUNTERS:
            Metrics.counter(METRICS_NAMESPACE, name).inc(getattr(outcome.stats, name))
        for stage, seconds in outcome.stats.seconds.items():
            Metrics.counter(METRICS_NAMESPACE, f"{stage}_us").inc(round(seconds * 1e6))
        if outcome.clip is None:
            yield beam.pvalue.TaggedOutput(FAILURES_TAG, outcome.failure)
        else:
            yield outcome.clip


def _stats_from_metrics(result) -> ClipStats:
    """ClipStats summed by the AlignClipsFn counters of a finished pipeline."""
    counters = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]
    totals = {}
    for counter in counters:
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + counter.committed
    return ClipStats(
        **{name: totals.get(name, 0) for name in _COUNTERS},
        seconds={stage: totals.get(f"{stage}_us", 0) / 1e6 for stage in STAGES},
    )


def _read_failures(path: str) -> list:
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as handle:
        return [Failure(**json.loads(line)) for line in handle if line.strip()]


def run_beam_preprocessing(
    clips: Iterable[ClipSource],
    output_dir: str,
    class_names: Optional[Sequence[str]] = None,
    config: PreprocessConfig = PreprocessConfig(),
    num_shards: int = 0,
    pipeline_options: Optional["beam.options.pipeline_options.PipelineOptions"] = None,
    skipped: Sequence[Failure] = (),
) -> Report:
    """Preprocesses `clips` with Beam into `<output_dir>/<split>-NNNNN.tfrecord` plus the manifest.

    Args:
        clips: the clips (unique ids).
        output_dir: the output folder (any filesystem Beam and tf.io.gfile know); it must
            hold no shards yet.
        class_names: classes in label-index order; None: sorted labels of `clips`.
        config: preprocessing settings (`shard_bytes` is not used: see `num_shards`).
        num_shards: shards per split, 0 to let the runner choose.
        pipeline_options: Beam options (runner etc.); None runs on the DirectRunner.
        skipped: failures of the dataset listing, copied into the report (as `preprocess_corpus`).

    Returns:
        The Report (also `<output_dir>/report.json`); the manifest is `<output_dir>/manifest.json`.
    """
    import tensorflow as tf

    started = time.monotonic()
    clips = list(clips)
    if not clips:
        raise ValueError("no clips to preprocess")
    class_names = list(class_names) if class_names is not None else sorted({clip.label_name for clip in clips})
    tf.io.gfile.makedirs(output_dir)
    if index_shards(output_dir):
        raise ValueError(f"{output_dir}: already holds shards; a Beam run needs an output folder without shards")
    splits = sorted({clip.split for clip in clips})

    pipeline = beam.Pipeline(options=pipeline_options)
    aligned = (
        pipeline
        | "Clips" >> beam.Create(clips)
        | "Align" >> beam.ParDo(AlignClipsFn(class_names, config)).with_outputs(FAILURES_TAG, main="clips")
    )
    per_split = aligned.clips | "BySplit" >> beam.Partition(lambda clip, _: splits.index(clip.split), len(splits))
    for split, split_clips in zip(splits, per_split):
        (
            split_clips
            | f"Serialize {split}" >> beam.Map(schema.serialize_clip)
            | f"Write {split}"
            >> beam.io.WriteToTFRecord(
                os.path.join(output_dir, split),
                file_name_suffix=schema.SHARD_SUFFIX,
                num_shards=num_shards,
                shard_name_template="-SSSSS",
            )
        )
    (
        aligned[FAILURES_TAG]
        | "FailureJson" >> beam.Map(lambda failure: json.dumps(dataclasses.asdict(failure)))
        | "WriteFailures" >> beam.io.WriteToText(os.path.join(output_dir, FAILURES_NAME), shard_name_template="")
    )
    result = pipeline.run()
    result.wait_until_finish()

    shards = index_shards(output_dir)
    write_manifest(output_dir, build_manifest(class_names, config, shards, complete=True))
    written = sum(len(entries) for entries in shards.values())
    failures = list(skipped) + _read_failures(os.path.join(output_dir, FAILURES_NAME))
    report = Report(len(clips), written, 0, _stats_from_metrics(result), time.monotonic() - started, failures)
    write_json_atomically(os.path.join(output_dir, REPORT_NAME), report.to_dict())
    return report
