"""Pictures of what a trained model looks at: the paper's Fig. 2 for one clip, and the
confusion matrix of an evaluation.

Fig. 2 (`plot_explanation`), one column per frame the model is given (F columns):

    row 1           the face crop the model sees (aligned face, resized and centre cropped)
    rows 2 .. N+1   attention head n: its weights over the L = h x w cells of the backbone's
                    last convolutional map, reshaped row-major to the h x w grid (the order in
                    which `build_model` flattens the map), upsampled bilinearly to the crop and
                    overlaid on it; colours are scaled per head over the whole clip
    row N+2         per-frame class probabilities: softmax over classes of the frame's class
                    scores O[f] (the model's "frame_scores" layer). With temporal softmax
                    pooling this is exactly p(c, f) renormalised per frame, p(c, f) / p_f, and
                    sum_f p_f p(c | f) = p(c). The class the model predicts for the clip is red
    row N+3         temporal importance p_f rescaled to 0-100% over the clip
                    ((p_f - min) / (max - min); the raw share p_f is printed above each bar)

Models without spatial attention ("none") have no head rows; models with LSTM pooling have
no per-frame class scores and cannot be drawn. Clips come from a TFRecord clip id or from a
video (aligned with the project's FaceAligner). Pictures are drawn on matplotlib's Agg canvas
and written atomically.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Optional

import cv2
import keras
import matplotlib
import numpy as np
import tensorflow as tf
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_emotion.data import schema
from keras_emotion.data.faces import FaceAligner
from keras_emotion.data.manifest import manifest_path, read_manifest
from keras_emotion.data.video import iter_frames
from keras_emotion.files import atomic_write, read_json
from keras_emotion.inference.clip_model import ClipModel, KerasClipModel, default_alignment, uniform_frame_indices
from keras_emotion.training.metrics import plot_confusion_matrix

DPI = 100
COLUMN_INCHES = 1.4  # width and height of one face panel
LABEL_INCHES = 1.3  # left margin for row labels
TITLE_INCHES = 1.0  # title + three heading lines
CLASS_ROW_INCHES = 0.22  # per class, in the per-frame probability row
CLASS_ROW_PADDING_INCHES = 0.4  # room for that row's axis labels
IMPORTANCE_INCHES = 1.3
ATTENTION_ALPHA = 0.5


@dataclasses.dataclass
class ClipExplanation:
    """What the model computes for one clip of F frames (E classes, N heads, L cells).

    Attributes:
        frame_indices: int (F,) index of each frame in its clip (or video).
        crops: uint8 (F, S, S, 3) the frames the model sees.
        probabilities: float32 (E,) p(c) of the clip.
        frame_importance: float32 (F,) p_f.
        frame_probabilities: float32 (F, E) softmax of each frame's class scores.
        spatial_attention: float32 (F, N, L), or None without spatial attention.
        class_names: E names.
    """

    frame_indices: np.ndarray
    crops: np.ndarray
    probabilities: np.ndarray
    frame_importance: np.ndarray
    frame_probabilities: np.ndarray
    spatial_attention: Optional[np.ndarray]
    class_names: list

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def num_heads(self) -> int:
        return 0 if self.spatial_attention is None else self.spatial_attention.shape[1]


def explain_clip(model: KerasClipModel, faces: np.ndarray, first_frame: int = 0) -> ClipExplanation:
    """Runs the trained model of `model` on a clip and keeps what Fig. 2 shows.

    Args:
        model: a KerasClipModel (a trained-model directory: the SavedModel has no frame scores).
        faces: uint8 (T, A, A, 3) aligned faces; F of them are chosen like evaluation does
            ("uniform" sampling).
        first_frame: index of faces[0] in its video, added to `frame_indices`.

    Raises:
        ValueError: the model has no per-frame class scores (LSTM pooling).
    """
    if not isinstance(model, KerasClipModel):
        raise ValueError(
            f"{model.description['path']}: Fig. 2 needs a trained-model folder (model.keras + "
            "model_info.json); a SavedModel does not output per-frame class scores"
        )
    network = model.trained.model
    if "frame_scores" not in [layer.name for layer in network.layers]:
        raise ValueError(
            f"{model.description['path'] or network.name}: the model has no per-frame class scores "
            "(LSTM temporal pooling); Fig. 2 needs them"
        )
    explaining = keras.Model(network.input, {**network.output, "frame_scores": network.get_layer("frame_scores").output})
    indices = uniform_frame_indices(len(faces), model.num_frames)
    inputs = model.model_inputs(np.asarray(faces)[indices][np.newaxis])
    outputs = {name: np.asarray(value[0], np.float32) for name, value in explaining.predict_on_batch(inputs).items()}
    scores = outputs["frame_scores"] - outputs["frame_scores"].max(axis=1, keepdims=True)
    frame_probabilities = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    return ClipExplanation(
        frame_indices=first_frame + indices,
        crops=np.clip(np.round(inputs["frames"][0]), 0, 255).astype(np.uint8),
        probabilities=outputs["probabilities"],
        frame_importance=outputs["frame_importance"],
        frame_probabilities=frame_probabilities,
        spatial_attention=outputs.get("spatial_attention"),
        class_names=list(model.class_names),
    )


def attention_map(attention: np.ndarray, size: int) -> np.ndarray:
    """One head's attention over L = h * h cells as a float32 (size, size) map: the weights
    reshaped row-major to the h x h grid, upsampled bilinearly (cell centres at the centres
    of the size / h blocks)."""
    grid = int(round(np.sqrt(attention.shape[-1])))
    if grid * grid != attention.shape[-1]:
        raise ValueError(f"attention over {attention.shape[-1]} cells is not a square grid")
    cells = np.asarray(attention, np.float32).reshape(grid, grid)
    return cv2.resize(cells, (size, size), interpolation=cv2.INTER_LINEAR)


def rescale_importance(frame_importance: np.ndarray) -> np.ndarray:
    """p_f rescaled to 0-100% over the clip, (p - min) / (max - min); all 100% when equal."""
    importance = np.asarray(frame_importance, np.float64)
    spread = importance.max() - importance.min()
    if spread <= 0:
        return np.full_like(importance, 100.0)
    return 100.0 * (importance - importance.min()) / spread


def figure_inches(num_frames: int, num_heads: int, num_classes: int) -> tuple[float, float]:
    """(width, height) in inches of `plot_explanation`'s figure; the PNG has DPI pixels per inch."""
    width = LABEL_INCHES + COLUMN_INCHES * num_frames
    class_row = CLASS_ROW_INCHES * num_classes + CLASS_ROW_PADDING_INCHES
    height = TITLE_INCHES + COLUMN_INCHES * (1 + num_heads) + class_row + IMPORTANCE_INCHES
    return width, height


