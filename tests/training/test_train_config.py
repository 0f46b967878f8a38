"""TrainConfig: JSON round trip, the checks of its values, imports without TensorFlow; one way
from a config file or single options (flags) to a run (`train_config`)."""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import pytest

from keras_emotion.data.config import InputConfig
from keras_emotion.models import ModelConfig
from keras_emotion.training.config import TrainConfig, sgdr_cycle_ends, train_config


def make_config(**overrides) -> TrainConfig:
    values = dict(
        train_data=InputConfig("tfrecords/ck48", training=True, num_frames=4, image_size=32, seed=3),
        val_data=InputConfig("tfrecords/ck48", split="val", num_frames=4, image_size=32, seed=4),
        model=ModelConfig(num_frames=4, image_size=32, spatial="sa", num_heads=3),
    )
    values.update(overrides)
    return TrainConfig(**values)


def test_json_round_trip_keeps_every_field(tmp_path):
    config = make_config(epochs=7, backbone_lr=2e-5, restart_t_mul=1.5, mixed_precision="mixed_bfloat16")
    path = str(tmp_path / "train_config.json")
    config.to_json(path)
    restored = TrainConfig.from_json(path)
    assert restored == config
    assert isinstance(restored.train_data, InputConfig) and isinstance(restored.model, ModelConfig)
    assert restored.train_data.contrast_range == config.train_data.contrast_range
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_config.json"]


def test_defaults_follow_the_paper():
    config = make_config()
    assert (config.backbone_lr, config.head_lr, config.momentum, config.weight_decay) == (1e-5, 0.1, 0.9, 5e-5)
    assert config.epochs == 30


def test_input_and_model_sizes_must_agree():
    with pytest.raises(ValueError, match=r"train_data.num_frames=8 but model.num_frames=4"):
        make_config(train_data=InputConfig("x", num_frames=8, image_size=32))
    with pytest.raises(ValueError, match=r"val_data.image_size=64 but model.image_size=32"):
        make_config(val_data=InputConfig("x", num_frames=4, image_size=64))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"mixed_precision": "float16"}, "mixed_precision='float16'"),
        ({"epochs": 0}, "epochs=0"),
        ({"steps_per_epoch": 0}, "steps_per_epoch=0"),
        ({"restart_epochs": 0}, "restart_epochs=0"),
        ({"restart_t_mul": 0.5}, "restart_t_mul=0.5; must be >= 1"),
    ],
)
def test_bad_values_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_config(**overrides)


def test_sgdr_cycle_ends():
    assert sgdr_cycle_ends(10, 2.0, 12) == [10, 30]
    assert sgdr_cycle_ends(10, 2.0, 30) == [10, 30]
    assert sgdr_cycle_ends(10, 2.0, 5) == [10]
    assert sgdr_cycle_ends(4, 1.5, 19) == [4, 10, 19]
    assert sgdr_cycle_ends(2.5, 1.0, 5) == [2.5, 5]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"epochs": 12},
            "TrainConfig.epochs=12 ends 2 epochs into SGDR cycle 2 (cycles end after epochs 10, 30, ...); "
            "use epochs 10 or 30, or restart_epochs 12",
        ),
        (
            {"epochs": 11, "restart_t_mul": 1.0},
            "TrainConfig.epochs=11 ends 1 epoch into SGDR cycle 2 (cycles end after epochs 10, 20, ...); "
            "use epochs 10 or 20, or restart_epochs 11",
        ),
        (
            {"epochs": 9, "restart_epochs": 2, "restart_t_mul": 1.5},
            "TrainConfig.epochs=9 ends 4 epochs into SGDR cycle 3 (cycles end after epochs 2, 5, 9.5, ...); "
            "use epochs 5, or restart_epochs 9",
        ),
        (
            {"epochs": 40, "restart_epochs": 1, "restart_t_mul": 2.0},
            "TrainConfig.epochs=40 ends 9 epochs into SGDR cycle 6 (cycles end after epochs 1, 3, ..., 31, 63, "
            "...); use epochs 31 or 63, or restart_epochs 40",
        ),
    ],
)
def test_runs_that_stop_inside_an_sgdr_cycle_are_refused(overrides, message):
    with pytest.raises(ValueError) as error:
        make_config(**overrides)
    assert str(error.value) == message


def test_train_config_options_are_checked_against_the_sgdr_cycles():
    with pytest.raises(ValueError, match=r"^TrainConfig.epochs=12 ends 2 epochs into SGDR cycle 2"):
        train_config(make_config(), epochs=12)
    assert train_config(make_config(), epochs=12, restart_epochs=4, restart_t_mul=1.0).epochs == 12


