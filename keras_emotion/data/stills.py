"""Still-image corpora cut as videos are: every face re-aligned the way `predict` aligns a frame.

A corpus of face crops in class folders (`<input>/<class>/<image>`, FER2013 layout) is framed by
whoever cut it: FER2013 and CK+48 close to the shipped model's alignment, ExpW looser, SFEW
tighter. A model trained on those crops sees other crops in a video, where `predict` finds each
face with dlib's HOG detector and aligns it to the model's template. `align_image_folder` writes
the corpus as that path would cut it,

    <input>/<class>/<name>   ->   <output_dir>/<class>/<name>   the largest face, aligned (S x S)
                                  <output_dir>/align_report.json  written last: the folder is complete

keeping each file's name and format, so that parts chosen by file name (`pretrain.is_held_out`)
stay the same images, and so that training (`train_face_clips --extra_image_dirs`) and evaluation
(`evaluate --input`) take the folder like any other corpus. Images where no face is found are
listed in the report. Each image is written atomically and a rerun keeps those already written
(resume after a kill).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional

import cv2

from keras_emotion.data.faces import AlignmentConfig, FaceAligner, video_alignment
from keras_emotion.data.image_folders import list_class_images
from keras_emotion.data.video import InputError, read_image
from keras_emotion.files import atomic_write, read_json, write_json_atomically

ALIGN_REPORT = "align_report.json"
JPEG_EXTENSIONS = (".jpg", ".jpeg")


def align_image_folder(
    input_dir: str,
    output_dir: str,
    alignment: AlignmentConfig,
    progress: Optional[Callable[[int, int, int], None]] = None,
) -> dict:
    """Writes the largest face of every image of `input_dir`'s class folders, aligned as
    `predict` aligns a video frame (`faces.video_alignment(alignment)`), under the same
    relative path in `output_dir` (JPEGs at `alignment.jpeg_quality`).

    Args:
        input_dir: `<input_dir>/<class>/<image>`.
        output_dir: the folder to write; images already there (an interrupted run) are kept.
        alignment: the model's alignment (`ModelInfo.alignment`); its output_size is the side
            of the faces written.
        progress: called as `progress(images done, images, images without a face)`.

    Returns:
        The report written to `<output_dir>/align_report.json`: {"input", "alignment" (the
        AlignmentConfig's fields), "images", "aligned", "no_face": relative paths of the
        images without a face found}.

    Raises:
        InputError: `input_dir` is missing or has no images, or an image does not decode.
        ValueError: `output_dir` holds the report of another input or alignment.
    """
    alignment = video_alignment(alignment)
    images = list_class_images(input_dir)
    report_path = os.path.join(output_dir, ALIGN_REPORT)
    wanted = {"input": os.path.abspath(input_dir), "alignment": dataclasses.asdict(alignment)}
    if os.path.exists(report_path):
        written = read_json(report_path)
        if {key: written.get(key) for key in wanted} != wanted:
            raise ValueError(f"{report_path}: written for another input or alignment; use another output folder")
    aligner = FaceAligner(alignment)
    no_face = []
    for done, image in enumerate(images, start=1):
        target = os.path.join(output_dir, image)
        if not os.path.exists(target):
            aligned = aligner.align_image(read_image(os.path.join(input_dir, image)))
            if aligned is None:
                no_face.append(image)
            else:
                _write_face(aligned[0], target, alignment.jpeg_quality)
        if progress is not None:
            progress(done, len(images), len(no_face))
    report = {**wanted, "images": len(images), "aligned": len(images) - len(no_face), "no_face": no_face}
    write_json_atomically(report_path, report)
    return report


def _write_face(face, path: str, jpeg_quality: int) -> None:
    """Writes uint8 (S, S, 3) RGB `face` to `path` in the format of its extension, atomically."""
    extension = os.path.splitext(path)[1]
    parameters = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if extension.lower() in JPEG_EXTENSIONS else []
    with atomic_write(path, keep_suffix=extension) as temp:
        if not cv2.imwrite(temp, cv2.cvtColor(face, cv2.COLOR_RGB2BGR), parameters):
            raise InputError(path, "cannot write the aligned face in this format")
