"""The two-rate SGD: per-group learning rates, SGDR restarts, saving with the model."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_emotion.data.config import InputConfig
from keras_emotion.models import ModelConfig
from keras_emotion.training.config import TrainConfig
from keras_emotion.training.optimizers import group_learning_rates, sgdr_schedule, two_rate_sgd, warmup_cosine_adamw
from replica_worker import toy_model, toy_step_config, toy_step_errors


def make_config(**overrides) -> TrainConfig:
    values = dict(
        train_data=InputConfig("unused", num_frames=3, image_size=32),
        model=ModelConfig(num_frames=3, image_size=32),
    )
    values.update(overrides)
    return TrainConfig(**values)


def compiled_toy(config, steps_per_epoch=1):
    model, backbone = toy_model()
    head = [v for v in model.trainable_variables if all(v is not b for b in backbone.trainable_variables)]
    model.compile(
        optimizer=two_rate_sgd(config, backbone.trainable_variables, head, steps_per_epoch),
        loss=keras.losses.SparseCategoricalCrossentropy(),
    )
    return model


def test_each_group_moves_at_its_own_learning_rate():
    errors = toy_step_errors(toy_step_config(num_frames=3, image_size=32))
    assert errors["backbone"] < 1e-3, errors
    assert errors["head"] < 1e-3, errors


def cosine_restarts(step, initial, first_period, t_mul, m_mul, alpha):
    """Reference SGDR: a cosine from `initial` (first step of a period) down to the floor
    alpha*initial (last step of the period), restarted after each period; each restart
    multiplies the period by t_mul and the cosine's amplitude above the floor by m_mul."""
    period, start, scale = first_period, 0, 1.0
    while step >= start + period:
        start, period, scale = start + period, period * t_mul, scale * m_mul
    fraction = (step - start) / max(period - 1, 1)
    return initial * (alpha + (1 - alpha) * scale * 0.5 * (1 + math.cos(math.pi * fraction)))


def test_sgdr_restarts_and_matches_the_formula():
    config = make_config(restart_epochs=2, restart_t_mul=2.0, restart_m_mul=0.5, restart_alpha=0.1)
    steps_per_epoch = 5
    schedule = sgdr_schedule(0.1, config, steps_per_epoch)
    first_period = 10
    steps = np.arange(0, 35)
    rates = np.array([float(schedule(step)) for step in steps])
    expected = [cosine_restarts(step, 0.1, first_period, 2.0, 0.5, 0.1) for step in steps]
    np.testing.assert_allclose(rates, expected, rtol=1e-5)
    assert np.all(np.diff(rates[:first_period]) < 0)
    assert rates[first_period - 1] == pytest.approx(0.1 * 0.1)  # the last step of a cycle: the floor
    assert rates[first_period] > 4 * rates[first_period - 1]  # the warm restart
    assert rates[first_period] == pytest.approx(0.1 * (0.1 + 0.9 * 0.5))  # m_mul
    assert rates[3 * first_period] == pytest.approx(0.1 * (0.1 + 0.9 * 0.25))  # after a 2x longer period


def test_sub_optimizers_follow_their_schedules_during_fit():
    config = make_config(backbone_lr=0.01, head_lr=0.1, restart_epochs=1, epochs=3)
    model = compiled_toy(config, steps_per_epoch=3)
    random = np.random.default_rng(1)
    x, y = random.normal(size=(12, 5)).astype("float32"), random.integers(0, 3, 12)
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    rates = {opt.name: float(opt.learning_rate) for opt in model.optimizer.optimizers}
    # 3 steps done: a period of 3 steps has ended, so both groups restarted at their initial rate.
    assert rates == pytest.approx({"backbone_sgd": 0.01, "head_sgd": 0.1})
    assert [int(opt.iterations) for opt in model.optimizer.optimizers] == [3, 3]


