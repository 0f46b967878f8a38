"""Benchmark of preprocessing: aligned frames per second on CK+48 with 1 and 2 processes, and
the share of worker time per stage (reading, detection, landmarks, alignment, encoding); and
aligned frames per second of one process on large frames (640x480, 1280x720 by default),
detecting on a downscaled copy (the default) and at full resolution (min_face_fraction=0, the
behaviour before), timed alternately in the same run, with their ratio.

    python scripts/bench_preprocess.py --clips 60
    python scripts/bench_preprocess.py --workers= --repeats 5     # large frames only

Large frames: the public-domain astronaut photograph (skimage), resized to the frame height (her
face about 18% of it) and moving across a background (skimage's coffee), one face per frame.

Prints one JSON object. Corpus rates are wall-clock and include starting the worker processes
(loading the dlib models); `load_average` tells how busy the machine was.
"""

import dataclasses
import json
import os
import statistics
import tempfile
import time

import cv2
import numpy as np
from absl import flags
from skimage import data as skimage_data

from keras_emotion.cli import SHARED_DATA, run
from keras_emotion.data.datasets import load_dataset
from keras_emotion.data.faces import AlignmentConfig, FaceAligner
from keras_emotion.data.preprocess import PreprocessConfig, preprocess_corpus

FLAGS = flags.FLAGS
flags.DEFINE_string("ck48", os.path.join(SHARED_DATA, "ck48", "CK+48"), "CK+48 folder.")
flags.DEFINE_integer("clips", 60, "Clips to preprocess (evenly spread over the sorted corpus).")
flags.DEFINE_list("workers", ["1", "2"], "Numbers of worker processes to time.")
flags.DEFINE_integer("upsample", 1, "Detector upsampling.")
flags.DEFINE_bool("cnn_fallback", True, "Run the CNN detector where HOG finds no face.")
flags.DEFINE_list("frame_sizes", ["640x480", "1280x720"], "WIDTHxHEIGHT of the large-frame clips.")
flags.DEFINE_integer("frames", 20, "Frames per large-frame clip.")
flags.DEFINE_integer("repeats", 3, "Timed runs of each large-frame path (the median is reported).")


def moving_astronaut_clip(width: int, height: int, num_frames: int) -> list[np.ndarray]:
    """`num_frames` uint8 (height, width, 3) RGB frames, the astronaut moving left to right."""
    background = cv2.resize(skimage_data.coffee(), (width, height), interpolation=cv2.INTER_AREA)
    astronaut = cv2.resize(skimage_data.astronaut(), (height, height), interpolation=cv2.INTER_AREA)
    frames = []
    for left in np.linspace(0, width - height, num_frames).astype(int):
        frame = background.copy()
        frame[:, left : left + height] = astronaut
        frames.append(frame)
    return frames


def large_frame_rates(config: AlignmentConfig) -> dict:
    """Aligned frames/s of one process, downscaled detection vs full resolution, per frame size."""
    paths = {"downscaled_detection": config, "full_resolution_detection": dataclasses.replace(config, min_face_fraction=0)}
    aligners = {name: FaceAligner(path_config) for name, path_config in paths.items()}
    results = {}
    for size in FLAGS.frame_sizes:
        width, height = map(int, size.split("x"))
        clip = moving_astronaut_clip(width, height, FLAGS.frames)
        rates = {name: [] for name in aligners}
        detected = {}
        for _ in range(FLAGS.repeats):
            for name, aligner in aligners.items():  # alternately, so both see the same load
                started = time.perf_counter()
                aligned = aligner.align_clip(clip)
                rates[name].append(len(clip) / (time.perf_counter() - started))
                detected[name] = int(aligned.detected.sum())
        medians = {name: statistics.median(values) for name, values in rates.items()}
        results[size] = {
            **{
                name: {"frames_per_second": round(medians[name], 2), "runs": [round(r, 2) for r in rates[name]],
                       "faces_found": f"{detected[name]}/{len(clip)}"}
                for name in aligners
            },
            "speedup": round(medians["downscaled_detection"] / medians["full_resolution_detection"], 2),
        }
    return results


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
    if FLAGS.frame_sizes:
        results["large_frames_one_process"] = large_frame_rates(config.alignment)
    results["load_average"] = os.getloadavg()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    run(main)
