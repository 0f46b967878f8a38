"""The paper's ablation tables, by k-fold cross-validation over subjects and several seeds.

Rows (`ABLATION_ROWS`):

    Table 1, spatial aggregation (all with temporal softmax pooling, TP):
        no_sa               mean of the regions
        shift_2c            SHIFT attention clusters, 2 clusters
        sa_{1,2,4}h_p{0,0.1,1}   structured self-attention, N heads, penalty coefficient
    Table 2, temporal aggregation (no SA unless named):
        lstm, avg, tp, tp_sa (TP + SA with 2 heads, penalty 1)

Rows with the same model ("no_sa" and "tp"; "sa_2h_p1" and "tp_sa") share their runs.

Layout under `AblationConfig.output_dir`:

    folds/fold{i}/val-00000.tfrecord     the clips of fold i (whole subjects, `split_by_subject`)
    folds/fold{i}/train-{j:05d}.tfrecord hard links to the other folds' val shards
    folds/fold{i}/manifest.json          the corpus manifest plus the fold ("fold", "folds")
    folds/assignment.json                written last: folds, split seed, fold of every clip
    runs/<variant>/fold{i}-seed{s}/      one training run (train_config.json, history.csv, ...)
    runs/<variant>/fold{i}-seed{s}/metrics.json   config + evaluation of the run, written last
    ablation.md                          the tables: mean ± std over the runs of each row
    ablation.json                        the same numbers

The corpus is read once and its records copied, unchanged, into one shard per fold; each fold's
train split is the other folds' shards, so nothing is decoded or written again per fold.
A run trains on the train split of its fold without validation (the held-out fold must not
choose the epoch: the weights of the best training accuracy are kept) and is evaluated on ALL
frames of every held-out clip (`evaluation.evaluate`). A run whose metrics.json exists is
skipped, so an interrupted ablation resumes (an interrupted run resumes from its backup).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import shutil
import time
from typing import Callable, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_emotion.data import schema
from keras_emotion.data.datasets import ClipSource, split_by_subject
from keras_emotion.data.metadata import class_names_by_label, manifest_path, read_labels, read_manifest
from keras_emotion.files import atomic_write, temp_path, write_json_atomically
from keras_emotion.training.config import TrainConfig, sgdr_epochs_problem, train_config
from keras_emotion.training.evaluation import evaluate
from keras_emotion.training.metrics import save_report_json
from keras_emotion.training.task import BEST_WEIGHTS_FILE, load_trained_model, train

ASSIGNMENT_FILE = "assignment.json"
METRICS_FILE = "metrics.json"
TABLE_FILE = "ablation.md"
SUMMARY_FILE = "ablation.json"
PAPER_COLUMN = "paper AFEW val acc %"


@dataclasses.dataclass(frozen=True)
class AblationRow:
    """One row of a table.

    Attributes:
        name: the row's name (`--rows`).
        table: 1 (spatial aggregation) or 2 (temporal aggregation).
        description: what the model is, for the table.
        spatial, temporal, num_heads, penalty: the ModelConfig fields the row sets.
        paper_accuracy: the paper's accuracy on AFEW validation (VGG-Face backbone), or None.
    """

    name: str
    table: int
    description: str
    spatial: str
    temporal: str = "tp"
    num_heads: int = 1
    penalty: float = 0.0
    paper_accuracy: Optional[float] = None

    @property
    def variant(self) -> str:
        """The name of the row's model, the folder of its runs; rows of equal models share it."""
        if self.spatial == "none":
            return f"none-{self.temporal}"
        if self.spatial == "shift":
            return f"shift{self.num_heads}-{self.temporal}"
        return f"sa{self.num_heads}-p{self.penalty:g}-{self.temporal}"

    def model_options(self) -> dict:
        """The row's spatial and temporal aggregation as `training.config.train_config` options."""
        return {"spatial": self.spatial, "temporal": self.temporal, "heads": self.num_heads, "penalty": self.penalty}


