"""Benchmark: seconds per ablation run from cached backbone maps and from images, side by side;
prints JSON.

    python scripts/bench_ablation.py                       # row tp_sa, fold 0, 2 epochs, 3 runs each
    python scripts/bench_ablation.py --epochs 1 --repeats 5 --rows tp,lstm

Both routes run the same row on the same CK+48 fold with the same backbone (dlib_resnet_256 at
the shipped model's 112 px; from images it trains end to end at the paper's backbone rate, as
`keras-emotion ablation --data` does, on unaligned CK+48 TFRecords written first). Each run is
a new seed; the median and every run's seconds are reported, with the one-off seconds of the
cache (maps of every CK+48 frame in 4 views) and of writing the TFRecords. The cache route is also
timed at the ablation's 30 epochs (its runs are mostly fixed cost, so seconds do not scale with
epochs); the whole ablation (every row x 10 folds x 3 seeds at 30 epochs) is estimated from those
runs for the cache, and from the --epochs runs scaled by epochs for images.
"""

import dataclasses
import json
import os
import statistics
import tempfile
import time

import keras
from absl import flags

from keras_emotion import testing
from keras_emotion.cli import SHARED_DATA, run
from keras_emotion.data.emotions import EMOTIONS
from keras_emotion.training import feature_cache
from keras_emotion.training.ablation import ABLATION_ROWS, AblationConfig, cached_folds, run_one, select_rows, write_folds

FLAGS = flags.FLAGS
flags.DEFINE_string("ck48_dir", os.path.join(SHARED_DATA, "ck48", "CK+48"), "CK+48 folder.")
flags.DEFINE_list("rows", ["tp_sa"], "Ablation rows to time.")
flags.DEFINE_integer("epochs", 2, "Epochs per run (both routes).")
flags.DEFINE_integer("repeats", 3, "Runs per route and row (seeds 0 .. repeats-1); the median is reported.")
flags.DEFINE_integer("batch_size", 8, "Clips per step.")

FULL_EPOCHS, FULL_FOLDS, FULL_SEEDS = 30, 10, 3


def _timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main(argv):
    del argv
    rows = select_rows(FLAGS.rows)
    with tempfile.TemporaryDirectory() as scratch:
        common = dict(folds=FULL_FOLDS, epochs=FLAGS.epochs, batch_size=FLAGS.batch_size)
        cache_config = AblationConfig(None, os.path.join(scratch, "cache"), ck48_dir=FLAGS.ck48_dir, **common)
        started = time.perf_counter()
        cached = cached_folds(cache_config)
        cache_seconds = time.perf_counter() - started

        tfrecords = os.path.join(scratch, "tfrecords")
        tfrecords_seconds = _timed(
            lambda: testing.write_shards(testing.ck48_raw_clips(FLAGS.ck48_dir), tfrecords, split="train")
        )
        image_config = AblationConfig(
            tfrecords, os.path.join(scratch, "images"), backbone=cached.backbone, image_size=cached.image_size, **common
        )
        num_classes = len(write_folds(tfrecords, image_config.output_dir, FULL_FOLDS)["class_names"])

        full_config = dataclasses.replace(cache_config, output_dir=os.path.join(scratch, "full"), epochs=FULL_EPOCHS)
        results = []
        for row in rows:
            seconds = {"cache": [], "images": [], f"cache_{FULL_EPOCHS}_epochs": []}
            for seed in range(FLAGS.repeats):
                seconds["cache"].append(_timed(lambda: run_one(cache_config, row, 0, seed, len(EMOTIONS), cached)))
                seconds["images"].append(_timed(lambda: run_one(image_config, row, 0, seed, num_classes)))
                full = _timed(lambda: run_one(full_config, row, 0, seed, len(EMOTIONS), cached))
                seconds[f"cache_{FULL_EPOCHS}_epochs"].append(full)
                keras.backend.clear_session()
            medians = {route: statistics.median(values) for route, values in seconds.items()}
            results.append(
                {
                    "row": row.name,
                    "seconds_per_run_median": {route: round(value, 2) for route, value in medians.items()},
                    "seconds_per_run": {route: [round(value, 2) for value in values] for route, values in seconds.items()},
                    "images_over_cache": round(medians["images"] / medians["cache"], 1),
                }
            )
    variants = len({row.variant for row in ABLATION_ROWS})
    runs = variants * FULL_FOLDS * FULL_SEEDS
    scale = FULL_EPOCHS / FLAGS.epochs
    per_run = {
        route: statistics.median(r["seconds_per_run_median"][route] for r in results)
        for route in (f"cache_{FULL_EPOCHS}_epochs", "images")
    }
    print(
        json.dumps(
            {
                "benchmark": "ablation",
                "backend": keras.backend.backend(),
                "cpu_count": os.cpu_count(),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "backbone": cached.backbone,
                "image_size": cached.image_size,
                "epochs_per_run": FLAGS.epochs,
                "cached_views": len(feature_cache.VIEWS),
                "cache_seconds": round(cache_seconds, 1),
                "tfrecords_seconds": round(tfrecords_seconds, 1),
                "results": results,
                "full_ablation_estimate_minutes": {
                    "runs": runs,
                    "cache": round((cache_seconds + runs * per_run[f"cache_{FULL_EPOCHS}_epochs"]) / 60, 1),
                    "images": round((tfrecords_seconds + runs * per_run["images"] * scale) / 60, 1),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    run(main)