def test_optimizer_survives_keras_save_and_load(tmp_path):
    config = make_config(backbone_lr=0.01, head_lr=0.1)
    model = compiled_toy(config, steps_per_epoch=2)
    random = np.random.default_rng(2)
    x, y = random.normal(size=(16, 5)).astype("float32"), random.integers(0, 3, 16)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    path = str(tmp_path / "toy.keras")
    model.save(path)
    restored = keras.models.load_model(path)

    assert isinstance(restored.optimizer, keras.optimizers.MultiOptimizer)
    assert [opt.name for opt in restored.optimizer.optimizers] == ["backbone_sgd", "head_sgd"]
    for original, loaded in zip(model.optimizer.variables, restored.optimizer.variables):
        assert original.path == loaded.path
        np.testing.assert_array_equal(original.numpy(), loaded.numpy())
    momentum_slots = [v for v in restored.optimizer.variables if "momentum" in v.path]
    assert len(momentum_slots) == 4 and all(np.any(v.numpy() != 0) for v in momentum_slots)

    # Both continue identically: same groups, rates and momentum.
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    restored.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for original, loaded in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_allclose(original, loaded, rtol=1e-6, atol=1e-7)


def test_head_variable_with_a_backbone_path_is_rejected():
    features = keras.Input((4,))
    backbone = keras.Model(features, keras.layers.Dense(3, name="shared_name")(features), name="backbone")
    inputs = keras.Input((4,))
    head = keras.layers.Dense(2, name="shared_name")
    model = keras.Model(inputs, head(backbone(inputs)))
    assert [v.path for v in head.trainable_variables] == [v.path for v in backbone.trainable_variables]
    with pytest.raises(ValueError, match=r"head variables \['shared_name/bias', 'shared_name/kernel'\]"):
        two_rate_sgd(make_config(), backbone.trainable_variables, head.trainable_variables, 1)
    assert len(model.trainable_variables) == 4


def test_mixed_float16_wraps_both_groups_in_loss_scaling():
    # Seeded: the toy's softmax runs in float16, and with some initial weights (seeds 0 and 1 of
    # 0-5) every step's gradients overflow, so loss scaling skips them all and no weight moves.
    keras.utils.set_random_seed(2)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = compiled_toy(make_config(backbone_lr=0.01, head_lr=0.1))
    finally:
        keras.config.set_dtype_policy(previous)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(model.optimizer.inner_optimizer, keras.optimizers.MultiOptimizer)
    random = np.random.default_rng(3)
    x, y = random.normal(size=(8, 5)).astype("float32"), random.integers(0, 3, 8)
    before = [v.numpy() for v in model.trainable_variables]
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert all(np.any(b != v.numpy()) for b, v in zip(before, model.trainable_variables))
    decay = 0.5 * (1 + math.cos(math.pi * 2 / 9))  # step 2 of a 10-step period (steps 0..9)
    assert group_learning_rates(model.optimizer) == pytest.approx({"backbone_sgd": 0.01 * decay, "head_sgd": 0.1 * decay})


def reference_run_rates(initial, epochs, steps_per_epoch, restart_epochs, t_mul, m_mul, alpha) -> np.ndarray:
    """NumPy reference of the rate of each step of a run: the first period is restart_epochs
    (or the whole run when shorter), each step k of a period of T steps at
    cos(pi k / (T - 1))."""
    first = min(restart_epochs, epochs) * steps_per_epoch
    lengths, total = [], epochs * steps_per_epoch
    while sum(lengths) < total:
        lengths.append(round(first * t_mul ** len(lengths)))
    assert sum(lengths) == total, "the run must end with a period"
    rates = []
    for cycle, length in enumerate(lengths):
        k = np.arange(length)
        cosine = 0.5 * (1 + np.cos(np.pi * k / max(length - 1, 1)))
        rates.append(initial * (alpha + (1 - alpha) * m_mul**cycle * cosine))
    return np.concatenate(rates)


