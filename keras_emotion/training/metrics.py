"""Evaluation metrics of a classifier: accuracy, per-class recall, UAR, confusion matrix.

Pure NumPy; the confusion-matrix picture uses matplotlib's Agg canvas directly, so
no display and no global pyplot state are involved.

A report is a plain JSON-ready dict:

    class_names                list of C names, in label order
    num_examples               N
    accuracy                   correct / N
    unweighted_average_recall  mean of the per-class recalls of the classes present in
                               the labels (classes with no example do not count)
    per_class_recall           name -> recall, or None for a class absent from the labels
    support                    name -> number of examples whose true label is that class
    predicted                  name -> number of predictions of that class
    confusion_matrix           C x C list of counts, rows = true class, columns = predicted
"""

from __future__ import annotations

import os

import numpy as np

from keras_emotion.files import atomic_write, write_json_atomically


def _class_indices(values, name: str, num_classes: int) -> np.ndarray:
    """`values` as a 1-D int64 array of class indices in [0, num_classes); ValueError naming `name` otherwise."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D sequence of class indices, got shape {array.shape}"
            + (" (take the argmax of the scores first)" if array.ndim == 2 else "")
        )
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {array.dtype}")
    array = array.astype(np.int64)
    outside = np.flatnonzero((array < 0) | (array >= num_classes))
    if outside.size:
        raise ValueError(
            f"{name}[{outside[0]}] = {array[outside[0]]} is out of range: class indices must be in "
            f"[0, {num_classes}) for {num_classes} class names ({outside.size} such value(s))"
        )
    return array


def classification_report(labels, predictions, class_names) -> dict:
    """Accuracy, per-class recall, UAR and confusion matrix of `predictions` against `labels`.

    Args:
        labels: (N,) true class indices.
        predictions: (N,) predicted class indices.
        class_names: C names; index i names class i.

    Returns:
        The report dict described in the module docstring.

    Raises:
        ValueError: empty or duplicate class names, N == 0, different lengths,
            non-integer or out-of-range indices (the message names the problem).
    """
    class_names = [str(name) for name in class_names]
    if not class_names:
        raise ValueError("class_names is empty")
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"class_names has duplicates: {class_names}")
    num_classes = len(class_names)
    labels = _class_indices(labels, "labels", num_classes)
    predictions = _class_indices(predictions, "predictions", num_classes)
    if labels.shape != predictions.shape:
        raise ValueError(
            f"labels and predictions differ in length: {labels.size} labels, {predictions.size} predictions"
        )
    if labels.size == 0:
        raise ValueError("no examples: labels and predictions are empty")

    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    support = confusion.sum(axis=1)
    present = support > 0
    recalls = np.diagonal(confusion) / np.maximum(support, 1)
    return {
        "class_names": class_names,
        "num_examples": int(labels.size),
        "accuracy": float(np.trace(confusion) / labels.size),
        "unweighted_average_recall": float(recalls[present].mean()),
        "per_class_recall": {
            name: float(recall) if is_present else None
            for name, recall, is_present in zip(class_names, recalls, present)
        },
        "support": dict(zip(class_names, support.tolist())),
        "predicted": dict(zip(class_names, confusion.sum(axis=0).tolist())),
        "confusion_matrix": confusion.tolist(),
    }


def save_report_json(report: dict, path: str | os.PathLike) -> str:
    """Writes `report` as indented JSON to `path` (`files.write_json_atomically`). Returns `path`."""
    return write_json_atomically(path, report)


def plot_confusion_matrix(report: dict, path: str | os.PathLike, title: str = "") -> str:
    """Draws the report's confusion matrix as a PNG at `path` (atomically). Returns `path`.

    Cells are coloured by the row-normalised share (the fraction of the true
    class predicted as each class; rows without examples stay blank) and show
    the count and that share; the axes carry the class names (rows with the
    number of examples); the title gives accuracy, UAR and N after `title`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    class_names = report["class_names"]
    counts = np.asarray(report["confusion_matrix"], np.int64)
    support = counts.sum(axis=1, keepdims=True)
    shares = counts / np.maximum(support, 1)
    size = 2.0 + 0.9 * len(class_names)
    figure = Figure(figsize=(size + 1.5, size), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of the true class")
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, class_names, rotation=45, ha="right")
    axes.set_yticks(ticks, [f"{name}\n(n={count})" for name, count in zip(class_names, support[:, 0])])
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    for row in range(len(class_names)):
        for column in range(len(class_names)):
            share = shares[row, column]
            text = f"{counts[row, column]}\n{share:.0%}" if support[row, 0] else "0"
            colour = "white" if share > 0.5 else "black"
            axes.text(column, row, text, ha="center", va="center", color=colour, fontsize=9)
    heading = (
        f"accuracy {report['accuracy']:.1%}   UAR {report['unweighted_average_recall']:.1%}"
        f"   N={report['num_examples']}"
    )
    axes.set_title(f"{title}\n{heading}" if title else heading)
    path = os.fspath(path)
    with atomic_write(path) as temp:
        figure.savefig(temp, format="png")
    return path
