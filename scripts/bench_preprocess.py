"""Benchmark of preprocessing on CK+48: aligned frames per second with 1 and 2 processes, and
the share of worker time per stage (reading, detection, landmarks, alignment, encoding).

    python scripts/bench_preprocess.py --clips 60

Prints one JSON object. Rates are wall-clock and include starting the worker processes
(loading the dlib models); `load_average` tells how busy the machine was.
"""

import json
import os
import tempfile

from absl import app, flags

from keras_emotion.data.datasets import load_dataset
from keras_emotion.data.faces import AlignmentConfig
from keras_emotion.data.preprocess import PreprocessConfig, preprocess_corpus

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
flags.DEFINE_string("ck48", os.path.join(REPO_ROOT, "..", "shared", "data", "ck48", "CK+48"), "CK+48 folder.")
flags.DEFINE_integer("clips", 60, "Clips to preprocess (evenly spread over the sorted corpus).")
flags.DEFINE_list("workers", ["1", "2"], "Numbers of worker processes to time.")
flags.DEFINE_integer("upsample", 1, "Detector upsampling.")
flags.DEFINE_bool("cnn_fallback", True, "Run the CNN detector where HOG finds no face.")


def main(argv):
    del argv
    dataset = load_dataset("ck48", FLAGS.ck48)
    clips = dataset.clips[:: max(1, len(dataset.clips) // FLAGS.clips)][: FLAGS.clips]
    config = PreprocessConfig(alignment=AlignmentConfig(upsample=FLAGS.upsample, cnn_fallback=FLAGS.cnn_fallback))
    results = {"clips": len(clips), "alignment": config.parameters()["alignment"], "cpu_count": os.cpu_count()}
    for workers in map(int, FLAGS.workers):
        with tempfile.TemporaryDirectory() as output:
            report = preprocess_corpus(clips, output, config, workers, dataset.class_names, progress=False)
        stage_total = sum(report.stats.seconds.values())
        results[f"workers_{workers}"] = {
            "frames": report.stats.frames,
            "wall_seconds": round(report.wall_seconds, 3),
            "frames_per_second": round(report.stats.frames / report.wall_seconds, 2),
            "faces_found_percent": round(report.faces_found_percent, 2),
            "cnn_fallbacks": report.stats.cnn_fallbacks,
            "failures": len(report.failures),
            "stage_share": {stage: round(sec / stage_total, 4) for stage, sec in report.stats.seconds.items()},
        }
    results["load_average"] = os.getloadavg()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    app.run(main)
