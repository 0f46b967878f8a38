"""The paper's ablation tables, by k-fold cross-validation over subjects and several seeds.

Rows (`ABLATION_ROWS`):

    Table 1, spatial aggregation (all with temporal softmax pooling, TP):
        no_sa               mean of the regions
        shift_2c            SHIFT attention clusters, 2 clusters
        sa_{1,2,4}h_p{0,0.1,1}   structured self-attention, N heads, penalty coefficient
    Table 2, temporal aggregation, each without SA (mean of the regions) and with SA (2
    heads, penalty 1): lstm, lstm_sa, avg, avg_sa, max, max_sa, tp, tp_sa

Rows with the same model ("no_sa" and "tp"; "sa_2h_p1" and "tp_sa") share their runs.

Two routes to the same runs and tables:

    from the cache (`ck48_dir`, the default of scripts/ablation.py): CK+48 face crops as they
        are (the shipped model's framing), a frozen backbone (that of a trained model, by
        default the shipped one) run ONCE on `cached_views` fixed views of every frame
        (`feature_cache`, under <output_dir>/feature_cache); every run trains only the head on
        those maps (a random view per clip and step) and is evaluated on view 0 (the frames
        themselves). A run takes seconds: the 10 folds x 3 seeds of both tables fit in minutes.
    from images (`tfrecords`): any preprocessed corpus, end to end (`task.train`: the backbone
        trains at `backbone_lr`, the frames are sampled and augmented by tf.data every step).

Both train with the paper's recipe (`TrainConfig`: SGD, momentum 0.9, weight decay 5e-5,
SGDR; `epochs` must end an SGDR cycle) and evaluate every frame of each held-out clip.

Layout under `AblationConfig.output_dir`:

    folds/assignment.json                the split (written last): its source, folds, split seed
    folds/fold{i}/...                    images route: the TFRecords of fold i (below)
    feature_cache/                       cache route: the backbone maps (`feature_cache`)
    runs/<variant>/fold{i}-seed{s}/metrics.json   config + evaluation of one run, written last
    results.md                           the tables: mean ± std over the runs of each row, and
                                         paired differences of the paper's claims
    results.json                         the same numbers
    results.png                          every row's accuracy and UAR, bars with ± std

Images route: the corpus is read once and its records copied, unchanged, into one shard per
fold (`folds/fold{i}/val-00000.tfrecord`); each fold's train split is hard links to the other
folds' shards, with a manifest.json of the fold. A run trains without validation (the
held-out fold must not choose the epoch: the weights of the best training accuracy are kept)
and is evaluated with `evaluation.evaluate`. Cache route: the weights of the last epoch (the
end of the last SGDR cycle) are evaluated.

A run whose metrics.json exists is skipped, so an interrupted ablation resumes (an
interrupted images-route run resumes from its backup; a cache-route run, seconds long, reruns).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import shutil
import time
from typing import Callable, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_emotion.data import schema
from keras_emotion.data.datasets import ClipSource, split_by_subject
from keras_emotion.data.emotions import EMOTIONS
from keras_emotion.data.manifest import Manifest, ShardSummary, manifest_path, read_manifest, write_manifest
from keras_emotion.data.metadata import class_names_by_label, read_labels
from keras_emotion.files import atomic_write, read_json, temp_path, write_json_atomically
from keras_emotion.models.builder import BACKBONE_NAME, build_model, feature_map_backbone, head_variables
from keras_emotion.pretrained import PRETRAINED_MODEL_DIR
from keras_emotion.training import feature_cache
from keras_emotion.training.config import TrainConfig, sgdr_epochs_problem, train_config
from keras_emotion.training.evaluation import evaluate
from keras_emotion.training.face_clips import SHIPPED_ALIGNMENT, FaceClips, ck48_clips, clip_dataset, evaluate_clips
from keras_emotion.training.metrics import save_report_json
from keras_emotion.training.optimizers import two_rate_sgd
from keras_emotion.models.saving import load_trained_model
from keras_emotion.training.run_folder import RunFolder
from keras_emotion.training.task import classification_loss, probabilities_model, train

ASSIGNMENT_FILE = "assignment.json"
METRICS_FILE = "metrics.json"
TABLE_FILE = "results.md"
SUMMARY_FILE = "results.json"
PLOT_FILE = "results.png"
FEATURE_CACHE_DIR = "feature_cache"
PAPER_COLUMN = "paper AFEW val acc %"
PAPER_CLAIMS = (("tp_sa", "tp"), ("tp", "avg"), ("tp", "lstm"), ("tp", "max"))
"""Pairs (a, b) of rows for which the paper reports a > b; `results.md` gives their paired differences."""


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


def _table_2() -> list:
    """Each temporal pooling without SA (mean of the regions) and with SA (2 heads, penalty 1)."""
    paper = {"lstm": 46.2, "avg": 46.0, "tp": 46.4, "tp_sa": 49.0}
    rows = []
    for temporal, title in (("lstm", "LSTM"), ("avg", "AVG"), ("max", "MAX"), ("tp", "TP")):
        rows.append(AblationRow(temporal, 2, title, "none", temporal, paper_accuracy=paper.get(temporal)))
        name = f"{temporal}_sa"
        description = f"{title} + SA (2 heads, penalty 1)"
        rows.append(AblationRow(name, 2, description, "sa", temporal, 2, 1.0, paper_accuracy=paper.get(name)))
    return rows


ABLATION_ROWS = tuple(_table_1() + _table_2())
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
        tfrecords: images route: a preprocessed corpus folder (shards of any splits,
            manifest.json), all its clips split into folds. None for the cache route.
        output_dir: folder of the folds, cache, runs and tables.
        ck48_dir: cache route: the CK+48 folder (`<class>/S###_###_########.png`; the
            contempt class, which EMOTIONS lacks, is left out). None for the images route.
        backbone_model: cache route: a trained-model directory whose frozen backbone (name,
            image size, weights) makes the maps; None: the shipped model's.
        cached_views: cache route: the first V views of `feature_cache.VIEWS` (the frame, its
            mirror, a 0.9 zoom and its mirror) stand in for augmentation.
        rows: names of the rows to run (None: all of ABLATION_ROWS).
        folds: k of the k-fold split by subject.
        max_folds: run only the first folds (None: all k) for a quick table.
        seeds: runs per fold and row, with seeds 0 .. seeds-1 (initialisation and sampling).
        split_seed: seed of the assignment of subjects to folds.
        epochs: training epochs of a run (one epoch: one pass over the fold's training clips);
            it must end at the end of an SGDR cycle of TrainConfig's default restarts (at
            most 10, or 30, 70, ...).
        backbone, backbone_weights, image_size: images route: the backbone.
        num_frames: frames per clip in training (CK+48 clips have 3).
        attention_units: U, hidden size of SA's scoring MLP.
        batch_size: clips per training step.
        backbone_lr, head_lr: initial learning rates of backbone and head.
        keep_models: images route: keep each run's trained model and checkpoint (several MB per run).
    """

    tfrecords: Optional[str]
    output_dir: str
    ck48_dir: Optional[str] = None
    backbone_model: Optional[str] = None
    cached_views: int = len(feature_cache.VIEWS)
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
        if (self.tfrecords is None) == (self.ck48_dir is None):
            raise ValueError(
                "AblationConfig: give tfrecords (train end to end from images) or ck48_dir "
                "(train heads on cached backbone maps), not both"
            )
        if not 1 <= self.cached_views <= len(feature_cache.VIEWS):
            raise ValueError(f"AblationConfig.cached_views={self.cached_views}; expected 1..{len(feature_cache.VIEWS)}")
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
    def from_cache(self) -> bool:
        return self.ck48_dir is not None

    @property
    def fold_indices(self) -> range:
        return range(self.max_folds or self.folds)


