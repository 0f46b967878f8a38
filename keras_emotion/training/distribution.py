"""The distribution strategy of a training run (TensorFlow-specific).

One worker: `MirroredStrategy` over every local GPU, or over every local CPU device when there
is no GPU (one by default; tests split the CPU into several logical devices).
Several workers (the `TF_CONFIG` environment variable is set): `MultiWorkerMirroredStrategy`.
"""

from __future__ import annotations

import functools
import json
import os

import tensorflow as tf


def get_strategy() -> tf.distribute.Strategy:
    """Returns the strategy for this process; call it before any other TensorFlow work.

    The strategy is created on the first call and then reused (for the same TF_CONFIG): two
    strategies over the same devices would clash in TensorFlow's collective ops ("Shape
    mismatch in the collective instance ...").

    Raises:
        ValueError: when `TF_CONFIG` is set but is not valid JSON with a "cluster" entry.
    """
    return _strategy_for(os.environ.get("TF_CONFIG", ""))


@functools.lru_cache(maxsize=None)
def _strategy_for(tf_config: str) -> tf.distribute.Strategy:
    if tf_config:
        try:
            cluster = json.loads(tf_config)["cluster"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"TF_CONFIG={tf_config!r} is not JSON with a 'cluster' entry") from error
        if not cluster:
            raise ValueError(f"TF_CONFIG={tf_config!r} has an empty 'cluster'")
        return tf.distribute.MultiWorkerMirroredStrategy()
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy(devices=[device.name for device in devices])


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """True when `strategy` has replicas in other processes (several workers); False for
    TensorFlow's default (no) strategy too."""
    if not tf.distribute.has_strategy():
        return False
    return strategy.num_replicas_in_sync > len(strategy.extended.worker_devices)


def worker_output_dir(strategy: tf.distribute.Strategy, output_dir: str) -> str:
    """Where this worker writes checkpoints, logs and models.

    Keras callbacks do not coordinate workers, so only the chief (the "chief" task, or worker
    0 when the cluster has none) writes to `output_dir`; every other worker writes to its own
    `output_dir/workers/<task type>_<task id>`, so that no two processes write the same file.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return output_dir
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    chief_type = "chief" if has_chief else "worker"
    if resolver.task_type == chief_type and (resolver.task_id or 0) == 0:
        return output_dir
    return os.path.join(output_dir, "workers", f"{resolver.task_type}_{resolver.task_id}")
