"""Still-image corpora in class folders, `<folder>/<class>/<image>` (FER2013's layout, also
ExpW, SFEW, CK+48 and what `align-images` writes): their classes and image files, matched to a
model's classes.

Nothing is read but folder listings.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from keras_emotion.data.emotions import match_class_names
from keras_emotion.data.video import IMAGE_EXTENSIONS, InputError, is_image_file


def class_image_names(class_dir: str) -> list:
    """The names of the image files of one class folder, sorted (hidden files left out)."""
    return sorted(name for name in os.listdir(class_dir) if not name.startswith(".") and is_image_file(name))


def corpus_names(folders: Sequence[str], with_parents: bool = False) -> list:
    """A name for each corpus folder in reports: the folder's own name, or `<parent>/<name>`
    where two folders share one (e.g. `data/expw` and `aligned/expw`, a corpus as it is and
    its faces as `align-images` cut them) or with `with_parents`."""
    paths = [os.path.normpath(folder) for folder in folders]
    names = [os.path.basename(path) for path in paths]
    return [
        f"{os.path.basename(os.path.dirname(path))}/{name}" if with_parents or names.count(name) > 1 else name
        for path, name in zip(paths, names)
    ]


def list_class_folders(split_dir: str) -> list:
    """The class names of an image-classification split: its sub-folders, sorted.

    Raises:
        InputError: `split_dir` is missing, not a folder, or has no class sub-folders.
    """
    if not os.path.isdir(split_dir):
        raise InputError(split_dir, "image folder is missing")
    class_names = sorted(
        name for name in os.listdir(split_dir)
        if not name.startswith(".") and os.path.isdir(os.path.join(split_dir, name))
    )
    if not class_names:
        raise InputError(split_dir, "image folder is empty: expected one sub-folder of images per class")
    return class_names


def list_image_files(
    split_dir: str, class_names: Sequence[str], max_per_class: Optional[int] = None
) -> tuple:
    """The image files of each class folder `split_dir/<class>`, sorted by name.

    Args:
        split_dir: the split folder.
        class_names: E classes; class i is `split_dir/class_names[i]`.
        max_per_class: if set, the first this-many files of each class.

    Returns:
        (paths, labels): n file paths and an int32 (n,) array of their class indices.

    Raises:
        InputError: naming a class folder that is missing or holds no image files.
    """
    paths, labels = [], []
    for label, name in enumerate(class_names):
        class_dir = os.path.join(split_dir, name)
        if not os.path.isdir(class_dir):
            raise InputError(class_dir, f"class folder is missing (classes: {list(class_names)})")
        files = class_image_names(class_dir)[:max_per_class]
        if not files:
            raise InputError(class_dir, f"class folder holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        paths += [os.path.join(class_dir, file) for file in files]
        labels += [label] * len(files)
    return paths, np.asarray(labels, np.int32)


def list_matched_images(
    split_dir: str, class_names: Sequence[str], max_per_class: Optional[int] = None
) -> tuple:
    """The image files of the class folders of `split_dir` that match `class_names`
    (`emotions.match_class_names`: case-insensitive, synonyms such as "anger" for "angry").

    Args:
        split_dir: a folder of class folders `<class>/<image>`.
        class_names: E classes to match the folders to (a model's classes).
        max_per_class: if set, the first this-many files of each matched folder.

    Returns:
        (paths, labels, skipped): n file paths, in sorted folder then file order; an int32 (n,)
        array of their indices into `class_names`; the folders that match no class, sorted.

    Raises:
        InputError: `split_dir` is missing or has no class folders, or a matched folder holds
            no images.
        ValueError: two folders match the same class, or no folder matches any class.
    """
    folders = list_class_folders(split_dir)
    class_of_folder, skipped = match_class_names(folders, class_names)
    if not class_of_folder:
        raise ValueError(
            f"no class folder of {split_dir} matches the model's classes {list(class_names)} (folders: {folders})"
        )
    kept = [folders[index] for index in sorted(class_of_folder)]
    paths, folder_labels = list_image_files(split_dir, kept, max_per_class)
    labels = np.array([class_of_folder[folders.index(kept[label])] for label in folder_labels], np.int32)
    return paths, labels, skipped


def list_class_images(folder: str) -> list:
    """The image files of the class folders of `folder`, as paths relative to it
    (`<class>/<name>`), sorted; class folders without images are passed over.

    Raises:
        InputError: `folder` is missing, has no class folders, or none holds an image.
    """
    images = [
        f"{name}/{image}" for name in list_class_folders(folder) for image in class_image_names(os.path.join(folder, name))
    ]
    if not images:
        raise InputError(folder, "no class folder with images (<folder>/<class>/<image>)")
    return images

