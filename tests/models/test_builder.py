"""Tests of keras_emotion.models.builder: outputs, frame mask, saving, variable partition."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_emotion.models import (
    ModelConfig,
    backbone_variables,
    build_backbone,
    build_model,
    head_variables,
    with_any_number_of_frames,
)
from keras_emotion.models.builder import split_at_backbone
from keras_emotion.models.config import SPATIAL_AGGREGATIONS, TEMPORAL_POOLINGS

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGE_SIZE = 32  # compact backbone -> 2 x 2 map, L = 4 regions
NUM_REGIONS = 4
NUM_CLASSES = 3
NUM_HEADS = 2


def small_config(**overrides):
    values = dict(
        num_classes=NUM_CLASSES,
        num_frames=3,
        image_size=IMAGE_SIZE,
        backbone="compact",
        spatial="sa",
        num_heads=NUM_HEADS,
        attention_units=8,
        temporal="tp",
        lstm_units=8,
    )
    values.update(overrides)
    return ModelConfig(**values)


def clip_inputs(rng, mask):
    """Random 0..255 frames for a frame mask given as a nested list (B, F)."""
    mask = np.asarray(mask, "float32")
    frames = rng.uniform(0, 255, (*mask.shape, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
    return {"frames": frames, "frame_mask": mask}


def predict(model, inputs):
    return {name: keras.ops.convert_to_numpy(value) for name, value in model(inputs).items()}


@pytest.mark.parametrize("temporal", TEMPORAL_POOLINGS)
@pytest.mark.parametrize("spatial", SPATIAL_AGGREGATIONS)
def test_outputs_of_every_spatial_temporal_combination(spatial, temporal):
    model = build_model(small_config(spatial=spatial, temporal=temporal))
    outputs = predict(model, clip_inputs(np.random.default_rng(0), [[1, 1, 1], [1, 1, 0]]))

    expected = {"probabilities": (2, NUM_CLASSES), "frame_importance": (2, 3)}
    if spatial != "none":
        expected["spatial_attention"] = (2, 3, NUM_HEADS, NUM_REGIONS)
        np.testing.assert_allclose(outputs["spatial_attention"].sum(axis=-1), 1, rtol=1e-5)
    assert {name: value.shape for name, value in outputs.items()} == expected
    assert sorted(model.output_names) == sorted(expected)
    np.testing.assert_allclose(outputs["probabilities"].sum(axis=-1), 1, rtol=1e-5)
    np.testing.assert_allclose(outputs["frame_importance"].sum(axis=-1), 1, rtol=1e-5)
    assert outputs["frame_importance"][1, 2] == 0


def test_variable_number_of_frames():
    model = build_model(small_config(num_frames=None, spatial="sa", temporal="lstm"))
    rng = np.random.default_rng(1)
    for num_frames in (2, 5):
        outputs = predict(model, clip_inputs(rng, np.ones((2, num_frames))))
        assert outputs["frame_importance"].shape == (2, num_frames)
        assert outputs["spatial_attention"].shape == (2, num_frames, NUM_HEADS, NUM_REGIONS)


def test_with_any_number_of_frames_keeps_weights_and_outputs():
    fixed = build_model(small_config(num_frames=3))
    rng = np.random.default_rng(2)
    three_frames = clip_inputs(rng, np.ones((2, 3)))
    with pytest.raises(ValueError):
        fixed.predict(clip_inputs(rng, np.ones((2, 5))), verbose=0)
    free = with_any_number_of_frames(fixed)
    assert free is not fixed and with_any_number_of_frames(free) is free
    for name, value in predict(fixed, three_frames).items():
        np.testing.assert_allclose(predict(free, three_frames)[name], value, rtol=1e-6, atol=1e-6)
    assert predict(free, clip_inputs(rng, np.ones((2, 5))))["frame_importance"].shape == (2, 5)


@pytest.mark.parametrize("temporal", TEMPORAL_POOLINGS)
@pytest.mark.parametrize("spatial", SPATIAL_AGGREGATIONS)
def test_split_at_backbone_gives_the_model_outputs_from_per_frame_maps(spatial, temporal):
    keras.utils.set_random_seed(4)
    config = small_config(spatial=spatial, temporal=temporal)
    model = build_model(config)
    backbone, head = split_at_backbone(model, config)
    assert backbone is model.get_layer("backbone") and not backbone_variables(head)
    rng = np.random.default_rng(4)
    inputs = clip_inputs(rng, np.ones((2, 3)))
    # Each frame's map computed alone, as the video predictor computes it once for the windows sharing it.
    frames = inputs["frames"].reshape(6, IMAGE_SIZE, IMAGE_SIZE, 3)
    maps = np.stack([keras.ops.convert_to_numpy(backbone(frame[np.newaxis]))[0] for frame in frames])
    split = predict(head, {"frames": maps.reshape(2, 3, *maps.shape[1:]), "frame_mask": inputs["frame_mask"]})
    whole = predict(model, inputs)
    assert sorted(split) == sorted(whole)
    for name, value in whole.items():
        np.testing.assert_allclose(split[name], value, rtol=1e-5, atol=1e-6)
    # The head takes any number of frames although the model was built for 3.
    five = predict(head, {"frames": maps[np.newaxis, :5], "frame_mask": np.ones((1, 5), np.float32)})
    assert five["frame_importance"].shape == (1, 5)


@pytest.mark.parametrize("temporal", TEMPORAL_POOLINGS)
def test_masked_frame_has_no_importance_and_no_influence(temporal):
    keras.utils.set_random_seed(0)  # the same weights in every pytest process, for which the check is not vacuous
    model = build_model(small_config(spatial="sa", temporal=temporal))
    rng = np.random.default_rng(2)
    inputs = clip_inputs(rng, [[1, 0, 1], [1, 1, 1]])
    changed = {**inputs, "frames": inputs["frames"].copy()}
    changed["frames"][0, 1] = rng.uniform(0, 255, changed["frames"][0, 1].shape)

    before, after = predict(model, inputs), predict(model, changed)
    assert before["frame_importance"][0, 1] == 0 and after["frame_importance"][0, 1] == 0
    np.testing.assert_allclose(
        after["probabilities"], before["probabilities"], rtol=1e-5, atol=1e-7
    )

    # Not vacuous: once the frame counts, changing it does change the clip's prediction.
    all_valid = np.ones((2, 3), "float32")
    unmasked_before = predict(model, {**inputs, "frame_mask": all_valid})["probabilities"]
    unmasked_after = predict(model, {**changed, "frame_mask": all_valid})["probabilities"]
    assert np.abs(unmasked_after[0] - unmasked_before[0]).max() > 1e-6


def test_sa_penalty_is_in_losses_and_skips_masked_frames():
    penalty = 0.7
    model = build_model(small_config(spatial="sa", penalty=penalty))
    rng = np.random.default_rng(3)
    # Large scoring weights make the attention (and so the penalty) differ between frames.
    attention_layer = model.get_layer("structured_self_attention")
    for weight in (attention_layer.w_s1, attention_layer.w_s2):
        weight.assign(rng.normal(0, 3, weight.shape).astype("float32"))
    mask = np.array([[1, 1, 0], [1, 0, 0]], "float32")
    attention = predict(model, clip_inputs(rng, mask))["spatial_attention"]

    gram = attention @ np.swapaxes(attention, -1, -2)  # (B, F, N, N)
    per_frame = np.sum((gram - np.eye(NUM_HEADS)) ** 2, axis=(-2, -1))
    assert np.ptp(per_frame) > 0.05
    expected = penalty * np.sum(per_frame * mask) / mask.sum()
    assert len(model.losses) == 1
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.losses[0]), expected, rtol=1e-5)

    assert build_model(small_config(spatial="shift")).losses == []


@pytest.mark.parametrize("spatial, temporal", [("sa", "tp"), ("shift", "lstm"), ("none", "max")])
def test_keras_save_and_load_give_identical_outputs(spatial, temporal, tmp_path):
    model = build_model(small_config(num_frames=None, spatial=spatial, temporal=temporal))
    inputs = clip_inputs(np.random.default_rng(4), [[1, 1, 0], [1, 1, 1]])
    path = str(tmp_path / "model.keras")
    model.save(path)

    loaded = keras.models.load_model(path)

    expected, actual = predict(model, inputs), predict(loaded, inputs)
    assert sorted(actual) == sorted(expected)
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name])
    assert all(variable.path.startswith("backbone/") for variable in backbone_variables(loaded))


@pytest.mark.parametrize("spatial, temporal", [("sa", "tp"), ("none", "lstm")])
def test_backbone_and_head_variables_partition_trainable_variables(spatial, temporal):
    model = build_model(small_config(spatial=spatial, temporal=temporal))
    backbone, head = backbone_variables(model), head_variables(model)

    trainable = {id(variable) for variable in model.trainable_variables}
    backbone_ids = {id(variable) for variable in backbone}
    head_ids = {id(variable) for variable in head}
    assert backbone_ids | head_ids == trainable
    assert not backbone_ids & head_ids
    assert len(backbone) + len(head) == len(model.trainable_variables)
    # compact: 8 conv kernels + 8 BatchNorm (gamma, beta); moving statistics are not trainable.
    assert len(backbone) == 24 and head
    assert all(variable.path.startswith("backbone/") for variable in backbone)
    assert not any(variable.path.startswith("backbone/") for variable in head)


def test_config_backbone_weights_are_loaded(tmp_path):
    pretrained = build_backbone("compact", 64)
    rng = np.random.default_rng(5)
    pretrained.set_weights(
        [rng.normal(0, 0.1, weight.shape).astype("float32") for weight in pretrained.get_weights()]
    )
    path = str(tmp_path / "compact.weights.h5")
    pretrained.save_weights(path)

    model = build_model(small_config(backbone_weights=path))

    for loaded, saved in zip(model.get_layer("backbone").get_weights(), pretrained.get_weights()):
        np.testing.assert_array_equal(loaded, saved)


def test_one_training_step_updates_backbone_and_head():
    model = build_model(small_config(num_frames=None, dropout=0.5))
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss={"probabilities": keras.losses.SparseCategoricalCrossentropy()},
    )
    before = [keras.ops.convert_to_numpy(variable) for variable in model.trainable_variables]
    inputs = clip_inputs(np.random.default_rng(6), [[1, 1, 0], [1, 1, 1]])

    loss = model.train_on_batch(inputs, {"probabilities": np.array([0, 2])})

    assert np.isfinite(loss)
    changed = [
        not np.array_equal(keras.ops.convert_to_numpy(variable), old)
        for variable, old in zip(model.trainable_variables, before)
    ]
    assert all(changed)


def test_mixed_float16_model_gives_float32_outputs_and_penalty_and_trains(global_dtype_policy):
    inputs = clip_inputs(np.random.default_rng(8), [[1, 1, 0], [1, 1, 1]])
    reference = build_model(small_config())
    expected = predict(reference, inputs)
    global_dtype_policy("mixed_float16")
    model = build_model(small_config())
    model.set_weights(reference.get_weights())
    assert model.get_layer("frame_scores").compute_dtype == "float16"

    outputs = model(inputs)

    assert {name: keras.backend.standardize_dtype(value.dtype) for name, value in outputs.items()} == dict.fromkeys(
        expected, "float32"
    )
    for name, value in outputs.items():
        np.testing.assert_allclose(keras.ops.convert_to_numpy(value), expected[name], atol=1e-2, err_msg=name)
    (penalty,) = model.losses
    assert keras.backend.standardize_dtype(penalty.dtype) == "float32"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(penalty), keras.ops.convert_to_numpy(reference.losses[0]), rtol=1e-2)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss={"probabilities": keras.losses.SparseCategoricalCrossentropy()},
    )
    assert np.isfinite(model.train_on_batch(inputs, {"probabilities": np.array([0, 2])}))


JAX_SCRIPT = """
import json, numpy as np, keras
from keras_emotion.models import ModelConfig, build_model
config = ModelConfig(num_classes=3, num_frames=None, image_size=32, spatial="sa", temporal="tp",
                     attention_units=8)