def plot_explanation(explanation: ClipExplanation, path: str, title: str = ""):
    """Draws Fig. 2 (see the module docstring) as a PNG at `path`, atomically.

    Returns:
        The matplotlib Figure. Axes carry labels "face f", "head n frame f",
        "probabilities frame f" and "importance frame f" (f, n from 1).
    """
    num_frames, num_heads, num_classes = len(explanation.crops), explanation.num_heads, len(explanation.class_names)
    width, height = figure_inches(num_frames, num_heads, num_classes)
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(
        3 + num_heads,
        num_frames,
        height_ratios=[COLUMN_INCHES] * (1 + num_heads)
        + [CLASS_ROW_INCHES * num_classes + CLASS_ROW_PADDING_INCHES, IMPORTANCE_INCHES],
    )
    importance = rescale_importance(explanation.frame_importance)
    predicted = explanation.predicted
    colours = ["tab:red" if index == predicted else "tab:gray" for index in range(num_classes)]

    for column in range(num_frames):
        crop = explanation.crops[column]
        face_axes = figure.add_subplot(grid[0, column], label=f"face {column + 1}")
        face_axes.imshow(crop)
        face_axes.set_title(f"frame {explanation.frame_indices[column]}", fontsize=9)
        _hide_ticks(face_axes)
        if column == 0:
            face_axes.set_ylabel("model input", fontsize=9)
        for head in range(num_heads):
            head_axes = figure.add_subplot(grid[1 + head, column], label=f"head {head + 1} frame {column + 1}")
            head_axes.imshow(_attention_overlay(crop, explanation.spatial_attention[:, head], column))
            _hide_ticks(head_axes)
            if column == 0:
                head_axes.set_ylabel(f"head {head + 1}", fontsize=9)

        bars = figure.add_subplot(grid[1 + num_heads, column], label=f"probabilities frame {column + 1}")
        bars.barh(np.arange(num_classes), explanation.frame_probabilities[column], color=colours)
        bars.set_xlim(0, 1)
        bars.set_ylim(num_classes - 0.5, -0.5)
        bars.set_yticks(np.arange(num_classes), explanation.class_names if column == 0 else [], fontsize=8)
        bars.tick_params(axis="x", labelsize=7)
        if column == 0:
            bars.get_yticklabels()[predicted].set_fontweight("bold")
            bars.get_yticklabels()[predicted].set_color("tab:red")

        importance_axes = figure.add_subplot(grid[2 + num_heads, column], label=f"importance frame {column + 1}")
        importance_axes.bar([0], [importance[column]], color="tab:blue", width=0.6)
        importance_axes.set_ylim(0, 118)
        importance_axes.set_xlim(-0.6, 0.6)
        importance_axes.set_xticks([])
        importance_axes.text(
            0, importance[column] + 3, f"{100 * explanation.frame_importance[column]:.1f}%", ha="center", fontsize=7
        )
        if column == 0:
            importance_axes.set_ylabel("importance\n(0-100%)", fontsize=8)
        else:
            importance_axes.set_yticks([])

    heading = (
        f"predicted {explanation.class_names[predicted]} ({explanation.probabilities[predicted]:.0%})\n"
        "per-frame bars: softmax of the frame's class scores;\n"
        "importance rescaled to 0-100% (raw share above each bar)"
    )
    figure.suptitle(f"{title}\n{heading}" if title else heading, fontsize=10)
    with atomic_write(path) as temp:
        figure.savefig(temp, format="png", dpi=DPI)
    return figure