@dataclasses.dataclass
class CachedFolds:
    """The cache route's data: every clip's backbone maps and fold.

    Attributes:
        clips: FaceClips whose frames are float16 maps (n_frames, V, h, w, D), labels in EMOTIONS.
        fold_of_clip: int (N,) the subject-wise fold of each clip.
        backbone: the name of the backbone that made the maps.
        image_size: the side of the frames it was given.
        cache_dir: the folder of the maps.
    """

    clips: FaceClips
    fold_of_clip: np.ndarray
    backbone: str
    image_size: int
    cache_dir: str


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
    if not manifest.complete:
        raise ValueError(f"{manifest_path(tfrecords)}: preprocessing did not complete; run it again")
    return clips, list(manifest.class_names)


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
    wanted = {"tfrecords": os.path.abspath(tfrecords), "folds": folds, "split_seed": split_seed}
    assignment = read_assignment(output_dir, wanted)
    if assignment is not None:
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

    corpus = read_manifest(tfrecords) or Manifest(class_names=class_names)
    class_counts = [collections.Counter() for _ in range(folds)]
    for clip in split_clips:
        class_counts[fold_of_clip[clip.clip_id]][clip.label_name] += 1
    for fold in range(folds):
        others = [other for other in range(folds) if other != fold]
        for index, other in enumerate(others):
            _link(val_shards[other], os.path.join(fold_dir(output_dir, fold), schema.shard_name("train", index)))
        split_counts = {"train": sum((class_counts[other] for other in others), collections.Counter()), "val": class_counts[fold]}
        fold_manifest = dataclasses.replace(
            corpus,
            class_names=class_names,
            counts={split: {name: counts[name] for name in class_names} for split, counts in split_counts.items()},
            frames={},
            num_clips=len(split_clips),
            # the fold's own shards, which `integrity.verify_shards` counts (not the corpus's)
            shards=[ShardSummary(os.path.basename(val_shards[fold]), "val", sizes[fold])]
            + [ShardSummary(schema.shard_name("train", index), "train", sizes[other]) for index, other in enumerate(others)],
        )
        write_manifest(fold_dir(output_dir, fold), fold_manifest)
    assignment = {**wanted, "class_names": class_names, "clips": fold_of_clip, "subjects": subject_folds}
    write_json_atomically(os.path.join(folds_root, ASSIGNMENT_FILE), assignment)
    return assignment