model = build_model(config)
inputs = {"frames": np.random.default_rng(0).uniform(0, 255, (2, 4, 32, 32, 3)).astype("float32"),
          "frame_mask": np.array([[1, 1, 1, 0], [1, 1, 0, 0]], "float32")}
outputs = model.predict(inputs, verbose=0)
print(json.dumps({"backend": keras.backend.backend(),
                  "shapes": {name: list(value.shape) for name, value in outputs.items()},
                  "importance": outputs["frame_importance"].tolist()}))
"""


def test_model_runs_under_jax():
    environment = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        # Cheap XLA compilation: the optimisation passes cost more than they save here.
        "XLA_FLAGS": "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == "jax"
    assert report["shapes"] == {
        "probabilities": [2, 3],
        "frame_importance": [2, 4],
        "spatial_attention": [2, 4, NUM_HEADS, NUM_REGIONS],
    }
    assert report["importance"][0][3] == 0 and report["importance"][1][2:] == [0, 0]


# BatchNormalization rule: a pre-trained backbone keeps BatchNormalization in inference mode.


def pretrained_backbone_file(tmp_path, image_size=IMAGE_SIZE) -> str:
    """A compact backbone with random weights (positive moving variances, moving means away
    from 0) saved as `.weights.h5`, as scripts/pretrain_backbone.py saves one."""
    backbone = build_backbone("compact", image_size)
    rng = np.random.default_rng(11)
    for variable in backbone.weights:
        if variable.path.endswith("moving_variance"):
            value = rng.uniform(0.5, 2.0, variable.shape)
        elif variable.path.endswith(("moving_mean", "beta")):
            value = rng.normal(0, 0.5, variable.shape)
        elif variable.path.endswith("gamma"):
            value = rng.uniform(0.5, 1.5, variable.shape)
        else:
            value = rng.normal(0, 0.1, variable.shape)
        variable.assign(value.astype("float32"))
    path = str(tmp_path / "compact.weights.h5")
    backbone.save_weights(path)
    return path


def training_probabilities(model, inputs) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(inputs, training=True)["probabilities"])


def padded_and_other_clip_changes(rng):
    """Inputs of 2 clips (clip 0 has a padded frame 1) and two changes that must not alter
    clip 0: new pixels in its padded frame, and a new clip 1."""
    inputs = clip_inputs(rng, [[1, 0, 1], [1, 1, 1]])
    new_padding = {**inputs, "frames": inputs["frames"].copy()}
    new_padding["frames"][0, 1] = rng.uniform(0, 255, new_padding["frames"][0, 1].shape)
    new_other_clip = {**inputs, "frames": inputs["frames"].copy()}
    new_other_clip["frames"][1] = rng.uniform(0, 255, new_other_clip["frames"][1].shape)
    return inputs, new_padding, new_other_clip


def moving_statistics(model) -> dict:
    return {
        variable.path: keras.ops.convert_to_numpy(variable).copy()
        for variable in model.get_layer("backbone").non_trainable_weights
        if variable.path.endswith(("moving_mean", "moving_variance"))
    }


def train_one_step(model, rng) -> None:
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss={"probabilities": keras.losses.SparseCategoricalCrossentropy()},
    )
    inputs = clip_inputs(rng, [[1, 0, 1], [1, 1, 1]])
    assert np.isfinite(model.train_on_batch(inputs, {"probabilities": np.array([0, 2])}))


def assert_clip_independent_in_training(model, rng) -> None:
    inputs, new_padding, new_other_clip = padded_and_other_clip_changes(rng)
    expected = training_probabilities(model, inputs)
    for changed in (new_padding, new_other_clip):
        np.testing.assert_allclose(training_probabilities(model, changed)[0], expected[0], rtol=0, atol=1e-6)
    # Inference mode in training: the same outputs as a prediction.
    np.testing.assert_allclose(expected, predict(model, inputs)["probabilities"], rtol=0, atol=1e-6)


def test_pretrained_backbone_batchnorm_runs_in_inference_mode_while_training(tmp_path):
    config = small_config(backbone_weights=pretrained_backbone_file(tmp_path))
    assert config.pretrained_backbone
    model = build_model(config)
    assert model.get_layer("backbone").batchnorm_inference
    rng = np.random.default_rng(12)
    assert_clip_independent_in_training(model, rng)

    before = moving_statistics(model)
    trainable_before = [keras.ops.convert_to_numpy(v).copy() for v in backbone_variables(model)]
    train_one_step(model, rng)
    for path, value in moving_statistics(model).items():
        np.testing.assert_array_equal(value, before[path], err_msg=path)
    # gamma, beta and the kernels still train.
    assert all(
        not np.array_equal(keras.ops.convert_to_numpy(v), old)
        for v, old in zip(backbone_variables(model), trainable_before)
    )
    assert len(before) == 16  # 8 BatchNormalization layers


def test_backbone_from_scratch_keeps_training_mode_batchnorm():
    config = small_config()
    assert not config.pretrained_backbone
    model = build_model(config)
    assert not model.get_layer("backbone").batchnorm_inference
    rng = np.random.default_rng(13)
    # Batch statistics: another clip of the batch changes clip 0 (so the test above is not vacuous).
    inputs, _, new_other_clip = padded_and_other_clip_changes(rng)
    change = np.abs(training_probabilities(model, new_other_clip)[0] - training_probabilities(model, inputs)[0])
    assert change.max() > 1e-6

    before = moving_statistics(model)
    train_one_step(model, rng)
    after = moving_statistics(model)
    assert all(not np.array_equal(after[path], before[path]) for path in before)


def test_mini_xception_counts_as_pretrained():
    assert ModelConfig(backbone="mini_xception", image_size=64).pretrained_backbone
    assert not ModelConfig(backbone="compact", backbone_weights="").pretrained_backbone


def test_batchnorm_rule_survives_save_load_and_any_number_of_frames(tmp_path):
    model = build_model(small_config(backbone_weights=pretrained_backbone_file(tmp_path)))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    free = with_any_number_of_frames(loaded)
    for restored in (loaded, free):
        assert restored.get_layer("backbone").batchnorm_inference
        assert_clip_independent_in_training(restored, np.random.default_rng(14))
        before = moving_statistics(restored)
        train_one_step(restored, np.random.default_rng(15))
        for name, value in moving_statistics(restored).items():
            np.testing.assert_array_equal(value, before[name], err_msg=name)

    # and a model from scratch stays in training mode after loading
    scratch = build_model(small_config())
    scratch.save(str(tmp_path / "scratch.keras"))
    assert not keras.models.load_model(str(tmp_path / "scratch.keras")).get_layer("backbone").batchnorm_inference
@pytest.mark.parametrize("bias", [False, True])
def test_frame_scores_are_w_sm_v_without_bias_unless_asked(bias):
    """O = W_sm V as in the paper: the frame_scores layer has a kernel only, unless frame_score_bias."""
    config = ModelConfig(num_classes=3, num_frames=2, image_size=32, spatial="none", frame_score_bias=bias)
    layer = build_model(config).get_layer("frame_scores")
    assert [weight.name for weight in layer.weights] == (["kernel", "bias"] if bias else ["kernel"])
