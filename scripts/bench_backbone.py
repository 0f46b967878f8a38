"""Benchmark: frames/s of a frame backbone alone (forward pass, inference mode); prints JSON.

    python scripts/bench_backbone.py                               # the shipped backbone, 48 px
    python scripts/bench_backbone.py --models compact_wide:48,compact:64,mini_xception:64

Each model is called on batches of --batch_size random frames (a 16-frame window is one batch
in predict), --repeats times after a warm-up; the median and every run's frames/s are reported.
"""

import json
import os
import statistics
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from keras_emotion.models.backbones import build_backbone

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["compact_wide:48"], "backbone:image_size pairs to benchmark")
flags.DEFINE_integer("batch_size", 16, "frames per call")
flags.DEFINE_integer("calls", 20, "timed calls per repeat")
flags.DEFINE_integer("repeats", 5, "timed repeats (the median is reported)")


def _frames_per_s(call, frames) -> float:
    """Frames/s of FLAGS.calls calls of `call` on the batch `frames`."""
    start = time.perf_counter()
    for _ in range(FLAGS.calls):
        call(frames).numpy()
    return FLAGS.calls * len(frames) / (time.perf_counter() - start)


def main(argv):
    del argv
    results = []
    for entry in FLAGS.models:
        name, image_size = entry.split(":")
        backbone = build_backbone(name, int(image_size))
        frames = tf.constant(np.random.default_rng(0).uniform(0, 255, (FLAGS.batch_size, int(image_size), int(image_size), 3)), tf.float32)
        call = tf.function(lambda images: backbone(images, training=False))
        call(frames)  # trace and warm up
        runs = [_frames_per_s(call, frames) for _ in range(FLAGS.repeats)]
        results.append(
            {
                "backbone": name,
                "image_size": int(image_size),
                "parameters": backbone.count_params(),
                "frames_per_s_median": round(statistics.median(runs), 1),
                "frames_per_s_runs": [round(run, 1) for run in runs],
            }
        )
    print(
        json.dumps(
            {
                "benchmark": "backbone",
                "backend": keras.backend.backend(),
                "cpu_count": os.cpu_count(),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "batch_size": FLAGS.batch_size,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    app.run(main)