def read_assignment(output_dir: str, wanted: dict) -> Optional[dict]:
    """The split recorded in `<output_dir>/folds/assignment.json`, or None if there is none.

    Raises:
        ValueError: the recorded split was made from other data, folds or split seed than
            `wanted` (its runs must not be mixed with this one's), naming the file and both.
    """
    assignment_path = os.path.join(output_dir, "folds", ASSIGNMENT_FILE)
    if not os.path.isfile(assignment_path):
        return None
    assignment = read_json(assignment_path)
    found = {key: assignment.get(key) for key in wanted}
    if found != wanted:
        raise ValueError(
            f"{assignment_path}: the folds there were made with {found}, not {wanted}; use another output folder"
        )
    return assignment


def cached_folds(config: AblationConfig, verbose: bool = False) -> CachedFolds:
    """The cache route's clips, their folds and their maps, computed once (see the module doc).

    The maps live in `<output_dir>/feature_cache` (`feature_cache.load_or_compute`: a cache of
    another backbone, data, views or alignment is refused); the split is recorded in
    `folds/assignment.json` (another split there is refused, `read_assignment`).
    """
    trained = load_trained_model(config.backbone_model or PRETRAINED_MODEL_DIR)
    backbone = trained.model.get_layer(BACKBONE_NAME)
    backbone_name, image_size = trained.info.model_config.backbone, trained.info.preprocessing.image_size
    clips, fold_of_clip, _ = ck48_clips(config.ck48_dir, image_size, config.folds, config.split_seed)
    wanted = {"ck48_dir": os.path.abspath(config.ck48_dir), "folds": config.folds, "split_seed": config.split_seed}
    if read_assignment(config.output_dir, wanted) is None:
        sizes = np.bincount(fold_of_clip, minlength=config.folds)
        assignment = {**wanted, "class_names": list(EMOTIONS), "clips_per_fold": sizes.tolist()}
        write_json_atomically(os.path.join(config.output_dir, "folds", ASSIGNMENT_FILE), assignment)
    views = feature_cache.VIEWS[: config.cached_views]
    alignment = dataclasses.asdict(SHIPPED_ALIGNMENT)
    key = feature_cache.cache_key(backbone_name, backbone, clips.frames, views, alignment=alignment)
    cache_dir = os.path.join(config.output_dir, FEATURE_CACHE_DIR)
    maps = feature_cache.load_or_compute(cache_dir, key, backbone, clips.frames, views, verbose=verbose)
    return CachedFolds(dataclasses.replace(clips, frames=maps), fold_of_clip, backbone_name, image_size, cache_dir)


