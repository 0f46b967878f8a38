"""Dataset adapters (CK+48 on the real folder; CK+, AFEW and CSV layouts built in tmp_path) and
the subject-wise split."""

import collections
import os
import shutil

import numpy as np
import pytest

from keras_emotion.data import datasets
from keras_emotion.data.video import InputError, read_frames


def _folder_clips(ck48_dir):
    """{class: {S###_###: sorted frame paths}} counted straight from the CK+48 folder."""
    clips = {}
    for label in sorted(os.listdir(ck48_dir)):
        per_clip = collections.defaultdict(list)
        for name in os.listdir(os.path.join(ck48_dir, label)):
            subject, sequence, _ = name.split("_")
            per_clip[f"{subject}_{sequence}"].append(os.path.join(ck48_dir, label, name))
        clips[label] = {clip_id: sorted(paths) for clip_id, paths in per_clip.items()}
    return clips


def test_ck48_counts_clips_and_subjects_per_class_like_the_folders(ck48_dir):
    expected = _folder_clips(ck48_dir)
    dataset = datasets.load_dataset("ck48", ck48_dir)

    assert dataset.class_names == sorted(expected)
    assert dataset.skipped == []
    assert dataset.counts() == {"train": {label: len(clips) for label, clips in expected.items()}}
    assert dataset.subjects() == {
        label: {clip_id.split("_")[0] for clip_id in clips} for label, clips in expected.items()
    }
    for clip in dataset.clips:
        assert clip.path == tuple(expected[clip.label_name][clip.clip_id])
        assert clip.subject == clip.clip_id.split("_")[0]
    assert len({clip.subject for clip in dataset.clips}) == len(
        {clip_id.split("_")[0] for clips in expected.values() for clip_id in clips}
    )


def test_explicit_class_names_report_unknown_labels_by_file(ck48_dir):
    dataset = datasets.load_dataset("ck48", ck48_dir, class_names=["happy", "surprise"])
    assert {clip.label_name for clip in dataset.clips} == {"happy", "surprise"}
    anger = [skip for skip in dataset.skipped if "/anger/" in skip.path]
    assert len(anger) == len(_folder_clips(ck48_dir)["anger"])
    assert "unknown label 'anger'; expected one of ['happy', 'surprise']" in anger[0].reason
    assert anger[0].path.endswith(".png (+2 frames)")


def test_csv_resolves_relative_paths_and_reports_bad_rows(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "lists").mkdir()
    manifest = tmp_path / "lists" / "clips.csv"
    manifest.write_text(
        "path,label,split,subject\n"
        "../videos/a.avi,happy,train,P1\n"
        "../videos/b.avi,sad,val,P2\n"
        "../videos/c.avi,bored,train,P3\n"
        "../videos/d.avi,happy\n"
        "\n"
        "../videos/e.avi,happy,bad split!,P4\n"
    )
    dataset = datasets.load_dataset("csv", str(manifest), class_names=["happy", "sad"])

    assert [(c.clip_id, c.path, c.label_name, c.split, c.subject) for c in dataset.clips] == [
        ("../videos/a.avi", str(tmp_path / "videos" / "a.avi"), "happy", "train", "P1"),
        ("../videos/b.avi", str(tmp_path / "videos" / "b.avi"), "sad", "val", "P2"),
    ]
    reasons = {skip.path: skip.reason for skip in dataset.skipped}
    assert reasons[f"{manifest}:5"] == "expected 4 cells like the header, found 2"
    assert reasons[f"{manifest}:7"] == "split 'bad split!' is not letters, digits and '_'"
    assert reasons[str(tmp_path / "videos" / "c.avi")].startswith("unknown label 'bored'")


def test_csv_without_header_defaults_split_and_subject(tmp_path):
    manifest = tmp_path / "clips.csv"
    manifest.write_text("x/a.mp4,angry\ny/b.mp4,happy,val\nonly-one-cell\n")
    dataset = datasets.load_dataset("csv", str(manifest))
    assert dataset.class_names == ["angry", "happy"]
    assert [(c.path, c.split, c.subject) for c in dataset.clips] == [
        (str(tmp_path / "x" / "a.mp4"), "train", ""),
        (str(tmp_path / "y" / "b.mp4"), "val", ""),
    ]
    assert [skip.path for skip in dataset.skipped] == [f"{manifest}:3"]


def _ckplus_sequence(root, ck48_dir, label, clip_id, code_text):
    """Copies a CK+48 clip into the CK+ layout; writes its emotion file unless code_text is None."""
    subject, sequence = clip_id.split("_")
    frames_dir = root / "cohn-kanade-images" / subject / sequence
    frames_dir.mkdir(parents=True)
    names = sorted(name for name in os.listdir(os.path.join(ck48_dir, label)) if name.startswith(clip_id))
    for name in names:
        shutil.copy(os.path.join(ck48_dir, label, name), frames_dir / name)
    (root / "Emotion" / subject / sequence).mkdir(parents=True)
    if code_text is not None:
        (root / "Emotion" / subject / sequence / f"{names[-1][:-4]}_emotion.txt").write_text(code_text)
    return [str(frames_dir / name) for name in names]