@pytest.mark.parametrize(
    "epochs, restart_epochs, t_mul, m_mul, alpha, steps_per_epoch",
    [
        (30, 10, 2.0, 1.0, 0.0, 4),  # the defaults: cycles of 10 and 20 epochs
        (10, 10, 2.0, 1.0, 0.0, 7),  # one cycle
        (7, 10, 2.0, 1.0, 0.05, 3),  # shorter than restart_epochs: one cycle of 7 epochs
        (1, 10, 2.0, 1.0, 0.0, 5),  # a 1-epoch run
        (12, 4, 1.0, 0.5, 0.1, 2),  # 3 equal cycles
        (14, 2, 2.0, 0.8, 0.01, 3),  # 2, 4, 8 epochs
        (19, 4, 1.5, 1.0, 0.2, 2),  # 4, 6, 9 epochs
        (5, 2.5, 1.0, 1.0, 0.0, 2),  # fractional period: 5 steps per cycle
    ],
)
def test_last_step_of_every_run_is_at_the_floor(epochs, restart_epochs, t_mul, m_mul, alpha, steps_per_epoch):
    config = make_config(
        epochs=epochs, restart_epochs=restart_epochs, restart_t_mul=t_mul, restart_m_mul=m_mul, restart_alpha=alpha
    )
    initial = 0.1
    schedule = sgdr_schedule(initial, config, steps_per_epoch)
    total = epochs * steps_per_epoch
    rates = np.array([float(schedule(step)) for step in range(total)])
    np.testing.assert_allclose(
        rates, reference_run_rates(initial, epochs, steps_per_epoch, restart_epochs, t_mul, m_mul, alpha), atol=1e-6
    )
    assert abs(rates[-1] - alpha * initial) <= 1e-6
    assert rates[0] == pytest.approx(initial)
    # After the run the rate stays at the floor (e.g. the rate logged after the last epoch).
    assert abs(float(schedule(total)) - alpha * initial) <= 1e-6
    assert abs(float(schedule(total + 5)) - alpha * initial) <= 1e-6


def test_rates_after_a_fit_are_at_the_floor():
    """Through `fit` (3 epochs of 2 steps, cycles of 1 and 2 epochs): after the run each
    group's rate, the one LearningRateLogger records for the last epoch, is its floor."""
    config = make_config(backbone_lr=0.01, head_lr=0.1, epochs=3, restart_epochs=1, restart_alpha=0.1)
    model = compiled_toy(config, steps_per_epoch=2)
    random = np.random.default_rng(4)
    x, y = random.normal(size=(8, 5)).astype("float32"), random.integers(0, 3, 8)
    model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0)
    assert [int(opt.iterations) for opt in model.optimizer.optimizers] == [6, 6]
    rates = group_learning_rates(model.optimizer)
    assert rates == pytest.approx({"backbone_sgd": 0.1 * 0.01, "head_sgd": 0.1 * 0.1}, abs=1e-9)


