"""Benchmark of the training input pipeline against raw JPEG decoding; prints JSON.

    python scripts/bench_pipeline.py                      # temporary CK+48 set, 48-frame clips
    python scripts/bench_pipeline.py --data=tfrecords/ck48 --split=train

Reports the clips/s and frames/s that `build_dataset` delivers in training mode (random
sampling, crop, flip, colour jitter) and, for the same number of frames of the same shards,
the frames/s of a full-scale `tf.io.decode_jpeg` alone: in one Python loop (one core) and in a
parallel tf.data map over groups of num_frames JPEGs (all cores). The pipeline decodes at reduced
scale when the output is small enough (see keras_emotion.data.pipeline), so it can beat the latter.
CPU milliseconds per frame (this process, all threads) are given too.

The machine's speed drifts by tens of percent within minutes on a shared host, so the pipeline and
the parallel decode are timed side by side --repeats times, alternating, each time with a fresh
iterator; rates are medians and the fraction is the median of the per-repeat ratios.
"""

import collections
import itertools
import json
import os
import statistics
import tempfile
import time

from absl import flags

from keras_emotion.cli import SHARED_DATA, define_alias, run

FLAGS = flags.FLAGS
flags.DEFINE_string("data", "", "Shards to read; empty builds a temporary unaligned CK+48 set.")
define_alias("tfrecord_dir", "data")
flags.DEFINE_string("split", "train", "Split of --data.")
flags.DEFINE_string("ck48_dir", os.path.join(SHARED_DATA, "ck48", "CK+48"), "CK+48 folder for the temporary set.")
flags.DEFINE_integer("clip_length", 48, "Frames per clip of the temporary set.")
flags.DEFINE_integer("max_clips", 64, "Clips in the temporary set.")
flags.DEFINE_integer("num_frames", 16, "Frames sampled per clip.")
flags.DEFINE_integer("image_size", 64, "Side of the output crop.")
flags.DEFINE_integer("batch_size", 8, "Clips per batch.")
flags.DEFINE_integer("warmup_batches", 5, "Batches read before timing.")
flags.DEFINE_integer("num_batches", 100, "Batches timed per repeat.")
flags.DEFINE_integer("repeats", 10, "Side-by-side timings of the pipeline and the parallel decode.")


def _drain(iterable) -> None:
    """Consumes `iterable` without keeping its elements."""
    collections.deque(iterable, maxlen=0)


def _timed(function) -> tuple:
    """(wall seconds, CPU seconds of this process) taken by `function()`."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def _time_pipeline(config) -> tuple:
    """(wall, CPU) seconds to read FLAGS.num_batches batches after FLAGS.warmup_batches."""
    from keras_emotion.data import pipeline

    batches = iter(pipeline.build_dataset(config))
    _drain(itertools.islice(batches, FLAGS.warmup_batches))
    return _timed(lambda: _drain(itertools.islice(batches, FLAGS.num_batches)))


def _jpegs_of(config, count: int) -> list:
    """`count` JPEG frames of the shards of `config`, cycling through them."""
    import tensorflow as tf

    from keras_emotion.data import pipeline, schema

    records = tf.data.TFRecordDataset(pipeline.list_shards(config))
    frames = [jpeg for serialized in records for jpeg in schema.parse_clip(serialized)["frames"].numpy()]
    return list(itertools.islice(itertools.cycle(frames), count))


def _time_loop_decoding(jpegs: list) -> tuple:
    """(wall, CPU) seconds to decode `jpegs` one by one in an eager loop (one core)."""
    import tensorflow as tf

    return _timed(lambda: _drain(tf.io.decode_jpeg(jpeg, channels=3) for jpeg in jpegs))


def _time_parallel_decoding(jpegs: list) -> tuple:
    """(wall, CPU) seconds to decode `jpegs` in a parallel tf.data map, num_frames per call."""
    import tensorflow as tf

    def decode_clip(clip_jpegs):  # (F,) strings -> (F, H, W, 3), one map call per clip as in the pipeline
        return tf.map_fn(
            lambda jpeg: tf.io.decode_jpeg(jpeg, channels=3), clip_jpegs, fn_output_signature=tf.uint8
        )

    clips = tf.data.Dataset.from_tensor_slices(jpegs).batch(FLAGS.num_frames)
    decoded = clips.map(decode_clip, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    _drain(decoded.take(8))  # warm-up
    return _timed(lambda: _drain(decoded))


def _benchmark(tfrecord_dir: str) -> dict:
    from keras_emotion.data.config import InputConfig

    config = InputConfig(
        tfrecord_dir,
        split=FLAGS.split,
        training=True,
        num_frames=FLAGS.num_frames,
        image_size=FLAGS.image_size,
        global_batch_size=FLAGS.batch_size,
        repeat=True,
        color_jitter=True,
        seed=0,
    )
    clips = FLAGS.num_batches * FLAGS.batch_size
    frames = clips * FLAGS.num_frames
    jpegs = _jpegs_of(config, frames)
    pipeline_times, parallel_times = [], []
    for _ in range(FLAGS.repeats):
        pipeline_times.append(_time_pipeline(config))
        parallel_times.append(_time_parallel_decoding(jpegs))
    loop_wall, loop_cpu = _time_loop_decoding(jpegs)
    pipeline_wall, pipeline_cpu = (statistics.median(times) for times in zip(*pipeline_times))
    parallel_wall, parallel_cpu = (statistics.median(times) for times in zip(*parallel_times))
    fractions = [parallel[0] / pipeline[0] for pipeline, parallel in zip(pipeline_times, parallel_times)]
    return {
        "cpu_count": os.cpu_count(),
        "tfrecord_dir": tfrecord_dir if FLAGS.data else "temporary CK+48 set",
        "clip_length": FLAGS.clip_length if not FLAGS.data else None,
        "num_frames": FLAGS.num_frames,
        "image_size": FLAGS.image_size,
        "batch_size": FLAGS.batch_size,
        "timed_clips": clips,
        "repeats": FLAGS.repeats,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "pipeline_clips_per_s": round(clips / pipeline_wall, 1),
        "pipeline_frames_per_s": round(frames / pipeline_wall, 1),
        "decode_jpeg_frames_per_s_loop": round(frames / loop_wall, 1),
        "decode_jpeg_frames_per_s_parallel": round(frames / parallel_wall, 1),
        "pipeline_fraction_of_parallel_decode": round(statistics.median(fractions), 3),
        "pipeline_fraction_of_parallel_decode_runs": [round(fraction, 3) for fraction in fractions],
        "pipeline_cpu_ms_per_frame": round(1e3 * pipeline_cpu / frames, 3),
        "decode_jpeg_cpu_ms_per_frame_loop": round(1e3 * loop_cpu / frames, 3),
        "decode_jpeg_cpu_ms_per_frame_parallel": round(1e3 * parallel_cpu / frames, 3),
    }


def main(argv):
    del argv
    from keras_emotion import testing

    if FLAGS.data:
        result = _benchmark(FLAGS.data)
    else:
        with tempfile.TemporaryDirectory() as directory:
            clips = testing.ck48_raw_clips(
                FLAGS.ck48_dir, frames_per_clip=FLAGS.clip_length, max_clips=FLAGS.max_clips
            )
            testing.write_shards(clips, directory, FLAGS.split, num_shards=4)
            result = _benchmark(directory)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    run(main)