def test_ckplus_reads_labels_from_emotion_files(tmp_path, ck48_dir):
    expected = _folder_clips(ck48_dir)
    labels = ("anger", "happy", "fear", "sadness")
    anger_id, happy_id, fear_id, sad_id = (sorted(expected[label])[0] for label in labels)
    anger_frames = _ckplus_sequence(tmp_path, ck48_dir, "anger", anger_id, "   1.0000000e+00\n")
    _ckplus_sequence(tmp_path, ck48_dir, "happy", happy_id, "   5.0000000e+00\n")
    _ckplus_sequence(tmp_path, ck48_dir, "fear", fear_id, None)
    _ckplus_sequence(tmp_path, ck48_dir, "sadness", sad_id, "   9.0000000e+00\n")

    dataset = datasets.load_dataset("ckplus", str(tmp_path))

    assert dataset.class_names == list(datasets.CKPLUS_EMOTIONS)
    assert [(c.clip_id, c.label_name, c.subject) for c in dataset.clips] == sorted(
        [(anger_id, "anger", anger_id.split("_")[0]), (happy_id, "happy", happy_id.split("_")[0])]
    )
    anger = next(c for c in dataset.clips if c.clip_id == anger_id)
    assert anger.path == tuple(anger_frames)
    reasons = {skip.clip_id: skip.reason for skip in dataset.skipped}
    assert reasons[fear_id].startswith("no *_emotion.txt in ")
    assert reasons[sad_id] == "emotion code '9.0000000e+00' is not an integer in 1..7"


def test_missing_root_and_unknown_kind_raise_clear_errors(tmp_path):
    with pytest.raises(InputError, match="cohn-kanade-images: not a folder"):
        datasets.load_dataset("ckplus", str(tmp_path))
    with pytest.raises(ValueError, match="unknown dataset kind 'fer'"):
        datasets.load_dataset("fer", str(tmp_path))


def test_afew_lists_videos_per_split_and_emotion(tmp_path, write_avi):
    frames = [np.full((32, 32, 3), value, np.uint8) for value in (0, 128, 255)]
    videos = [("Train", "Angry", "000046280"), ("Train", "Happy", "000147"), ("Val", "Happy", "01")]
    for split, emotion, name in videos:
        (tmp_path / split / emotion).mkdir(parents=True, exist_ok=True)
        write_avi(tmp_path / split / emotion / f"{name}.avi", frames)
    (tmp_path / "Val" / "Happy" / "notes.txt").write_text("not a video")

    dataset = datasets.load_dataset("afew", str(tmp_path))

    assert dataset.class_names == ["Angry", "Happy"]
    assert [(c.clip_id, c.label_name, c.split, c.subject) for c in dataset.clips] == [
        ("Train/Angry/000046280", "Angry", "train", ""),
        ("Train/Happy/000147", "Happy", "train", ""),
        ("Val/Happy/01", "Happy", "val", ""),
    ]
    assert dataset.skipped == [
        datasets.Failure(str(tmp_path / "Val" / "Happy" / "notes.txt"), "not a video file (unknown extension)")
    ]
    decoded, fps = read_frames(dataset.clips[0].path)
    assert len(decoded) == 3 and fps == pytest.approx(10.0)


def test_split_by_subject_keeps_subjects_whole_and_matches_fractions(ck48_dir):
    clips = datasets.load_dataset("ck48", ck48_dir).clips
    split = datasets.split_by_subject(clips, fractions={"train": 0.8, "val": 0.2}, seed=3)

    assert [c.clip_id for c in split] == [c.clip_id for c in clips]
    splits_of_subject = collections.defaultdict(set)
    for clip in split:
        splits_of_subject[clip.subject].add(clip.split)
    assert all(len(names) == 1 for names in splits_of_subject.values())
    largest_subject = max(collections.Counter(c.subject for c in clips).values())
    val_clips = sum(c.split == "val" for c in split)
    assert abs(val_clips - 0.2 * len(clips)) <= largest_subject
    assert split == datasets.split_by_subject(clips, fractions={"train": 0.8, "val": 0.2}, seed=3)
    assert split != datasets.split_by_subject(clips, fractions={"train": 0.8, "val": 0.2}, seed=4)


def test_split_by_subject_folds_partition_the_subjects(ck48_dir):
    clips = datasets.load_dataset("ck48", ck48_dir).clips
    folds = datasets.split_by_subject(clips, folds=5, seed=0)
    subjects_per_fold = collections.defaultdict(set)
    for clip in folds:
        subjects_per_fold[clip.split].add(clip.subject)
    assert sorted(subjects_per_fold) == [f"fold{index}" for index in range(5)]
    all_subjects = [s for subjects in subjects_per_fold.values() for s in subjects]
    assert len(all_subjects) == len(set(all_subjects)) == len({c.subject for c in clips})
    sizes = collections.Counter(clip.split for clip in folds)
    largest_subject = max(collections.Counter(c.subject for c in clips).values())
    assert max(sizes.values()) - min(sizes.values()) <= largest_subject


def test_split_by_subject_rejects_bad_arguments(ck48_dir):
    clips = datasets.load_dataset("ck48", ck48_dir).clips[:10]
    with pytest.raises(ValueError, match="exactly one of fractions or folds"):
        datasets.split_by_subject(clips, fractions={"train": 1.0}, folds=3)
    with pytest.raises(ValueError, match="must sum to 1, not 0.9"):
        datasets.split_by_subject(clips, fractions={"train": 0.7, "val": 0.2})