def _attention_overlay(crop: np.ndarray, head_attention: np.ndarray, column: int) -> np.ndarray:
    """Frame `column`'s (S, S, 3) uint8 crop tinted by one head's attention, (F, L) over the
    clip: the map of `attention_map` coloured with "jet" from the clip's lowest to its highest
    weight. Returns float (S, S, 3) RGB in 0..1."""
    weights = attention_map(head_attention[column], crop.shape[0])
    low, high = float(head_attention.min()), float(head_attention.max())
    normalised = np.clip((weights - low) / max(high - low, 1e-12), 0.0, 1.0)
    colours = matplotlib.colormaps["jet"](normalised)[..., :3]
    return np.clip((1 - ATTENTION_ALPHA) * crop / 255.0 + ATTENTION_ALPHA * colours, 0.0, 1.0)


def _hide_ticks(axes) -> None:
    axes.set_xticks([])
    axes.set_yticks([])


def read_tfrecord_clip(
    data: str, clip_id: str, split: str = "*", model: Optional[ClipModel] = None
) -> tuple[np.ndarray, str]:
    """The aligned faces of one clip of TFRecord shards.

    Args:
        data: a TFRecord directory (shards `<split>-*.tfrecord`) or a glob of shards.
        clip_id: the clip's id.
        split: the split whose shards are searched in a directory ("*": all).
        model: the model the faces are for: the shards' manifest alignment is checked
            against its training faces' (`ClipModel.check_alignment`).

    Returns:
        (faces, label_name): uint8 (T, A, A, 3) decoded frames and the clip's class name.

    Raises:
        ValueError: no shard matches, or no shard holds `clip_id` (naming the pattern).
        models.info.AlignmentMismatchError (a ValueError): the faces are framed otherwise than
            `model`'s training faces (naming both).
    """
    pattern = schema.shard_pattern(data, split) if tf.io.gfile.isdir(data) else data
    paths = sorted(tf.io.gfile.glob(pattern))
    if not paths:
        raise ValueError(f"no TFRecord shards match {pattern!r}")
    if model is not None:
        manifest = read_manifest(os.path.dirname(paths[0]))
        if manifest is not None:
            model.check_alignment(manifest.alignment, manifest_path(os.path.dirname(paths[0])))
    for serialized in tf.data.TFRecordDataset(paths):
        clip = schema.parse_clip(serialized)
        if clip["clip_id"].numpy().decode("utf-8") == clip_id:
            faces = np.stack([tf.io.decode_jpeg(jpeg, channels=3).numpy() for jpeg in clip["frames"]])
            return faces, clip["label_name"].numpy().decode("utf-8")
    raise ValueError(f"clip id {clip_id!r} is in none of the {len(paths)} shard(s) matching {pattern!r}")


def align_video_clip(
    path: str, model: KerasClipModel, first_frame: int = 0, num_frames: Optional[int] = None, max_side: int = 1280
) -> np.ndarray:
    """The aligned faces of frames first_frame .. first_frame + num_frames - 1 of a video (all
    the rest when num_frames is None), aligned like the model's training data (one face tracked,
    `FaceAligner.align_clip`): uint8 (T, A, A, 3).

    Raises:
        video.InputError: missing or unreadable video; faces.NoFaceError: no face found.
        ValueError: the range holds no frame.
    """
    stop = None if num_frames is None else first_frame + num_frames
    frames = list(itertools.islice(iter_frames(path, max_side), first_frame, stop))
    if not frames:
        raise ValueError(f"{path}: no frame in the range starting at frame {first_frame}")
    return FaceAligner(default_alignment(model)).align_clip(frames, source=os.fspath(path)).faces


def plot_evaluation(evaluation_json: str, path: str, title: str = "") -> str:
    """The confusion-matrix PNG (`metrics.plot_confusion_matrix`) of an evaluation JSON
    (`training.evaluation`, or any `metrics.classification_report`). Returns `path`.

    Raises:
        ValueError: the file is not JSON or not such a report (naming it).
    """
    report = read_json(evaluation_json)
    missing = [key for key in ("class_names", "confusion_matrix", "accuracy", "unweighted_average_recall", "num_examples") if key not in report]
    if missing:
        raise ValueError(f"{evaluation_json}: not an evaluation report (missing {', '.join(missing)})")
    return plot_confusion_matrix(report, path, title)
