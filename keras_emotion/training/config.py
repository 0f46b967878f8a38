"""The configuration of a training run: model, data, optimisation, output.

One way from a configuration to a run: `train_config(base, **options)` gives the TrainConfig
of a JSON file (`TrainConfig.to_json`'s format) or of the defaults, with single options set
by their flat names (`TRAIN_OPTIONS`, the flags of scripts/train.py). The command line, the
demo job, the ablation grid and the training benchmark all build their runs with it.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from keras_emotion.data.config import InputConfig
from keras_emotion.files import read_json, write_json_atomically
from keras_emotion.models.config import ModelConfig, config_from_dict

MIXED_PRECISION_POLICIES = ("none", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass
class TrainConfig:
    """Everything `keras_emotion.training.task.train` needs.

    A run must end at the end of an SGDR cycle (at the floor of the learning rate, not at a
    high rate just after a restart): cycles end after epochs R, R(1 + t), R(1 + t + t^2), ...
    (R = `first_cycle_epochs`, t = `restart_t_mul`; `sgdr_cycle_ends`) and `epochs` must be
    one of them. With the defaults (R 10, t 2): 10, 30, 70, ...; any epochs <= 10 is one cycle.

    Attributes:
        train_data: the training input (shards, split, sampling, augmentation, global batch
            size, seed). Its `num_frames` and `image_size` must equal the model's.
        val_data: the validation input (evaluation mode), or None for no validation.
        model: the model to build (its `backbone_weights` are loaded before training).
        epochs: number of epochs.
        steps_per_epoch: optimizer steps per epoch; None: one pass over the training clips.
        backbone_lr: initial learning rate of the backbone variables.
        head_lr: initial learning rate of every other variable.
        momentum: SGD momentum of both groups.
        weight_decay: decoupled weight decay of both groups (0 disables it).
        restart_epochs: length of the first SGDR cosine period, in epochs; a run shorter
            than that (epochs < restart_epochs) is one period of `epochs`
            (`first_cycle_epochs`).
        restart_t_mul: factor applied to the period length at each restart (>= 1).
        restart_m_mul: factor applied at each restart to the cosine's amplitude above the floor.
        restart_alpha: floor of the cosine, as a fraction of the initial learning rate.
        mixed_precision: one of MIXED_PRECISION_POLICIES.
        seed: seed of the weight initialisation (the inputs have their own `seed`).
        output_dir: folder receiving checkpoints, logs and the trained model.
        allow_incomplete: train on data whose preprocessing did not finish (its manifest
            says `"complete": false`) instead of refusing it.
    """

    train_data: InputConfig
    val_data: Optional[InputConfig] = None
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    epochs: int = 30
    steps_per_epoch: Optional[int] = None
    backbone_lr: float = 1e-5
    head_lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-5
    restart_epochs: float = 10.0
    restart_t_mul: float = 2.0
    restart_m_mul: float = 1.0
    restart_alpha: float = 0.0
    mixed_precision: str = "none"
    seed: int = 0
    output_dir: str = "runs/emotion"
    allow_incomplete: bool = False

    def __post_init__(self):
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        if isinstance(self.train_data, dict):
            self.train_data = _input_config_from_dict(self.train_data, "train_data")
        if isinstance(self.val_data, dict):
            self.val_data = _input_config_from_dict(self.val_data, "val_data")
        for name, data in (("train_data", self.train_data), ("val_data", self.val_data)):
            if data is None:
                continue
            if self.model.num_frames is not None and data.num_frames != self.model.num_frames:
                raise ValueError(
                    f"TrainConfig.{name}.num_frames={data.num_frames} but "
                    f"model.num_frames={self.model.num_frames}; they must be equal"
                )
            if data.image_size != self.model.image_size:
                raise ValueError(
                    f"TrainConfig.{name}.image_size={data.image_size} but "
                    f"model.image_size={self.model.image_size}; they must be equal"
                )
        if self.mixed_precision not in MIXED_PRECISION_POLICIES:
            raise ValueError(
                f"TrainConfig.mixed_precision={self.mixed_precision!r}; "
                f"expected one of {MIXED_PRECISION_POLICIES}"
            )
        if self.epochs < 1:
            raise ValueError(f"TrainConfig.epochs={self.epochs}; need at least 1")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"TrainConfig.steps_per_epoch={self.steps_per_epoch}; need at least 1 or None")
        if self.restart_epochs <= 0:
            raise ValueError(f"TrainConfig.restart_epochs={self.restart_epochs}; must be > 0")
        if self.restart_t_mul < 1:
            raise ValueError(f"TrainConfig.restart_t_mul={self.restart_t_mul}; must be >= 1")
        problem = sgdr_epochs_problem(self.epochs, self.restart_epochs, self.restart_t_mul)
        if problem:
            raise ValueError(f"TrainConfig.{problem}")

    @property
    def first_cycle_epochs(self) -> float:
        """Length of the first SGDR cycle, in epochs: `restart_epochs`, or `epochs` when the
        run is shorter than that (it is then one cosine cycle)."""
        return min(self.restart_epochs, self.epochs)

    def to_dict(self) -> dict:
        """Plain JSON-ready values (nested configs as dicts)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        return config_from_dict(cls, values)

    def to_json(self, path: str) -> None:
        """Writes the config to `path` (through a temporary file, then a rename)."""
        write_json_atomically(path, self.to_dict())

    @classmethod
    def from_json(cls, path: str) -> "TrainConfig":
        """Reads a config written by `to_json`."""
        values = read_json(path)
        try:
            return cls.from_dict(values)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from error


