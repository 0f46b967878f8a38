"""Tests of keras_emotion.data.image_folders: class folders of still images, listed and named."""

import numpy as np
import pytest

from keras_emotion.data.emotions import EMOTIONS
from keras_emotion.data.image_folders import corpus_names, list_class_images, list_matched_images
from keras_emotion.data.video import InputError


def test_corpora_of_one_folder_name_are_told_apart_by_their_parent():
    assert corpus_names(["../shared/data/expw", "runs/aligned/expw/", "../shared/data/sfew2"]) == [
        "data/expw", "aligned/expw", "sfew2"
    ]
    assert corpus_names(["../shared/data/expw", "../shared/data/sfew2"]) == ["expw", "sfew2"]
    assert corpus_names(["runs/aligned/ck48", "../shared/data/ck48/CK+48"], with_parents=True) == [
        "aligned/ck48", "ck48/CK+48"
    ]


def test_class_images_are_listed_by_class_then_name_passing_over_other_files(tmp_path):
    for relative in ["sad/b.png", "sad/a.jpg", "happy/c.jpeg", "happy/notes.txt", "happy/.hidden.png", "calm/d.png"]:
        (tmp_path / relative).parent.mkdir(exist_ok=True)
        (tmp_path / relative).write_bytes(b"")
    paths, labels, skipped = list_matched_images(str(tmp_path), EMOTIONS)
    assert paths == [str(tmp_path / "happy" / "c.jpeg")] + [str(tmp_path / "sad" / name) for name in ("a.jpg", "b.png")]
    np.testing.assert_array_equal(labels, [EMOTIONS.index("happy")] + [EMOTIONS.index("sad")] * 2)
    assert skipped == ["calm"]
    (tmp_path / "angry").mkdir()  # a class folder without images: passed over by the listing, refused by matching
    assert list_class_images(str(tmp_path)) == ["calm/d.png", "happy/c.jpeg", "sad/a.jpg", "sad/b.png"]
    with pytest.raises(InputError) as raised:
        list_matched_images(str(tmp_path), EMOTIONS)
    assert str(raised.value).startswith(f"{tmp_path / 'angry'}: class folder holds no images (")


def test_a_folder_without_images_is_named(tmp_path):
    with pytest.raises(InputError) as raised:
        list_class_images(str(tmp_path))
    assert str(raised.value) == f"{tmp_path}: image folder is empty: expected one sub-folder of images per class"
    (tmp_path / "happy").mkdir()
    with pytest.raises(InputError) as raised:
        list_class_images(str(tmp_path))
    assert str(raised.value) == f"{tmp_path}: no class folder with images (<folder>/<class>/<image>)"
