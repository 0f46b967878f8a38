"""The optimizers of training (`two_rate_sgd`) and of backbone pre-training (`warmup_cosine_adamw`).

`two_rate_sgd`: SGD with momentum, weight decay and warm restarts, one learning rate per
parameter group.

The paper trains the pretrained backbone slowly (lr 1e-5) and the rest of the network fast
(lr 0.1), both with SGD (momentum 0.9, weight decay 5e-5) and SGDR warm restarts. Here each
group gets its own `keras.optimizers.SGD` with its own `CosineDecayRestarts` schedule, and one
`keras.optimizers.MultiOptimizer` dispatches every variable to its group's SGD.

The dispatch is an `OptimizerMap` (not a Python callable) so that the optimizer serialises:
`model.save(".keras")`, `keras.models.load_model` and `BackupAndRestore` keep both groups and
their slots. Keras variable paths do not carry the name of a nested model (a variable of the
layer "conv1" inside the sub-model "backbone" has the path "conv1/kernel"), so the map's one key
is a regular expression matching exactly the backbone variables' paths.
"""

from __future__ import annotations

import re
from typing import Sequence

import keras

from keras_emotion.training.config import TrainConfig

BACKBONE_OPTIMIZER_NAME = "backbone_sgd"
HEAD_OPTIMIZER_NAME = "head_sgd"


def sgdr_schedule(
    initial_learning_rate: float, config: TrainConfig, steps_per_epoch: int
) -> keras.optimizers.schedules.CosineDecayRestarts:
    """Cosine decay with warm restarts (SGDR); the first period lasts `config.restart_epochs`.

    Args:
        initial_learning_rate: learning rate at step 0 (and at each restart when
            `restart_m_mul` is 1).
        config: supplies `restart_epochs`, `restart_t_mul`, `restart_m_mul`, `restart_alpha`.
        steps_per_epoch: optimizer steps in one epoch, to turn epochs into steps.
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch={steps_per_epoch}; need at least 1")
    first_period_steps = max(1, round(config.restart_epochs * steps_per_epoch))
    return keras.optimizers.schedules.CosineDecayRestarts(
        initial_learning_rate=initial_learning_rate,
        first_decay_steps=first_period_steps,
        t_mul=config.restart_t_mul,
        m_mul=config.restart_m_mul,
        alpha=config.restart_alpha,
    )


def two_rate_sgd(
    config: TrainConfig,
    backbone_variables: Sequence,
    head_variables: Sequence,
    steps_per_epoch: int,
) -> keras.optimizers.MultiOptimizer:
    """Two SGDs behind one `MultiOptimizer`: `config.backbone_lr` for the backbone variables,
    `config.head_lr` for every other variable.

    Create it inside `strategy.scope()`: each SGD captures the current distribution strategy.

    Args:
        config: learning rates, `momentum`, `weight_decay` and the SGDR parameters.
        backbone_variables: trainable variables of the backbone (lr `config.backbone_lr`).
        head_variables: every other trainable variable (lr `config.head_lr`); used to check
            that no head variable's path is mistaken for a backbone one.
        steps_per_epoch: optimizer steps in one epoch (for the restart period).

    Raises:
        ValueError: when a head variable has the same path as a backbone variable, so that
            the two groups cannot be told apart by path.
    """

    def sgd(learning_rate: float, name: str) -> keras.optimizers.SGD:
        return keras.optimizers.SGD(
            learning_rate=sgdr_schedule(learning_rate, config, steps_per_epoch),
            momentum=config.momentum,
            weight_decay=config.weight_decay or None,
            name=name,
        )

    head_optimizer = sgd(config.head_lr, HEAD_OPTIMIZER_NAME)
    optimizer_map = keras.optimizers.OptimizerMap(default_optimizer=head_optimizer)
    if backbone_variables:
        backbone_pattern = "(?:" + "|".join(re.escape(v.path) for v in backbone_variables) + ")"
        clashes = sorted(v.path for v in head_variables if re.fullmatch(backbone_pattern, v.path))
        if clashes:
            raise ValueError(
                f"head variables {clashes} have the same paths as backbone variables; "
                "give the head layers names distinct from the backbone layers"
            )
        optimizer_map[backbone_pattern] = sgd(config.backbone_lr, BACKBONE_OPTIMIZER_NAME)
    return keras.optimizers.MultiOptimizer(optimizer_map, name="two_rate_sgd")


def warmup_cosine_adamw(
    learning_rate: float, weight_decay: float, epochs: int, warmup_epochs: float, steps_per_epoch: int
) -> keras.optimizers.AdamW:
    """AdamW for pre-training a backbone: the learning rate rises linearly from 0 to
    `learning_rate` over `warmup_epochs`, then follows a cosine down to 0 at the end of `epochs`."""
    total_steps = epochs * steps_per_epoch
    warmup_steps = min(round(warmup_epochs * steps_per_epoch), total_steps - 1)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=total_steps - warmup_steps,
        warmup_target=learning_rate,
        warmup_steps=warmup_steps,
    )
    return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay)


def group_learning_rates(optimizer: keras.optimizers.Optimizer) -> dict:
    """Current learning rate of each parameter group, {sub-optimizer name: float}.

    Accepts the `MultiOptimizer` of `two_rate_sgd`, also when Keras wrapped it in a
    `LossScaleOptimizer` (mixed_float16).
    """
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return {sub.name: float(keras.ops.convert_to_numpy(sub.learning_rate)) for sub in inner.optimizers}
