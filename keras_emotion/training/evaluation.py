"""Evaluation of a trained model on TFRecord clips, on ALL frames of every clip.

    trained model dir (`task.save_trained_model`)      TFRecord shards (dir + split, or a glob)
        -> the model rebuilt for any number of frames  -> `pipeline.build_dataset`, sampling "all":
                                                          batches padded to their longest clip,
                                                          `frame_mask` 0 on the padding
        -> p(c) per clip (B, E)                         -> clip ids (`build_clip_id_dataset`)
        -> `metrics.classification_report`: accuracy, per-class recall, UAR, confusion matrix

`evaluate_model_dir` writes, under its output folder,

    evaluation.json         the report, the data evaluated and every clip's prediction
    confusion_matrix.png    `metrics.plot_confusion_matrix` of the report

Evaluation preprocesses like training: the trained model's image_size and crop_fraction, the
centre crop, no augmentation.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from keras_emotion.data.config import InputConfig
from keras_emotion.data.integrity import verify_shards
from keras_emotion.data.metadata import manifest_path, read_manifest
from keras_emotion.data.pipeline import build_clip_id_dataset, build_dataset, list_shards
from keras_emotion.models import with_any_number_of_frames
from keras_emotion.training.metrics import classification_report, plot_confusion_matrix, save_report_json
from keras_emotion.training.task import TrainedModel, load_trained_model

EVALUATION_FILE = "evaluation.json"
CONFUSION_MATRIX_FILE = "confusion_matrix.png"


@dataclasses.dataclass
class ClipPredictions:
    """A model's predictions for N clips, in the order the shards hold them.

    Attributes:
        clip_ids: N clip ids.
        labels: int64 (N,) true class indices.
        probabilities: float32 (N, E) the model's p(c) of each clip.
    """

    clip_ids: list
    labels: np.ndarray
    probabilities: np.ndarray

    @property
    def predictions(self) -> np.ndarray:
        """int64 (N,) the predicted class of each clip (argmax of p(c))."""
        return np.argmax(self.probabilities, axis=1)


def evaluation_input(trained: TrainedModel, data: str, split: str, batch_size: int) -> InputConfig:
    """The InputConfig of an evaluation: preprocessing as in training, every frame of each clip,
    no clip dropped. `data` is a TFRecord directory (with `split`) or a glob of shards."""
    return trained.input_config(
        data, split=split, sampling="all", global_batch_size=batch_size, drop_remainder=False, seed=0
    )


def predict_clips(model: keras.Model, input_config: InputConfig) -> ClipPredictions:
    """Runs `model` over every clip of `input_config`.

    Args:
        model: inputs {"frames": (B, F, S, S, 3), "frame_mask": (B, F)} (F as the batches
            need: use `models.with_any_number_of_frames` for "all" sampling), output "probabilities" (B, E).
        input_config: an evaluation InputConfig with `deterministic` True.

    Returns:
        The ClipPredictions of all clips.
    """
    clip_ids, labels, probabilities = [], [], []
    batches = tf.data.Dataset.zip(build_dataset(input_config), build_clip_id_dataset(input_config))
    for (features, batch_labels), batch_ids in batches:
        outputs = model.predict_on_batch(features)
        probabilities.append(np.asarray(outputs["probabilities"], np.float32))
        labels.append(batch_labels.numpy().astype(np.int64))
        clip_ids.extend(clip_id.decode("utf-8") for clip_id in batch_ids.numpy())
    if not clip_ids:
        raise ValueError(f"no clips in {input_config.resolved_pattern!r}")
    return ClipPredictions(clip_ids, np.concatenate(labels), np.concatenate(probabilities))


def evaluate(
    trained: TrainedModel, data: str, split: str = "val", batch_size: int = 8, allow_incomplete: bool = False
) -> dict:
    """Evaluates `trained` on all frames of every clip of `data`.

    Args:
        trained: a model from `task.load_trained_model` (or built the same way).
        data: a TFRecord directory, read with `split`, or a glob of shards.
        split: the split to read from a directory.
        batch_size: clips per batch (each batch is padded to its longest clip).
        allow_incomplete: evaluate shards whose manifest says `"complete": false`.

    Returns:
        `metrics.classification_report` of the clips, plus "data" (the shard glob), "sampling"
        ("all") and "clips": per clip {"clip_id", "label", "predicted", "probabilities" (E,)},
        labels and predictions as class names.

    Raises:
        ValueError: no shards or clips, a manifest beside the shards whose class names differ
            from the model's (naming the manifest), or labels outside the model's classes.
        integrity.DataIntegrityError (a ValueError): a corrupt shard or an incomplete
            manifest (see `integrity.verify_shards`).
    """
    input_config = evaluation_input(trained, data, split, batch_size)
    verify_shards(list_shards(input_config), allow_incomplete)
    _check_class_names(trained, input_config)
    clips = predict_clips(with_any_number_of_frames(trained.model), input_config)
    class_names = trained.info.class_names
    report = classification_report(clips.labels, clips.predictions, class_names)
    report["data"] = input_config.resolved_pattern
    report["sampling"] = input_config.sampling
    report["clips"] = [
        {
            "clip_id": clip_id,
            "label": class_names[label],
            "predicted": class_names[predicted],
            "probabilities": [round(float(value), 6) for value in probabilities],
        }
        for clip_id, label, predicted, probabilities in zip(
            clips.clip_ids, clips.labels, clips.predictions, clips.probabilities
        )
    ]
    return report


def evaluate_model_dir(
    model_dir: str,
    data: str,
    split: str,
    output_dir: str,
    batch_size: int = 8,
    title: Optional[str] = None,
    allow_incomplete: bool = False,
) -> dict:
    """Loads the trained model of `model_dir`, evaluates it (see `evaluate`) and writes
    `<output_dir>/evaluation.json` (the report plus "model_dir") and
    `<output_dir>/confusion_matrix.png`, each atomically.

    Returns:
        The report, with "json" and "png" giving the paths written.
    """
    report = evaluate(load_trained_model(model_dir), data, split, batch_size, allow_incomplete)
    report["model_dir"] = model_dir
    json_path = save_report_json(report, os.path.join(output_dir, EVALUATION_FILE))
    title = title if title is not None else f"{split} clips, all frames"
    png_path = plot_confusion_matrix(report, os.path.join(output_dir, CONFUSION_MATRIX_FILE), title)
    return {**report, "json": json_path, "png": png_path}


def summarize(report: dict) -> str:
    """Accuracy, UAR and per-class recalls of an evaluation report, on two lines."""
    recalls = ", ".join(
        f"{name} {'-' if recall is None else f'{100 * recall:.1f}%'}"
        for name, recall in report["per_class_recall"].items()
    )
    return (
        f"{report['num_examples']} clips of {report['data']}: accuracy {100 * report['accuracy']:.1f}%, "
        f"UAR {100 * report['unweighted_average_recall']:.1f}%\n  recall per class: {recalls}"
    )


def _check_class_names(trained: TrainedModel, input_config: InputConfig) -> None:
    """Raises ValueError when the manifest beside the shards names other classes than the model."""
    manifest = read_manifest(input_config)
    if manifest is not None and list(manifest["class_names"]) != list(trained.info.class_names):
        raise ValueError(
            f"{manifest_path(input_config)}: the data has classes {manifest['class_names']} but the model was trained on "
            f"{trained.info.class_names}"
        )