@pytest.mark.parametrize(
    "overrides, first_cycle",
    [
        ({}, 10),  # epochs 30 = 10 + 20
        ({"epochs": 10}, 10),
        ({"epochs": 70}, 10),
        ({"epochs": 1}, 1),  # shorter than restart_epochs: one cycle over the run
        ({"epochs": 7}, 7),
        ({"epochs": 12, "restart_epochs": 12}, 12),
        ({"epochs": 12, "restart_epochs": 4, "restart_t_mul": 1.0}, 4),
    ],
)
def test_runs_that_end_with_an_sgdr_cycle_are_accepted(overrides, first_cycle):
    config = make_config(**overrides)
    assert config.first_cycle_epochs == first_cycle
    assert sgdr_cycle_ends(config.first_cycle_epochs, config.restart_t_mul, config.epochs)[-1] == config.epochs


def test_from_json_names_the_file_and_the_problem(tmp_path):
    unknown = tmp_path / "unknown.json"
    values = make_config().to_dict()
    values["learning_rate"] = 0.1
    unknown.write_text(json.dumps(values))
    with pytest.raises(ValueError, match=r"unknown.json: unknown TrainConfig fields: \['learning_rate'\]"):
        TrainConfig.from_json(str(unknown))

    nested = tmp_path / "nested.json"
    values = make_config().to_dict()
    values["train_data"]["frames"] = 3
    nested.write_text(json.dumps(values))
    with pytest.raises(ValueError, match=r"nested.json: unknown TrainConfig.train_data fields: \['frames'\]"):
        TrainConfig.from_json(str(nested))

    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match="broken.json: not valid JSON"):
        TrainConfig.from_json(str(broken))


LIGHT_IMPORTS_SCRIPT = """
import json, sys
import keras_emotion.models, keras_emotion.training.config, keras_emotion.training.optimizers
import keras
print(json.dumps({"backend": keras.backend.backend(),
                  "loaded": sorted(name for name in ("tensorflow", "dlib") if name in sys.modules)}))
"""


def test_models_and_training_configs_import_without_tensorflow():
    """The model and the optimizer must run under JAX on a machine without TensorFlow."""
    repo_root = pathlib.Path(__file__).resolve().parents[2]
    environment = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join([str(repo_root), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", LIGHT_IMPORTS_SCRIPT], env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"backend": "jax", "loaded": []}


def test_train_config_from_options_builds_the_nested_config():
    config = train_config(
        train_dir="tfrecords/ck48", num_classes=5, num_frames=4, image_size=32, heads=3, batch_size=6, seed=9,
        crop_fraction=0.75, epochs=2,
    )
    expected_data = dict(num_frames=4, image_size=32, crop_fraction=0.75, global_batch_size=6, seed=9)
    assert config == TrainConfig(
        train_data=InputConfig("tfrecords/ck48", training=True, **expected_data),
        val_data=InputConfig("tfrecords/ck48", split="val", **expected_data),
        model=ModelConfig(num_classes=5, num_frames=4, image_size=32, num_heads=3),
        epochs=2,
        seed=9,
    )
    assert train_config(train_dir="a", val_dir="b", num_classes=3).val_data.file_pattern == "b"
    assert train_config(train_dir="a", val_split="", num_classes=3).val_data is None


def test_options_override_single_fields_of_a_base_config(tmp_path):
    base = make_config(epochs=7)
    path = str(tmp_path / "run.json")
    base.to_json(path)
    config = train_config(TrainConfig.from_json(path), epochs=3, num_frames=6, penalty=0.5)
    assert (config.epochs, config.model.penalty) == (3, 0.5)
    assert config.model.num_frames == config.train_data.num_frames == config.val_data.num_frames == 6
    assert config.model.num_heads == 3 and config.train_data.seed == 3 and config.val_data.seed == 4  # kept
    assert train_config(base) == base
    no_validation = train_config(base, val_split="")
    assert no_validation.val_data is None
    validation_again = train_config(no_validation, val_split="test")
    assert validation_again.val_data.split == "test" and not validation_again.val_data.training
    assert validation_again.val_data.sampling == "uniform"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"train_dir": "a", "num_classes": 3, "num_frame": 4}, r"unknown training options \['num_frame'\]"),
        ({"num_classes": 3}, "'train_dir' is required without a config file"),
        ({"train_dir": "a"}, "'num_classes' is required without a config file"),
        ({"train_dir": "a", "num_classes": 3, "heads": 0}, r"ModelConfig.num_heads=0; need at least 1"),
    ],
)
def test_bad_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        train_config(**options)


def test_train_command_reads_a_config_file_and_flags_override_it(tmp_path):
    """scripts/train.py's config: --config's values, then the flags given (and only those)."""
    make_config(epochs=7, head_lr=0.05).to_json(str(tmp_path / "run.json"))
    script = (
        "import sys; from absl import flags; from keras_emotion.cli import train as command; "
        "flags.FLAGS(sys.argv); print(command.config_from_flags().to_dict())"
    )
    command = [sys.executable, "-c", script, "train", f"--config={tmp_path / 'run.json'}", "--epochs=2", "--heads=4"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    expected = dataclasses.replace(
        make_config(epochs=2, head_lr=0.05), model=ModelConfig(num_frames=4, image_size=32, spatial="sa", num_heads=4)
    )
    assert completed.stdout.strip() == str(expected.to_dict())