def _table_1() -> list:
    rows = [
        AblationRow("no_sa", 1, "no SA (mean of regions) + TP", "none"),
        AblationRow("shift_2c", 1, "SHIFT, 2 clusters + TP", "shift", num_heads=2),
    ]
    for heads in (1, 2, 4):
        for penalty in (0.0, 0.1, 1.0):
            description = f"SA, {heads} head{'s' if heads > 1 else ''}, penalty {penalty:g} + TP"
            rows.append(AblationRow(f"sa_{heads}h_p{penalty:g}", 1, description, "sa", "tp", heads, penalty))
    return rows


ABLATION_ROWS = tuple(
    _table_1()
    + [
        AblationRow("lstm", 2, "LSTM", "none", "lstm", paper_accuracy=46.2),
        AblationRow("avg", 2, "AVG", "none", "avg", paper_accuracy=46.0),
        AblationRow("tp", 2, "TP", "none", "tp", paper_accuracy=46.4),
        AblationRow("tp_sa", 2, "TP + SA (2 heads, penalty 1)", "sa", "tp", 2, 1.0, paper_accuracy=49.0),
    ]
)
ROW_NAMES = tuple(row.name for row in ABLATION_ROWS)


def select_rows(names: Optional[Sequence[str]] = None) -> list:
    """The rows named `names` in table order (all rows for None); ValueError for unknown names."""
    if names is None:
        return list(ABLATION_ROWS)
    unknown = sorted(set(names) - set(ROW_NAMES))
    if unknown:
        raise ValueError(f"unknown ablation rows {unknown}; expected some of {list(ROW_NAMES)}")
    return [row for row in ABLATION_ROWS if row.name in names]


@dataclasses.dataclass
class AblationConfig:
    """What `run_ablation` runs.

    Attributes:
        tfrecords: a preprocessed corpus folder (shards of any splits, manifest.json): all its
            clips are split into folds.
        output_dir: folder of the folds, runs and tables.
        rows: names of the rows to run (None: all of ABLATION_ROWS).
        folds: k of the k-fold split by subject.
        max_folds: run only the first folds (None: all k) for a quick table.
        seeds: runs per fold and row, with seeds 0 .. seeds-1 (initialisation and sampling).
        split_seed: seed of the assignment of subjects to folds.
        epochs: training epochs of a run; it must end at the end of an SGDR cycle of
            TrainConfig's default restarts (at most 10, or 30, 70, ...).
        backbone, backbone_weights, image_size, num_frames, attention_units: the model.
        batch_size: clips per training step.
        backbone_lr, head_lr: initial learning rates of backbone and head.
        keep_models: keep each run's trained model and checkpoint (several MB per run).
    """

    tfrecords: str
    output_dir: str
    rows: Optional[Sequence[str]] = None
    folds: int = 10
    max_folds: Optional[int] = None
    seeds: int = 3
    split_seed: int = 0
    epochs: int = 30
    backbone: str = "compact"
    backbone_weights: Optional[str] = None
    image_size: int = 64
    num_frames: int = 3
    attention_units: int = 64
    batch_size: int = 8
    backbone_lr: float = TrainConfig.backbone_lr
    head_lr: float = TrainConfig.head_lr
    keep_models: bool = False

    def __post_init__(self):
        select_rows(self.rows)
        if self.folds < 2:
            raise ValueError(f"AblationConfig.folds={self.folds}; need at least 2")
        if self.max_folds is not None and not 1 <= self.max_folds <= self.folds:
            raise ValueError(f"AblationConfig.max_folds={self.max_folds}; must be in 1..folds={self.folds}")
        if self.seeds < 1:
            raise ValueError(f"AblationConfig.seeds={self.seeds}; need at least 1")
        # Each run uses TrainConfig's SGDR restarts and must end at the end of a cycle; refuse
        # before any fold is written rather than at the first run.
        problem = sgdr_epochs_problem(
            self.epochs, TrainConfig.restart_epochs, TrainConfig.restart_t_mul, fix_restart_epochs=False
        )
        if problem:
            raise ValueError(f"AblationConfig.{problem}")

    @property
    def fold_indices(self) -> range:
        return range(self.max_folds or self.folds)