def test_two_rate_adamw_steps_the_backbone_at_its_fraction_of_the_rate():
    """Adam's first step moves every weight by the learning rate (m / sqrt(v) = sign(g)), so
    after one step the backbone's weights moved 0.05 x as far as the head's."""
    keras.utils.set_random_seed(0)
    model, backbone = toy_model()
    head = [v for v in model.trainable_variables if all(v is not b for b in backbone.trainable_variables)]
    model.compile(
        optimizer=warmup_cosine_adamw(
            1e-2, 0.0, epochs=2, warmup_epochs=0, steps_per_epoch=5,
            backbone_variables=backbone.trainable_variables, head_variables=head, backbone_lr_multiplier=0.05,
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(),
    )
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    features = np.random.default_rng(0).normal(size=(8, model.input_shape[-1])).astype(np.float32)
    model.train_on_batch(features, np.arange(8) % 3)
    moved = {v.path: np.abs(v.numpy() - before[v.path]) for v in model.trainable_variables}
    backbone_paths = {v.path for v in backbone.trainable_variables}
    backbone_steps = np.concatenate([step.ravel() for path, step in moved.items() if path in backbone_paths])
    head_steps = np.concatenate([step.ravel() for path, step in moved.items() if path not in backbone_paths])
    assert np.median(backbone_steps[backbone_steps > 0]) == pytest.approx(5e-4, rel=0.02)
    assert np.median(head_steps[head_steps > 0]) == pytest.approx(1e-2, rel=0.02)
    cosine = 0.5 * (1 + math.cos(math.pi * 1 / 10))  # step 1 of 10, no warm-up
    assert group_learning_rates(model.optimizer) == pytest.approx({"head_adamw": 1e-2 * cosine, "backbone_adamw": 5e-4 * cosine})


def test_lamb_moves_each_backbone_tensor_by_the_rate_relative_to_its_norm():
    """LAMB's first step is lr x ||w|| x sign(g) / sqrt(n) for each backbone tensor w of n
    entries (Adam's first step is sign(g); the trust ratio rescales it to w's norm): the kernel
    scaled up 100x and the bias scaled down 100x both move by lr of their own norm, while the
    head's AdamW moves each weight by its rate whatever its scale."""
    keras.utils.set_random_seed(0)
    model, backbone = toy_model()
    kernel, bias = backbone.trainable_variables
    kernel.assign(kernel.numpy() * 100.0)
    bias.assign(np.full(bias.shape, 0.01, np.float32))
    head = [v for v in model.trainable_variables if all(v is not b for b in backbone.trainable_variables)]
    model.compile(
        optimizer=warmup_cosine_adamw(
            1e-2, 0.0, epochs=2, warmup_epochs=0, steps_per_epoch=5, backbone_variables=backbone.trainable_variables,
            head_variables=head, backbone_lr_multiplier=0.5, backbone_optimizer="lamb",
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(),
    )
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    features = np.random.default_rng(0).normal(size=(8, model.input_shape[-1])).astype(np.float32)
    labels = np.arange(8) % 3
    with tf.GradientTape() as tape:
        loss = keras.losses.SparseCategoricalCrossentropy()(labels, model(features))
    gradients = {v.path: g.numpy() for v, g in zip(backbone.trainable_variables, tape.gradient(loss, backbone.trainable_variables))}
    model.train_on_batch(features, labels)
    for variable in backbone.trainable_variables:
        old, gradient = before[variable.path], gradients[variable.path]
        expected = old - 5e-3 * np.linalg.norm(old) * np.sign(gradient) / np.sqrt(np.count_nonzero(gradient))
        np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-4, atol=1e-9)
    for variable in head:
        steps = np.abs(variable.numpy() - before[variable.path])
        assert np.median(steps[steps > 0]) == pytest.approx(1e-2, rel=0.02)
    assert set(group_learning_rates(model.optimizer)) == {"head_adamw", "backbone_lamb"}


def test_an_unknown_backbone_optimizer_is_named():
    with pytest.raises(ValueError, match=r"^backbone_optimizer='sgd'; expected one of \('adamw', 'lamb'\)$"):
        warmup_cosine_adamw(1e-2, 0.0, 2, 0, 5, backbone_optimizer="sgd")


def test_backbone_settings_without_backbone_variables_are_refused():
    with pytest.raises(
        ValueError,
        match=r"^backbone_lr_multiplier=1\.0, backbone_optimizer='lamb': these apply to the backbone, "
        r"but no backbone_variables were given$",
    ):
        warmup_cosine_adamw(1e-2, 0.0, 2, 0, 5, backbone_optimizer="lamb")
    with pytest.raises(ValueError, match=r"^backbone_lr_multiplier=0\.1, backbone_optimizer='adamw': "):
        warmup_cosine_adamw(1e-2, 0.0, 2, 0, 5, backbone_lr_multiplier=0.1)
