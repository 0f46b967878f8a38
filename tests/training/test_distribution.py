"""Training under tf.distribute: 2 logical CPU devices (MirroredStrategy) and 2 worker
processes on loopback (MultiWorkerMirroredStrategy) give the same steps as one device.

Each strategy runs in a subprocess (tests/training/replica_worker.py): logical devices and
TF_CONFIG must be set before TensorFlow starts. The loss curves use real CK+48 clips read
from two identical shards with one clip per replica per step, so every replica's
BatchNormalization statistics equal those of the one-device run (the backbone's batch norm is
per replica, as Keras' default): what is compared is the loss and gradient reduction and the
two-rate optimizer, not a change of batch statistics.
"""

import json
import os
import socket
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

from keras_emotion.data.config import InputConfig
from keras_emotion.data.schema import MANIFEST_NAME
from keras_emotion.models import ModelConfig
from keras_emotion.training.config import TrainConfig
from keras_emotion.training.distribution import get_strategy, is_multi_worker, worker_output_dir
from keras_emotion.training.task import train
from replica_worker import REPO_ROOT, toy_step_config

WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "replica_worker.py")
NUM_FRAMES, IMAGE_SIZE = 3, 32
SUBPROCESS_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def duplicated_shards(ck48_raw_tfrecords, ck48_dir, tmp_path_factory):
    """Two shards with the same 24 real clips, and a manifest naming the 7 CK+48 classes:
    with one input pipeline per worker, or the two interleaved by one pipeline, each step's
    global batch is one clip twice."""
    directory = tmp_path_factory.mktemp("duplicated_shards")
    source = os.path.join(ck48_raw_tfrecords, "train-00000.tfrecord")
    for shard in range(2):
        os.symlink(source, directory / f"train-{shard:05d}.tfrecord")
    class_names = sorted(name for name in os.listdir(ck48_dir) if os.path.isdir(os.path.join(ck48_dir, name)))
    (directory / MANIFEST_NAME).write_text(json.dumps({"class_names": class_names}))
    return str(directory)


def fit_config(duplicated_shards, output_dir) -> TrainConfig:
    """3 steps of the full task (momentum, weight decay, SGDR), global batch 2, no augmentation."""
    data = InputConfig(
        duplicated_shards, training=False, num_frames=NUM_FRAMES, image_size=IMAGE_SIZE, global_batch_size=2, seed=1
    )
    return TrainConfig(
        train_data=data,
        model=ModelConfig(num_frames=NUM_FRAMES, image_size=IMAGE_SIZE),
        epochs=3,
        steps_per_epoch=1,
        backbone_lr=1e-3,
        head_lr=1e-2,
        restart_epochs=1,  # SGDR cycles of 1 and 2 epochs: the 3 epochs end with a cycle
        output_dir=str(output_dir),
    )


@pytest.fixture(scope="module")
def one_device_loss(duplicated_shards, tmp_path_factory):
    _, history = train(fit_config(duplicated_shards, tmp_path_factory.mktemp("one_device")), verbose=0)
    return history.history["loss"]


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def run_workers(tmp_path, requests, tf_configs=None):
    """Runs one replica_worker.py per request at once; returns their results."""
    processes, logs = [], []
    for index, request in enumerate(requests):
        request_path, log_path = tmp_path / f"request{index}.json", tmp_path / f"worker{index}.log"
        request_path.write_text(json.dumps(request))
        env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        if tf_configs:
            env["TF_CONFIG"] = json.dumps(tf_configs[index])
        with open(log_path, "w") as log:
            command = [sys.executable, WORKER_SCRIPT, str(request_path), str(tmp_path / f"result{index}.json")]
            processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT))
        logs.append(log_path)
    try:
        for process in processes:
            process.wait(timeout=SUBPROCESS_TIMEOUT_S)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, log_path in zip(processes, logs):
        assert process.returncode == 0, f"{log_path}:\n{log_path.read_text()[-4000:]}"
    return [json.loads((tmp_path / f"result{index}.json").read_text()) for index in range(len(requests))]


def test_two_logical_cpus_match_one_device(duplicated_shards, one_device_loss, tmp_path):
    """One toy SGD step moves each group by -its lr * gradient (NumPy reference) with the batch
    split over 2 replicas, and the task's loss curve equals the one-device curve."""
    request = {
        "logical_cpus": 2,
        "step_config": toy_step_config(NUM_FRAMES, IMAGE_SIZE).to_dict(),
        "fit_config": fit_config(duplicated_shards, tmp_path / "mirrored").to_dict(),
    }
    (result,) = run_workers(tmp_path, [request])
    assert result["toy_step"]["backbone"] < 1e-3 and result["toy_step"]["head"] < 1e-3, result
    assert len(result["fit_loss"]) == 3
    np.testing.assert_allclose(result["fit_loss"], one_device_loss, rtol=1e-4)
    assert one_device_loss[2] < one_device_loss[0]


def test_two_workers_on_loopback_match_one_device(duplicated_shards, one_device_loss, tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    tf_configs = [{"cluster": cluster, "task": {"type": "worker", "index": index}} for index in range(2)]
    output_dir = tmp_path / "multi_worker"
    request = {"logical_cpus": 1, "fit_config": fit_config(duplicated_shards, output_dir).to_dict()}
    chief, other = run_workers(tmp_path, [request, request], tf_configs)
    np.testing.assert_allclose(chief["fit_loss"], one_device_loss, rtol=1e-4)
    np.testing.assert_allclose(other["fit_loss"], one_device_loss, rtol=1e-4)
    # Worker 0 wrote the run's files, worker 1 its own copy elsewhere.
    assert (output_dir / "trained" / "model.keras").is_file()
    assert (output_dir / "workers" / "worker_1" / "trained" / "model.keras").is_file()


def test_local_strategy_mirrors_the_local_devices(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    strategy = get_strategy()
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.num_replicas_in_sync == len(tf.config.list_logical_devices("CPU"))
    assert not is_multi_worker(strategy)
    assert worker_output_dir(strategy, "runs/x") == "runs/x"


@pytest.mark.parametrize("tf_config", ["not json", '{"task": {"type": "worker"}}', '{"cluster": {}}'])
def test_bad_tf_config_is_reported(monkeypatch, tf_config):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError, match="TF_CONFIG="):
        get_strategy()


@pytest.mark.parametrize(
    "cluster, task_type, task_id, expected",
    [
        ({"worker": ["a:1", "b:1"]}, "worker", 0, "out"),
        ({"worker": ["a:1", "b:1"]}, "worker", 1, "out/workers/worker_1"),
        ({"chief": ["c:1"], "worker": ["a:1"]}, "chief", 0, "out"),
        ({"chief": ["c:1"], "worker": ["a:1"]}, "worker", 0, "out/workers/worker_0"),
    ],
)
def test_only_the_chief_writes_to_the_output_dir(cluster, task_type, task_id, expected):
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id
    )
    strategy = types.SimpleNamespace(cluster_resolver=resolver)
    assert worker_output_dir(strategy, "out") == expected