def read_clips(tfrecords: str) -> tuple:
    """The clips of every shard in `tfrecords`, and the corpus' class names.

    Returns:
        (clips, class_names): clips as `ClipSource`s (path = the record's source, subject and
        label name from the record); class names from manifest.json, else by label index.

    Raises:
        ValueError: no shards, a manifest of an unfinished preprocessing, or without a
            manifest a label index no clip names.
    """
    paths = sorted(tf.io.gfile.glob(schema.shard_pattern(tfrecords)))
    if not paths:
        raise ValueError(f"no TFRecord shards match {schema.shard_pattern(tfrecords)!r}")
    clips, labels = [], []
    for label, label_name, record in read_labels(paths):
        labels.append((label, label_name))
        clips.append(ClipSource(record["clip_id"], record["source"], label_name, "all", record["subject"]))
    manifest = read_manifest(tfrecords)
    if manifest is None:
        return clips, class_names_by_label(labels, tfrecords)
    if not manifest.get("complete", True):
        raise ValueError(f"{manifest_path(tfrecords)}: preprocessing did not complete; run it again")
    return clips, list(manifest["class_names"])


def fold_dir(output_dir: str, fold: int) -> str:
    """The TFRecord folder of fold `fold`: split "val" = the fold, split "train" = the others."""
    return os.path.join(output_dir, "folds", f"fold{fold}")


def write_folds(tfrecords: str, output_dir: str, folds: int, split_seed: int = 0) -> dict:
    """Splits the clips of `tfrecords` by subject into `folds` folds and writes the fold folders
    (see the module docstring), unless `folds/assignment.json` already records this split.

    Returns:
        The assignment: {"tfrecords", "folds", "split_seed", "class_names", "clips": {clip id:
        fold index}, "subjects": {subject: fold index}}.

    Raises:
        ValueError: the folds folder holds another split (naming its assignment.json), or a
            fold would get no clip (fewer subjects than folds).
    """
    folds_root = os.path.join(output_dir, "folds")
    assignment_path = os.path.join(folds_root, ASSIGNMENT_FILE)
    wanted = {"tfrecords": os.path.abspath(tfrecords), "folds": folds, "split_seed": split_seed}
    if os.path.isfile(assignment_path):
        with open(assignment_path) as file:
            assignment = json.load(file)
        found = {key: assignment[key] for key in wanted}
        if found != wanted:
            raise ValueError(
                f"{assignment_path}: the folds there were made with {found}, not {wanted}; "
                "use another output folder"
            )
        return assignment
    shutil.rmtree(folds_root, ignore_errors=True)  # what an interrupted split left

    clips, class_names = read_clips(tfrecords)
    split_clips = split_by_subject(clips, folds=folds, seed=split_seed)
    fold_of_clip = {clip.clip_id: int(clip.split[len("fold") :]) for clip in split_clips}
    subject_folds = {clip.subject or clip.clip_id: fold_of_clip[clip.clip_id] for clip in split_clips}
    sizes = collections.Counter(fold_of_clip.values())
    empty = [fold for fold in range(folds) if not sizes[fold]]
    if empty:
        raise ValueError(
            f"{tfrecords}: {len(subject_folds)} subjects cannot fill {folds} folds (folds {empty} get no clip)"
        )

    val_shards = [os.path.join(fold_dir(output_dir, fold), schema.shard_name("val", 0)) for fold in range(folds)]
    for path in val_shards:
        os.makedirs(os.path.dirname(path))
    writers = [tf.io.TFRecordWriter(temp_path(path)) for path in val_shards]
    clip_ids = tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(schema.shard_pattern(tfrecords))))
    for serialized in clip_ids:
        clip_id = schema.parse_clip(serialized)["clip_id"].numpy().decode()
        writers[fold_of_clip[clip_id]].write(serialized.numpy())
    for writer, path in zip(writers, val_shards):
        writer.close()
        os.replace(temp_path(path), path)

    manifest = read_manifest(tfrecords) or {}
    for fold in range(folds):
        others = [other for other in range(folds) if other != fold]
        for index, other in enumerate(others):
            _link(val_shards[other], os.path.join(fold_dir(output_dir, fold), schema.shard_name("train", index)))
        fold_manifest = {
            **manifest,
            "class_names": class_names,
            "fold": fold,
            "folds": folds,
            "counts": {"train": sum(sizes[other] for other in others), "val": sizes[fold]},
            # the fold's own shards, which `integrity.verify_shards` counts (not the corpus's)
            "shards": [{"file": os.path.basename(val_shards[fold]), "split": "val", "clips": sizes[fold]}]
            + [
                {"file": f"train-{index:05d}{schema.SHARD_SUFFIX}", "split": "train", "clips": sizes[other]}
                for index, other in enumerate(others)
            ],
        }
        write_json_atomically(manifest_path(fold_dir(output_dir, fold)), fold_manifest)
    assignment = {**wanted, "class_names": class_names, "clips": fold_of_clip, "subjects": subject_folds}
    write_json_atomically(assignment_path, assignment)
    return assignment