def sgdr_cycle_ends(restart_epochs: float, t_mul: float, max_epochs: float) -> list:
    """The epochs after which the SGDR cycles end, up to the first end at or after `max_epochs`.

    Cycle i (from 0) lasts restart_epochs * t_mul**i epochs, so the cycles end after
    R, R(1 + t), R(1 + t + t^2), ... epochs. E.g. `sgdr_cycle_ends(10, 2, 12) == [10, 30]`;
    a run of `max_epochs` ends at the end of a cycle when the last end equals `max_epochs`.

    Raises:
        ValueError: restart_epochs <= 0 or t_mul < 1 (shrinking cycles might never reach
            `max_epochs`).
    """
    if restart_epochs <= 0:
        raise ValueError(f"restart_epochs={restart_epochs}; must be > 0")
    if t_mul < 1:
        raise ValueError(f"t_mul={t_mul}; must be >= 1")
    ends, period = [float(restart_epochs)], float(restart_epochs)
    while ends[-1] < max_epochs and not _same_epoch(ends[-1], max_epochs):
        period *= t_mul
        ends.append(ends[-1] + period)
    return ends


def _same_epoch(a: float, b: float) -> bool:
    """Equal up to the rounding of sums of float periods."""
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def sgdr_epochs_problem(epochs: int, restart_epochs: float, t_mul: float, fix_restart_epochs: bool = True) -> str:
    """Why a run of `epochs` does not end at the end of an SGDR cycle, or "" when it does.

    The first cycle lasts `restart_epochs`, or `epochs` when the run is shorter (as
    `TrainConfig.first_cycle_epochs`).

    The message names the cycle the run stops in, the cycle ends, the valid epoch counts
    around `epochs` and (with `fix_restart_epochs`) that restart_epochs = epochs makes the
    run one cycle, e.g. "epochs=12 ends 2 epochs into SGDR cycle 2 (cycles end after epochs
    10, 30, ...); use epochs 10 or 30, or restart_epochs 12".
    """
    ends = sgdr_cycle_ends(min(restart_epochs, epochs), t_mul, epochs)
    if _same_epoch(ends[-1], epochs):
        return ""
    into = epochs - ends[-2]
    valid = [f"{end:g}" for end in ends[-2:] if _same_epoch(end, round(end))]
    fixes = [f"epochs {' or '.join(valid)}"] if valid else []
    if fix_restart_epochs:
        fixes.append(f"restart_epochs {epochs}")
    shown = [f"{end:g}" for end in ends]
    if len(shown) > 4:
        shown = [*shown[:2], "...", *shown[-2:]]
    return (
        f"epochs={epochs} ends {into:g} epoch{'' if into == 1 else 's'} into SGDR cycle {len(ends)} "
        f"(cycles end after epochs {', '.join(shown)}, ...); use {', or '.join(fixes)}"
    )


