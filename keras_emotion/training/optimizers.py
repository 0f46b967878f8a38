"""The optimizers of training (`two_rate_sgd`) and of backbone pre-training (`warmup_cosine_adamw`).

`two_rate_sgd`: SGD with momentum, weight decay and warm restarts (`SGDRSchedule`, whose
cycles end exactly at the floor, the last one with the run), one learning rate per
parameter group.

The paper trains the pretrained backbone slowly (lr 1e-5) and the rest of the network fast
(lr 0.1), both with SGD (momentum 0.9, weight decay 5e-5) and SGDR warm restarts. Here each
group gets its own `keras.optimizers.SGD` with its own `SGDRSchedule`, and one
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
import numpy as np
from keras import ops

from keras_emotion.training.config import TrainConfig, sgdr_cycle_ends

BACKBONE_OPTIMIZER_NAME = "backbone_sgd"
BACKBONE_OPTIMIZERS = ("adamw", "lamb")
HEAD_OPTIMIZER_NAME = "head_sgd"


@keras.saving.register_keras_serializable(package="keras_emotion")
class SGDRSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine decay with warm restarts over given cycles, each ending exactly at the floor.

    Cycle i lasts `cycle_steps[i]` steps; its step k (0 .. T_i - 1) has the rate

        lr * (alpha + (1 - alpha) * m_mul**i * (1 + cos(pi * k / (T_i - 1))) / 2)

    so its first step is at the peak lr * (alpha + (1 - alpha) * m_mul**i) and its last step
    at the floor alpha * lr (a one-step cycle is its peak). Keras' `CosineDecayRestarts`
    uses k / T_i and so stops one step short of the floor; here the last step of a run that
    ends with a cycle trains at the floor. Steps after the last cycle stay at the floor.

    Args:
        initial_learning_rate: lr, the rate of step 0.
        cycle_steps: the length of each cycle in steps (positive ints).
        m_mul: factor applied to the amplitude above the floor at each restart.
        alpha: the floor, as a fraction of lr.
    """

    def __init__(self, initial_learning_rate, cycle_steps, m_mul=1.0, alpha=0.0, name="sgdr"):
        super().__init__()
        self.initial_learning_rate = float(initial_learning_rate)
        self.cycle_steps = [int(steps) for steps in cycle_steps]
        if not self.cycle_steps or min(self.cycle_steps) < 1:
            raise ValueError(f"SGDRSchedule: cycle_steps={self.cycle_steps}; need positive lengths")
        self.m_mul = float(m_mul)
        self.alpha = float(alpha)
        self.name = name

    def __call__(self, step):
        lengths = np.asarray(self.cycle_steps, "float32")
        ends = np.cumsum(lengths)
        starts = ends - lengths
        step = ops.cast(step, "float32")
        cycle = ops.sum(ops.cast(ops.greater_equal(step, ends), "int32"))  # len(lengths) after the run
        last_cycle = len(lengths) - 1
        current = ops.minimum(cycle, last_cycle)
        length = ops.take(lengths, current)
        fraction = (step - ops.take(starts, current)) / ops.maximum(length - 1.0, 1.0)
        fraction = ops.where(ops.greater(cycle, last_cycle), 1.0, ops.clip(fraction, 0.0, 1.0))
        amplitude = ops.power(self.m_mul, ops.cast(current, "float32"))
        cosine = 0.5 * (1.0 + ops.cos(np.pi * fraction))
        return self.initial_learning_rate * (self.alpha + (1.0 - self.alpha) * amplitude * cosine)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "cycle_steps": list(self.cycle_steps),
            "m_mul": self.m_mul,
            "alpha": self.alpha,
            "name": self.name,
        }


def sgdr_cycle_steps(config: TrainConfig, steps_per_epoch: int) -> list:
    """The length in steps of each SGDR cycle of the run of `config` (`sgdr_cycle_ends` of
    `config.first_cycle_epochs`, `restart_t_mul` and `epochs`, turned into steps); they sum
    to `config.epochs * steps_per_epoch`."""
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch={steps_per_epoch}; need at least 1")
    ends = sgdr_cycle_ends(config.first_cycle_epochs, config.restart_t_mul, config.epochs)
    boundaries = sorted({max(1, round(end * steps_per_epoch)) for end in ends})
    return [end - start for start, end in zip([0, *boundaries[:-1]], boundaries)]