def run_dir(output_dir: str, row: AblationRow, fold: int, seed: int) -> str:
    return os.path.join(output_dir, "runs", row.variant, f"fold{fold}-seed{seed}")


def make_train_config(config: AblationConfig, row: AblationRow, fold: int, seed: int, num_classes: int) -> TrainConfig:
    """The TrainConfig of one run: the fold's train split, no validation, the row's model."""
    return train_config(
        train_dir=fold_dir(config.output_dir, fold),
        val_split="",
        num_classes=num_classes,
        num_frames=config.num_frames,
        image_size=config.image_size,
        batch_size=config.batch_size,
        backbone=config.backbone,
        backbone_weights=config.backbone_weights,
        attention_units=config.attention_units,
        **row.model_options(),
        epochs=config.epochs,
        backbone_lr=config.backbone_lr,
        head_lr=config.head_lr,
        seed=seed,
        output_dir=run_dir(config.output_dir, row, fold, seed),
    )


def run_one(config: AblationConfig, row: AblationRow, fold: int, seed: int, num_classes: int) -> dict:
    """Trains and evaluates one run, unless its metrics.json exists; returns its metrics.

    metrics.json: "variant", "fold", "seed", "train_config", "train_seconds",
    "evaluate_seconds", "epochs_run" and "evaluation" (`evaluation.evaluate`'s report on the
    fold's held-out clips, every frame).
    """
    directory = run_dir(config.output_dir, row, fold, seed)
    metrics_path = os.path.join(directory, METRICS_FILE)
    if os.path.isfile(metrics_path):
        with open(metrics_path) as file:
            return json.load(file)
    train_config = make_train_config(config, row, fold, seed, num_classes)
    started = time.perf_counter()
    _, history = train(train_config, verbose=0)
    trained_seconds = time.perf_counter() - started
    trained_dir = os.path.join(directory, "trained")
    report = evaluate(load_trained_model(trained_dir), fold_dir(config.output_dir, fold), "val", config.batch_size)
    metrics = {
        "variant": row.variant,
        "fold": fold,
        "seed": seed,
        "train_config": train_config.to_dict(),
        "train_seconds": round(trained_seconds, 2),
        "evaluate_seconds": round(time.perf_counter() - started - trained_seconds, 2),
        "epochs_run": len(history.epoch),
        "evaluation": report,
    }
    save_report_json(metrics, metrics_path)
    if not config.keep_models:
        shutil.rmtree(trained_dir)
        shutil.rmtree(os.path.join(directory, os.path.dirname(BEST_WEIGHTS_FILE)))
    keras.backend.clear_session()
    return metrics


def summarize_rows(config: AblationConfig, metrics_by_variant: dict) -> list:
    """Per row: name, table, description, runs done/planned, mean and std (over runs) of
    accuracy and UAR in %, paper accuracy."""
    planned = len(config.fold_indices) * config.seeds
    summaries = []
    for row in select_rows(config.rows):
        runs = metrics_by_variant.get(row.variant, [])
        summary = {
            "name": row.name,
            "table": row.table,
            "description": row.description,
            "variant": row.variant,
            "runs": len(runs),
            "planned_runs": planned,
            "paper_accuracy": row.paper_accuracy,
        }
        for key, metric in (("accuracy", "accuracy"), ("uar", "unweighted_average_recall")):
            values = 100.0 * np.array([run["evaluation"][metric] for run in runs])
            summary[f"{key}_mean"] = float(values.mean()) if runs else None
            summary[f"{key}_std"] = float(values.std(ddof=1)) if len(runs) > 1 else (0.0 if runs else None)
        summaries.append(summary)
    return summaries