def run_dir(output_dir: str, row: AblationRow, fold: int, seed: int) -> str:
    return os.path.join(output_dir, "runs", row.variant, f"fold{fold}-seed{seed}")


def make_train_config(
    config: AblationConfig, row: AblationRow, fold: int, seed: int, num_classes: int, cached: Optional[CachedFolds] = None
) -> TrainConfig:
    """The TrainConfig of one run: the row's model, no validation; images route: the fold's
    train split and `config`'s backbone; cache route (`cached`): the maps' backbone, the
    cache as data."""
    if cached is None:
        data = {"train_dir": fold_dir(config.output_dir, fold), "backbone": config.backbone}
        data.update(backbone_weights=config.backbone_weights, image_size=config.image_size)
    else:
        data = {"train_dir": cached.cache_dir, "backbone": cached.backbone, "image_size": cached.image_size}
    return train_config(
        **data,
        val_split="",
        num_classes=num_classes,
        num_frames=config.num_frames,
        batch_size=config.batch_size,
        attention_units=config.attention_units,
        **row.model_options(),
        epochs=config.epochs,
        backbone_lr=config.backbone_lr,
        head_lr=config.head_lr,
        seed=seed,
        output_dir=run_dir(config.output_dir, row, fold, seed),
    )


def train_head_on_maps(config: TrainConfig, clips: FaceClips) -> tuple:
    """Trains the head of `config.model` on clips of backbone maps with `config`'s optimizer
    (`two_rate_sgd`; SGDR over `config.epochs` passes of `len(clips) // batch size` steps).

    Args:
        config: the run (`make_train_config` with `cached`).
        clips: FaceClips of maps (n_frames, V, h, w, D); each step draws one view per clip.

    Returns:
        (model, history): the `build_model` model on a `feature_map_backbone`, with the
        weights of the last epoch, and the `fit` history.
    """
    batch_size = config.train_data.global_batch_size
    steps_per_epoch = max(1, len(clips) // batch_size)
    keras.utils.set_random_seed(config.seed)
    model = build_model(config.model, backbone=feature_map_backbone(clips.frames.shape[2:]))
    training_model = probabilities_model(model)
    training_model.compile(
        optimizer=two_rate_sgd(config, [], head_variables(model), steps_per_epoch),
        loss=classification_loss(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        steps_per_execution=steps_per_epoch,  # one call per epoch: the steps are tiny
    )
    history = training_model.fit(
        clip_dataset(clips, batch_size, seed=config.seed),
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
        shuffle=False,  # clip_dataset shuffles
        verbose=0,
    )
    return model, history


def run_one(
    config: AblationConfig, row: AblationRow, fold: int, seed: int, num_classes: int, cached: Optional[CachedFolds] = None
) -> dict:
    """Trains and evaluates one run, unless its metrics.json exists; returns its metrics.

    metrics.json: "variant", "fold", "seed", "train_config", "train_seconds",
    "evaluate_seconds", "epochs_run" and "evaluation" (a `metrics.classification_report` of the
    fold's held-out clips, every frame; images route: `evaluation.evaluate`'s, with each clip).
    """
    directory = run_dir(config.output_dir, row, fold, seed)
    metrics_path = os.path.join(directory, METRICS_FILE)
    if os.path.isfile(metrics_path):
        return read_json(metrics_path)
    train_config = make_train_config(config, row, fold, seed, num_classes, cached)
    started = time.perf_counter()
    if cached is None:
        _, history = train(train_config, verbose=0)
        trained_seconds = time.perf_counter() - started
        trained = load_trained_model(os.path.join(directory, "trained"))
        report = evaluate(trained, fold_dir(config.output_dir, fold), "val", config.batch_size)
    else:
        held_out = cached.fold_of_clip == fold
        model, history = train_head_on_maps(train_config, cached.clips.subset(np.flatnonzero(~held_out)))
        trained_seconds = time.perf_counter() - started
        report = evaluate_clips(model, cached.clips.subset(np.flatnonzero(held_out)))
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
    if cached is None and not config.keep_models:
        shutil.rmtree(os.path.join(directory, "trained"))
        shutil.rmtree(os.path.dirname(RunFolder(directory).best_weights))
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


def paired_differences(config: AblationConfig, metrics_by_variant: dict) -> list:
    """For each claim (a, b) of PAPER_CLAIMS whose rows both ran: the accuracy of a minus that
    of b over the runs both have (same fold and seed, so the same held-out clips).

    Returns:
        [{"better", "worse", "pairs", "mean", "std", "standard_error", "wins", "verdict"}]:
        differences in percentage points; verdict "holds" when the mean exceeds 2 standard
        errors, "reversed" when it is below -2, else "within the spread".
    """
    rows = {row.name: row for row in select_rows(config.rows)}
    comparisons = []
    for better, worse in PAPER_CLAIMS:
        if better not in rows or worse not in rows:
            continue
        runs = [
            {(run["fold"], run["seed"]): 100.0 * run["evaluation"]["accuracy"] for run in metrics_by_variant.get(rows[name].variant, [])}
            for name in (better, worse)
        ]
        pairs = sorted(set(runs[0]) & set(runs[1]))
        if len(pairs) < 2:
            continue
        differences = np.array([runs[0][pair] - runs[1][pair] for pair in pairs])
        mean, std = float(differences.mean()), float(differences.std(ddof=1))
        standard_error = std / np.sqrt(len(differences))
        verdict = "holds" if mean > 2 * standard_error else "reversed" if mean < -2 * standard_error else "within the spread"
        comparisons.append(
            {
                "better": better,
                "worse": worse,
                "pairs": len(pairs),
                "mean": mean,
                "std": std,
                "standard_error": float(standard_error),
                "wins": int(np.sum(differences > 0)),
                "losses": int(np.sum(differences < 0)),
                "verdict": verdict,
            }
        )
    return comparisons


def markdown_tables(config: AblationConfig, summaries: list, comparisons: Sequence[dict] = ()) -> str:
    """The markdown of the tables: one per paper table, with a header giving the setup, then
    the paired differences of the paper's claims (`paired_differences`)."""
    if config.from_cache:
        setup = (
            f"Data: CK+48 `{config.ck48_dir}` (face crops as they are; contempt left out), "
            f"{config.folds}-fold cross-validation by subject ({len(config.fold_indices)} fold(s) run), "
            f"{config.seeds} seed(s). Frozen backbone: that of `{config.backbone_model or 'the shipped model'}`, "
            f"its maps of {config.cached_views} fixed view(s) of each frame computed once (`feature_cache`); "
            f"each run trains the head for {config.epochs} epochs (SGD, momentum 0.9, weight decay 5e-5, "
            f"SGDR, lr {config.head_lr:g}, batch {config.batch_size}) and keeps its last epoch. "
            "CK+48 clips are 3 frames long (neutral to peak), so temporal pooling has little to choose "
            "from here: Table 2 mostly measures the frame model, and the temporal claims need long "
            "real sequences, which this project does not have."
        )
    else:
        setup = (
            f"Data: `{config.tfrecords}`, {config.folds}-fold cross-validation by subject "
            f"({len(config.fold_indices)} fold(s) run), {config.seeds} seed(s); backbone {config.backbone}"
            f"{f' ({config.backbone_weights})' if config.backbone_weights else ''}, {config.image_size} px, "
            f"{config.num_frames} frames, {config.epochs} epochs, trained end to end."
        )
    lines = [
        "# Ablation",
        "",
        setup + " Each cell: mean ± std over the runs (folds x seeds) of the held-out fold's accuracy "
        "/ unweighted average recall, in %, evaluated on all frames of each clip. The paper's figures "
        "are on AFEW (VGG-Face backbone), not on this data.",
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
    if comparisons:
        lines += [
            "",
            "## The paper's claims, run by run",
            "",
            "Accuracy of the first row minus the second's on the same held-out fold and seed, in points: "
            "mean ± std over the pairs, standard error, runs won/lost; the claim holds beyond the spread "
            "when the mean exceeds 2 standard errors.",
            "",
            "| claim | pairs | difference | standard error | won/lost | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for comparison in comparisons:
            lines.append(
                f"| {comparison['better']} > {comparison['worse']} | {comparison['pairs']} | "
                f"{comparison['mean']:+.1f} ± {comparison['std']:.1f} | {comparison['standard_error']:.1f} | "
                f"{comparison['wins']}/{comparison['losses']} | {comparison['verdict']} |"
            )
    return "\n".join(lines) + "\n"


def plot_results(summaries: list, path: str, title: str = "") -> str:
    """A PNG of every row's accuracy and UAR, mean with ± std error bars, rows top to bottom in
    table order. Written atomically; returns `path`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    done = [summary for summary in summaries if summary["runs"]]
    figure = Figure(figsize=(9, 0.35 * len(done) + 1.5), dpi=100)
    axes = figure.add_subplot()
    positions = np.arange(len(done))
    for offset, key, label in ((-0.2, "accuracy", "accuracy"), (0.2, "uar", "UAR")):
        means = [summary[f"{key}_mean"] for summary in done]
        stds = [summary[f"{key}_std"] for summary in done]
        axes.barh(positions + offset, means, height=0.4, xerr=stds, capsize=2, label=label)
    axes.set_yticks(positions, [f"{summary['name']} (T{summary['table']})" for summary in done])
    axes.invert_yaxis()
    axes.set_xlabel("% on held-out subjects (mean ± std over folds x seeds)")
    low = min(summary["uar_mean"] - summary["uar_std"] for summary in done) if done else 0
    axes.set_xlim(max(0.0, 10 * np.floor(low / 10) - 10), 100)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.set_title(title)
    figure.tight_layout()
    with atomic_write(path, keep_suffix=".png") as temp:
        FigureCanvasAgg(figure).print_png(temp)
    return path


def run_ablation(config: AblationConfig, log: Callable[[str], None] = print) -> str:
    """Writes the folds (images route) or the cached maps (cache route), runs every missing run
    (fold by fold, so that a partial ablation covers every row) and writes results.md,
    results.json and results.png.

    Returns:
        The path of results.md.
    """
    cached = None
    if config.from_cache:
        cached = cached_folds(config, verbose=True)
        num_classes = len(EMOTIONS)
    else:
        num_classes = len(write_folds(config.tfrecords, config.output_dir, config.folds, config.split_seed)["class_names"])
    variants = {row.variant: row for row in select_rows(config.rows)}
    metrics_by_variant = collections.defaultdict(list)
    total = len(config.fold_indices) * config.seeds * len(variants)
    done = 0
    started = time.perf_counter()
    for fold in config.fold_indices:
        for seed in range(config.seeds):
            for variant, row in variants.items():
                metrics = run_one(config, row, fold, seed, num_classes, cached)
                metrics_by_variant[variant].append(metrics)
                done += 1
                log(
                    f"[{done}/{total}, {time.perf_counter() - started:.0f} s] {variant} fold {fold} seed {seed}: "
                    f"accuracy {100 * metrics['evaluation']['accuracy']:.1f}% "
                    f"(train {metrics['train_seconds']:.1f} s, evaluate {metrics['evaluate_seconds']:.1f} s)"
                )
    summaries = summarize_rows(config, metrics_by_variant)
    comparisons = paired_differences(config, metrics_by_variant)
    write_json_atomically(
        os.path.join(config.output_dir, SUMMARY_FILE),
        {"config": dataclasses.asdict(config), "rows": summaries, "paired_differences": comparisons},
    )
    plot_results(summaries, os.path.join(config.output_dir, PLOT_FILE), "Ablation: held-out subjects")
    table_path = os.path.join(config.output_dir, TABLE_FILE)
    with atomic_write(table_path) as temp, open(temp, "w", encoding="utf-8") as file:
        file.write(markdown_tables(config, summaries, comparisons))
    return table_path


def _mean_std(mean: Optional[float], std: Optional[float]) -> str:
    return "-" if mean is None else f"{mean:.1f} ± {std:.1f}"


def _link(source: str, link_name: str) -> None:
    """A hard link `link_name` to `source`; a copy where the file system has no hard links."""
    try:
        os.link(source, link_name)
    except OSError:
        shutil.copyfile(source, link_name)
