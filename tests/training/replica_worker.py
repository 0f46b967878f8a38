"""Training checks that must also run in a process of their own (distribution tests).

As a script:

    python replica_worker.py REQUEST.json RESULT.json

REQUEST.json: {"logical_cpus": n, "step_config": TrainConfig dict (optional),
"fit_config": TrainConfig dict (optional)}. Without TF_CONFIG the CPU is split into n logical
devices before TensorFlow starts, so that `get_strategy()` mirrors over them; with TF_CONFIG
the process is one worker of a MultiWorkerMirroredStrategy cluster. RESULT.json gets
{"toy_step": toy_step_errors(step)} for a step_config and {"fit_loss": per-epoch losses of
`train(fit_config)`} for a fit_config.

The tests import the same functions to run the one-device cases in process.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOY_FEATURES, TOY_HIDDEN, TOY_CLASSES, TOY_BATCH = 5, 4, 3, 8


def toy_model():
    """Dense backbone (a nested model named "backbone") -> Dense softmax head: (B, 5) -> (B, 3)."""
    import keras

    features = keras.Input((TOY_FEATURES,))
    backbone = keras.Model(features, keras.layers.Dense(TOY_HIDDEN, name="toy_hidden")(features), name="backbone")
    inputs = keras.Input((TOY_FEATURES,))
    probabilities = keras.layers.Dense(TOY_CLASSES, activation="softmax", name="toy_scores")(backbone(inputs))
    return keras.Model(inputs, probabilities), backbone


def toy_step_config(num_frames: int, image_size: int):
    """A TrainConfig for `toy_step_errors`: plain SGD (no momentum, no weight decay) with
    rates 100x apart (its data and model fields are not used)."""
    from keras_emotion.data.config import InputConfig
    from keras_emotion.models import ModelConfig
    from keras_emotion.training.config import TrainConfig

    return TrainConfig(
        train_data=InputConfig("unused", num_frames=num_frames, image_size=image_size),
        model=ModelConfig(num_frames=num_frames, image_size=image_size),
        backbone_lr=1e-3,
        head_lr=0.1,
        momentum=0.0,
        weight_decay=0.0,
    )


def toy_step_errors(config) -> dict:
    """One `fit` step of the toy model under `get_strategy()`, against NumPy gradients.

    `config` supplies the learning rates (momentum and weight decay must be 0). The batch of
    8 is split over the replicas; the mean cross-entropy gradient is derived by hand.

    Returns:
        {"backbone": err, "head": err}: max |delta - (-lr * grad)| / max |lr * grad|.
    """
    import keras
    import tensorflow as tf

    from keras_emotion.training.distribution import get_strategy
    from keras_emotion.training.optimizers import two_rate_sgd

    random = np.random.default_rng(0)
    x = random.normal(size=(TOY_BATCH, TOY_FEATURES)).astype(np.float32)
    y = random.integers(0, TOY_CLASSES, size=TOY_BATCH)
    keras.utils.set_random_seed(0)
    with get_strategy().scope():
        model, backbone = toy_model()
        head = [v for v in model.trainable_variables if all(v is not b for b in backbone.trainable_variables)]
        model.compile(
            optimizer=two_rate_sgd(config, backbone.trainable_variables, head, steps_per_epoch=1),
            loss=keras.losses.SparseCategoricalCrossentropy(),
        )
    hidden_kernel, hidden_bias, score_kernel, score_bias = [v.numpy() for v in model.trainable_variables]
    model.fit(tf.data.Dataset.from_tensors((x, y)), epochs=1, shuffle=False, verbose=0)

    hidden = x @ hidden_kernel + hidden_bias
    scores = hidden @ score_kernel + score_bias
    probabilities = np.exp(scores - scores.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    d_scores = (probabilities - np.eye(TOY_CLASSES)[y]) / TOY_BATCH
    d_hidden = d_scores @ score_kernel.T
    gradients = [x.T @ d_hidden, d_hidden.sum(axis=0), hidden.T @ d_scores, d_scores.sum(axis=0)]
    before = [hidden_kernel, hidden_bias, score_kernel, score_bias]
    after = [v.numpy() for v in model.trainable_variables]
    groups = {"backbone": (config.backbone_lr, [0, 1]), "head": (config.head_lr, [2, 3])}
    return {
        group: relative_error(
            [after[i] - before[i] for i in indices], [-learning_rate * gradients[i] for i in indices]
        )
        for group, (learning_rate, indices) in groups.items()
    }


def relative_error(deltas, expected) -> float:
    """max |delta - expected| / max |expected| over lists of arrays."""
    error = max(float(np.max(np.abs(d - e))) for d, e in zip(deltas, expected))
    return error / max(float(np.max(np.abs(e))) for e in expected)


def main(request_path: str, result_path: str) -> None:
    with open(request_path) as file:
        request = json.load(file)
    import tensorflow as tf

    if not os.environ.get("TF_CONFIG"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * request["logical_cpus"])
    sys.path.insert(0, REPO_ROOT)
    from keras_emotion.training.config import TrainConfig
    from keras_emotion.training.task import train

    result = {}
    if request.get("step_config"):
        result["toy_step"] = toy_step_errors(TrainConfig.from_dict(request["step_config"]))
    if request.get("fit_config"):
        _, history = train(TrainConfig.from_dict(request["fit_config"]), verbose=0)
        result["fit_loss"] = history.history["loss"]
    with open(result_path, "w") as file:
        json.dump(result, file)


if __name__ == "__main__":
    main(*sys.argv[1:])