def markdown_tables(config: AblationConfig, summaries: list) -> str:
    """The markdown of the tables: one per paper table, with a header giving the setup."""
    lines = [
        "# Ablation",
        "",
        f"Data: `{config.tfrecords}`, {config.folds}-fold cross-validation by subject "
        f"({len(config.fold_indices)} fold(s) run), {config.seeds} seed(s); backbone {config.backbone}"
        f"{f' ({config.backbone_weights})' if config.backbone_weights else ''}, {config.image_size} px, "
        f"{config.num_frames} frames, {config.epochs} epochs. Each cell: mean ± std over the runs "
        "(folds x seeds) of the held-out fold's accuracy / unweighted average recall, in %, "
        f"evaluated on all frames of each clip. The paper's figures are on AFEW "
        "(VGG-Face backbone), not on this data.",
    ]
    titles = {1: "Table 1: spatial aggregation (temporal softmax pooling)", 2: "Table 2: temporal aggregation"}
    for table, title in titles.items():
        rows = [summary for summary in summaries if summary["table"] == table]
        if not rows:
            continue
        lines += ["", f"## {title}", "", f"| row | model | runs | accuracy % | UAR % | {PAPER_COLUMN} |"]
        lines.append("|---|---|---|---|---|---|")
        for summary in rows:
            cells = [
                summary["name"],
                summary["description"],
                f"{summary['runs']}/{summary['planned_runs']}",
                _mean_std(summary["accuracy_mean"], summary["accuracy_std"]),
                _mean_std(summary["uar_mean"], summary["uar_std"]),
                "-" if summary["paper_accuracy"] is None else f"{summary['paper_accuracy']:.1f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_ablation(config: AblationConfig, log: Callable[[str], None] = print) -> str:
    """Writes the folds, runs every missing run (fold by fold, so that a partial ablation
    covers every row) and writes ablation.md and ablation.json.

    Returns:
        The path of ablation.md.
    """
    assignment = write_folds(config.tfrecords, config.output_dir, config.folds, config.split_seed)
    num_classes = len(assignment["class_names"])
    variants = {row.variant: row for row in select_rows(config.rows)}
    metrics_by_variant = collections.defaultdict(list)
    total = len(config.fold_indices) * config.seeds * len(variants)
    done = 0
    for fold in config.fold_indices:
        for seed in range(config.seeds):
            for variant, row in variants.items():
                metrics = run_one(config, row, fold, seed, num_classes)
                metrics_by_variant[variant].append(metrics)
                done += 1
                log(
                    f"[{done}/{total}] {variant} fold {fold} seed {seed}: accuracy "
                    f"{100 * metrics['evaluation']['accuracy']:.1f}% "
                    f"(train {metrics['train_seconds']:.0f} s, evaluate {metrics['evaluate_seconds']:.0f} s)"
                )
    summaries = summarize_rows(config, metrics_by_variant)
    write_json_atomically(
        os.path.join(config.output_dir, SUMMARY_FILE), {"config": dataclasses.asdict(config), "rows": summaries}
    )
    table_path = os.path.join(config.output_dir, TABLE_FILE)
    with atomic_write(table_path) as temp, open(temp, "w", encoding="utf-8") as file:
        file.write(markdown_tables(config, summaries))
    return table_path


def _mean_std(mean: Optional[float], std: Optional[float]) -> str:
    return "-" if mean is None else f"{mean:.1f} ± {std:.1f}"


def _link(source: str, link_name: str) -> None:
    """A hard link `link_name` to `source`; a copy where the file system has no hard links."""
    try:
        os.link(source, link_name)
    except OSError:
        shutil.copyfile(source, link_name)