def sgdr_schedule(initial_learning_rate: float, config: TrainConfig, steps_per_epoch: int) -> SGDRSchedule:
    """Cosine decay with warm restarts (SGDR) over the run of `config`, which ends at the end
    of a cycle (TrainConfig checks it): the first cycle lasts `config.first_cycle_epochs`
    (`restart_epochs`, or `epochs` for a shorter run), each next one `restart_t_mul` times
    longer, and the last step of the run is at the floor `restart_alpha * lr`.

    Args:
        initial_learning_rate: learning rate at step 0 (and at each restart when
            `restart_m_mul` is 1).
        config: supplies `epochs`, `restart_epochs`, `restart_t_mul`, `restart_m_mul`,
            `restart_alpha`.
        steps_per_epoch: optimizer steps in one epoch, to turn epochs into steps.
    """
    return SGDRSchedule(
        initial_learning_rate,
        sgdr_cycle_steps(config, steps_per_epoch),
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

    return _two_group_optimizer(
        sgd(config.head_lr, HEAD_OPTIMIZER_NAME),
        sgd(config.backbone_lr, BACKBONE_OPTIMIZER_NAME),
        backbone_variables,
        head_variables,
        name="two_rate_sgd",
    )


def _two_group_optimizer(head_optimizer, backbone_optimizer, backbone_variables, head_variables, name: str):
    """A `MultiOptimizer` sending the backbone variables (matched by path) to
    `backbone_optimizer` and every other variable to `head_optimizer`.

    Raises:
        ValueError: a head variable has the path of a backbone variable.
    """
    optimizer_map = keras.optimizers.OptimizerMap(default_optimizer=head_optimizer)
    if backbone_variables:
        backbone_pattern = "(?:" + "|".join(re.escape(v.path) for v in backbone_variables) + ")"
        clashes = sorted(v.path for v in head_variables if re.fullmatch(backbone_pattern, v.path))
        if clashes:
            raise ValueError(
                f"head variables {clashes} have the same paths as backbone variables; "
                "give the head layers names distinct from the backbone layers"
            )
        optimizer_map[backbone_pattern] = backbone_optimizer
    return keras.optimizers.MultiOptimizer(optimizer_map, name=name)


def warmup_cosine_adamw(
    learning_rate: float,
    weight_decay: float,
    epochs: int,
    warmup_epochs: float,
    steps_per_epoch: int,
    backbone_variables: Sequence = (),
    head_variables: Sequence = (),
    backbone_lr_multiplier: float = 1.0,
    backbone_optimizer: str = "adamw",
) -> keras.optimizers.Optimizer:
    """AdamW for pre-training a backbone: the learning rate rises linearly from 0 to
    `learning_rate` over `warmup_epochs`, then follows a cosine down to 0 at the end of `epochs`.

    With `backbone_lr_multiplier` != 1 and `backbone_variables` given: two AdamWs behind one
    `MultiOptimizer`, the backbone's at `backbone_lr_multiplier` x the schedule, the other
    variables' (`head_variables`) at the schedule. Adam steps every weight by about the
    learning rate whatever its scale, so a pre-trained backbone whose weights are small (dlib's
    ResNet, batch normalisation folded into its affine layers: |w| ~ 0.003) needs a far smaller
    rate than a new head.

    `backbone_optimizer="lamb"` (with `backbone_variables`) gives the backbone LAMB instead,
    without weight decay: each weight tensor then moves by about the learning rate *relative to
    its own norm* per step, whatever its scale. dlib's folded affine scales (|gamma| ~ 3-15) and
    its kernels (|w| ~ 0.005-0.02) differ by three orders of magnitude, so one Adam rate moves
    the kernels a thousand times faster than the scales. Weight decay is left out because
    without batch normalisation, shrinking every layer's weights shrinks the network's
    activations multiplicatively.

    Raises:
        ValueError: an unknown `backbone_optimizer`, or backbone settings without `backbone_variables`.
    """
    if backbone_optimizer not in BACKBONE_OPTIMIZERS:
        raise ValueError(f"backbone_optimizer={backbone_optimizer!r}; expected one of {BACKBONE_OPTIMIZERS}")
    total_steps = epochs * steps_per_epoch
    warmup_steps = min(round(warmup_epochs * steps_per_epoch), total_steps - 1)

    def schedule(peak: float) -> keras.optimizers.schedules.CosineDecay:
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0,
            decay_steps=total_steps - warmup_steps,
            warmup_target=peak,
            warmup_steps=warmup_steps,
        )

    def adamw(peak: float, name: str) -> keras.optimizers.AdamW:
        return keras.optimizers.AdamW(learning_rate=schedule(peak), weight_decay=weight_decay, name=name)

    backbone_settings = backbone_lr_multiplier != 1.0 or backbone_optimizer != "adamw"
    if backbone_settings and not backbone_variables:
        raise ValueError(
            f"backbone_lr_multiplier={backbone_lr_multiplier}, backbone_optimizer={backbone_optimizer!r}: "
            "these apply to the backbone, but no backbone_variables were given"
        )
    if not backbone_settings:
        return adamw(learning_rate, "adamw")
    backbone_peak = learning_rate * backbone_lr_multiplier
    return _two_group_optimizer(
        adamw(learning_rate, "head_adamw"),
        keras.optimizers.Lamb(learning_rate=schedule(backbone_peak), name="backbone_lamb")
        if backbone_optimizer == "lamb"
        else adamw(backbone_peak, "backbone_adamw"),
        backbone_variables,
        head_variables,
        name="two_rate_adamw",
    )


def group_learning_rates(optimizer: keras.optimizers.Optimizer) -> dict:
    """Current learning rate of each parameter group, {sub-optimizer name: float}.

    Accepts the `MultiOptimizer` of `two_rate_sgd`, also when Keras wrapped it in a
    `LossScaleOptimizer` (mixed_float16).
    """
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return {sub.name: float(keras.ops.convert_to_numpy(sub.learning_rate)) for sub in inner.optimizers}