def _input_config_from_dict(values: dict, name: str) -> InputConfig:
    """An InputConfig from `dataclasses.asdict` output (JSON turned its tuples into lists)."""
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in values.items()}
    return config_from_dict(InputConfig, values, f"TrainConfig.{name}")


# Each flat option and the TrainConfig fields it sets ("section.field"; a section that is None,
# such as val_data without validation, is left alone).
TRAIN_OPTIONS = {
    "train_dir": ("train_data.file_pattern",),
    "train_split": ("train_data.split",),
    "val_dir": ("val_data.file_pattern",),
    "num_classes": ("model.num_classes",),
    "backbone": ("model.backbone",),
    "backbone_weights": ("model.backbone_weights",),
    "spatial": ("model.spatial",),
    "heads": ("model.num_heads",),
    "attention_units": ("model.attention_units",),
    "penalty": ("model.penalty",),
    "temporal": ("model.temporal",),
    "dropout": ("model.dropout",),
    "num_frames": ("model.num_frames", "train_data.num_frames", "val_data.num_frames"),
    "image_size": ("model.image_size", "train_data.image_size", "val_data.image_size"),
    "crop_fraction": ("train_data.crop_fraction", "val_data.crop_fraction"),
    "color_jitter": ("train_data.color_jitter",),
    "batch_size": ("train_data.global_batch_size", "val_data.global_batch_size"),
    "epochs": ("epochs",),
    "steps_per_epoch": ("steps_per_epoch",),
    "backbone_lr": ("backbone_lr",),
    "head_lr": ("head_lr",),
    "momentum": ("momentum",),
    "weight_decay": ("weight_decay",),
    "restart_epochs": ("restart_epochs",),
    "restart_t_mul": ("restart_t_mul",),
    "restart_m_mul": ("restart_m_mul",),
    "restart_alpha": ("restart_alpha",),
    "mixed_precision": ("mixed_precision",),
    "seed": ("seed", "train_data.seed", "val_data.seed"),
    "output_dir": ("output_dir",),
    "allow_incomplete": ("allow_incomplete",),
    "val_split": ("val_data.split",),  # "" = no validation
}


def train_config(base: Optional[TrainConfig] = None, **options) -> TrainConfig:
    """A TrainConfig: `base` (e.g. `TrainConfig.from_json(path)`) or the defaults, with the
    flat `options` of `TRAIN_OPTIONS` set.

    Without `base`, `train_dir` and `num_classes` are required; validation reads the "val"
    split of `val_dir` (default `train_dir`), and the model and both inputs share
    `num_frames`, `image_size` (ModelConfig's defaults) and `seed`. `val_split=""` turns
    validation off; a split name turns it on (as the training input, in evaluation mode).

    Raises:
        ValueError: an unknown option, a missing required one, or values TrainConfig refuses.
    """
    unknown = sorted(set(options) - set(TRAIN_OPTIONS))
    if unknown:
        raise ValueError(f"unknown training options {unknown}; known: {sorted(TRAIN_OPTIONS)}")
    values = base.to_dict() if base is not None else _default_values(options)
    val_split = options.pop("val_split", None)
    if val_split == "":
        values["val_data"] = None
    elif val_split is not None and values["val_data"] is None:
        values["val_data"] = {**values["train_data"], "training": False, "sampling": None, "drop_remainder": None}
    if val_split:
        options["val_split"] = val_split
    for option, value in options.items():
        for field_path in TRAIN_OPTIONS[option]:
            section, _, field = field_path.rpartition(".")
            target = values[section] if section else values
            if target is not None:
                target[field] = value
    return TrainConfig.from_dict(values)


def _default_values(options: dict) -> dict:
    """The values of the default TrainConfig for `options` (no base config)."""
    for required in ("train_dir", "num_classes"):
        if options.get(required) is None:
            raise ValueError(f"training option {required!r} is required without a config file")
    image_size = options.get("image_size", ModelConfig.image_size)
    train_data = InputConfig(options["train_dir"], training=True, image_size=image_size, seed=TrainConfig.seed)
    val_data = InputConfig(options["train_dir"], split="val", image_size=image_size, seed=TrainConfig.seed)
    model = ModelConfig(num_classes=options["num_classes"], image_size=image_size)
    return TrainConfig(train_data, val_data, model).to_dict()
