"""Benchmark: training throughput (clips/s, frames/s) and the share of step time spent waiting on input.

TensorFlow's oneDNN CPU kernels are on unless TF_ENABLE_ONEDNN_OPTS=0 is set; the JSON reports the
setting, so `TF_ENABLE_ONEDNN_OPTS=0 python scripts/bench_train.py` measures the kernels without it.

Each model is trained for a few steps with the project's optimizer (two SGDs with warm restarts behind
one MultiOptimizer) and loss. Under the TensorFlow backend the batches come from the real tf.data
pipeline over CK+48 TFRecords (augmentation on), and the time spent in `next(iterator)` is reported as
the input-wait share. Under another backend (JAX on a GPU machine without TensorFlow) the batches are
synthetic arrays already in memory, so only the model's speed is measured.

    python scripts/bench_train.py                                   # CPU, TensorFlow
    KERAS_BACKEND=jax python scripts/bench_train.py --input synthetic  # e.g. on a GPU

Prints one JSON object.
"""

import json
import os
import platform
import tempfile
import time

from absl import app, flags


FLAGS = flags.FLAGS
flags.DEFINE_list(
    "models", ["compact:64", "vgg16:224"], "backbone:image_size pairs to benchmark"
)
flags.DEFINE_integer("num_frames", 16, "frames per clip (F)")
flags.DEFINE_integer("batch_size", 2, "clips per step")
flags.DEFINE_integer("steps", 4, "timed steps per model")
flags.DEFINE_integer("warmup_steps", 2, "untimed steps first (tracing, compilation)")
flags.DEFINE_enum("input", "auto", ["auto", "tfrecords", "synthetic"], "where batches come from")
flags.DEFINE_string("spatial", "sa", "spatial aggregation")
flags.DEFINE_string("temporal", "tp", "temporal pooling")
flags.DEFINE_string("ck48_dir", None, "CK+48 folder for the TFRecords (default ../shared/data/ck48/CK+48)")

NUM_CLASSES = 7


def _compiled_model(backbone: str, image_size: int):
    """The paper's model (SA + TP by default) compiled as training compiles it."""
    import keras

    from keras_emotion.models import backbone_variables, build_model, head_variables
    from keras_emotion.training.config import train_config
    from keras_emotion.training.optimizers import two_rate_sgd

    config = train_config(
        train_dir="unused",
        val_split="",
        num_classes=NUM_CLASSES,
        num_frames=FLAGS.num_frames,
        image_size=image_size,
        backbone=backbone,
        spatial=FLAGS.spatial,
        temporal=FLAGS.temporal,
    )
    model = build_model(config.model)
    training_model = keras.Model(model.input, model.output["probabilities"])
    training_model.compile(
        optimizer=two_rate_sgd(
            config, backbone_variables(model), head_variables(model), steps_per_epoch=100
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(),
    )
    return training_model


def _synthetic_batches(image_size: int):
    import numpy as np

    rng = np.random.default_rng(0)
    batch = (
        {
            "frames": rng.uniform(0, 255, (FLAGS.batch_size, FLAGS.num_frames, image_size, image_size, 3)).astype(
                "float32"
            ),
            "frame_mask": np.ones((FLAGS.batch_size, FLAGS.num_frames), "float32"),
        },
        rng.integers(0, NUM_CLASSES, FLAGS.batch_size).astype("int32"),
    )
    while True:
        yield batch


def _tfrecord_batches(image_size: int, directory: str):
    from keras_emotion.data.config import InputConfig
    from keras_emotion.data.pipeline import build_dataset

    config = InputConfig(
        file_pattern=os.path.join(directory, "*.tfrecord"),
        training=True,
        num_frames=FLAGS.num_frames,
        image_size=image_size,
        global_batch_size=FLAGS.batch_size,
        repeat=True,
        seed=0,
    )
    return iter(build_dataset(config))


def _write_ck48_tfrecords(directory: str) -> None:
    """CK+48 clips chained to 48 frames each (so that sampling F frames matters), as TFRecords."""
    from keras_emotion import testing
    from keras_emotion.cli import SHARED_DATA  # here: it imports TensorFlow, which the JAX route may lack

    ck48_dir = FLAGS.ck48_dir or os.path.join(SHARED_DATA, "ck48", "CK+48")
    clips = testing.ck48_raw_clips(ck48_dir, frames_per_clip=48, max_clips=32)
    testing.write_shards(clips, directory, split="train", num_shards=2)


def _time_model(backbone: str, image_size: int, batches) -> dict:
    model = _compiled_model(backbone, image_size)
    for _ in range(FLAGS.warmup_steps):
        features, labels = next(batches)
        model.train_on_batch(features, labels)
    waiting = 0.0
    start = time.perf_counter()
    for _ in range(FLAGS.steps):
        before_input = time.perf_counter()
        features, labels = next(batches)
        waiting += time.perf_counter() - before_input
        model.train_on_batch(features, labels)  # returns host floats: the step has finished
    seconds = time.perf_counter() - start
    clips = FLAGS.steps * FLAGS.batch_size
    return {
        "backbone": backbone,
        "image_size": image_size,
        "num_frames": FLAGS.num_frames,
        "batch_size": FLAGS.batch_size,
        "step_ms": round(1000 * seconds / FLAGS.steps, 1),
        "clips_per_s": round(clips / seconds, 2),
        "frames_per_s": round(clips * FLAGS.num_frames / seconds, 1),
        "input_wait_share": round(waiting / seconds, 4),
    }


def main(argv):
    del argv
    import keras

    backend = keras.backend.backend()
    source = FLAGS.input
    if source == "auto":
        source = "tfrecords" if backend == "tensorflow" else "synthetic"
    results = []
    with tempfile.TemporaryDirectory() as directory:
        if source == "tfrecords":
            _write_ck48_tfrecords(directory)
        for entry in FLAGS.models:
            backbone, image_size = entry.split(":")
            image_size = int(image_size)
            batches = (
                _tfrecord_batches(image_size, directory)
                if source == "tfrecords"
                else _synthetic_batches(image_size)
            )
            results.append(_time_model(backbone, image_size, batches))
    print(
        json.dumps(
            {
                "benchmark": "train",
                "backend": backend,
                "devices": [str(device) for device in keras.distribution.list_devices()],
                "machine": platform.processor() or platform.machine(),
                "cpu_count": os.cpu_count(),
                "input": source,
                "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (TensorFlow default: on)"),
                "model": {"spatial": FLAGS.spatial, "temporal": FLAGS.temporal},
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    app.run(main)
