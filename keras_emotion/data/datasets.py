"""Dataset adapters: list the clips of a corpus as `ClipSource`s, and split them by subject.

Four layouts are understood (`load_dataset(kind, root)`):

"afew"    `<root>/<Split>/<Emotion>/<clip>.avi` (any video extension OpenCV reads);
          split = the lower-cased split folder, no subjects.
"ckplus"  CK+: `<root>/cohn-kanade-images/S###/###/*.png`, labels from
          `<root>/Emotion/S###/###/*_emotion.txt` (codes 1..7, see CKPLUS_EMOTIONS);
          a sequence without an emotion file is a reported skip.
"ck48"    CK+48: `<root>/<class>/S###_###_########.png`; a clip is the files sharing
          `S###_###`, frames sorted by name.
"csv"     a CSV file `path,label[,split][,subject]`, relative paths resolved against the
          CSV's folder; an optional header row names the columns (then in any order).

Nothing is read but folder listings and label files: checking that frames decode is the
job of preprocessing, which reports every bad clip.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import os
import random
import re
from typing import Iterable, Mapping, Optional, Sequence, Union

from keras_emotion.data import schema
from keras_emotion.data.video import IMAGE_EXTENSIONS, InputError

VIDEO_EXTENSIONS = frozenset(
    {".avi", ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ogv"}
)
CKPLUS_EMOTIONS = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
"""CK+ emotion codes 1..7, in order (code 0, neutral, never labels a CK+ sequence)."""

DATASET_KINDS = ("afew", "ckplus", "ck48", "csv")
DEFAULT_SPLIT = "train"
CSV_COLUMNS = ("path", "label", "split", "subject")

_CK48_NAME = re.compile(r"^(S\d+)_(\d+)_(\d+)$")


@dataclasses.dataclass(frozen=True)
class ClipSource:
    """Where one clip comes from.

    Attributes:
        clip_id: unique id of the clip inside its dataset.
        path: a video file, a folder of frame images, or a tuple of frame image files
            (in temporal order).
        label_name: class name.
        split: split name ("train", "val", "fold0", ...).
        subject: id of the filmed person, "" when the dataset does not say.
    """

    clip_id: str
    path: Union[str, tuple]
    label_name: str
    split: str = DEFAULT_SPLIT
    subject: str = ""

    def __post_init__(self):
        if isinstance(self.path, list):
            object.__setattr__(self, "path", tuple(self.path))

    @property
    def display_path(self) -> str:
        """The path for messages: the video/folder, or the first frame file of a frame list."""
        if isinstance(self.path, tuple):
            first = self.path[0] if self.path else "<no frames>"
            return first if len(self.path) <= 1 else f"{first} (+{len(self.path) - 1} frames)"
        return self.path


@dataclasses.dataclass(frozen=True)
class Failure:
    """A clip (or file) left out, and why. `clip_id` is "" when no clip could be formed."""

    path: str
    reason: str
    clip_id: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclasses.dataclass
class Dataset:
    """The clips of a corpus, its class names and what the listing had to skip."""

    clips: list
    class_names: list
    skipped: list

    def counts(self) -> dict:
        """{split: {class name: number of clips}}, every class present in every split."""
        counts = {}
        for clip in self.clips:
            counts.setdefault(clip.split, dict.fromkeys(self.class_names, 0))[clip.label_name] += 1
        return counts

    def subjects(self) -> dict:
        """{class name: set of subject ids with a clip of that class}."""
        subjects = {name: set() for name in self.class_names}
        for clip in self.clips:
            subjects[clip.label_name].add(clip.subject)
        return subjects


def _visible_entries(folder: str) -> list:
    """Sorted names in `folder` that do not start with a dot."""
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def _require_folder(path: str, what: str) -> None:
    if not os.path.isdir(path):
        raise InputError(path, f"not a folder; expected {what}")


def _extension(name: str) -> str:
    return os.path.splitext(name)[1].lower()


def list_afew(root: str) -> tuple[list, list]:
    """AFEW: `<root>/<Split>/<Emotion>/<clip>.<video ext>`.

    Returns:
        (clips, skipped): clip_id is `<Split>/<Emotion>/<clip name>`, split the lower-cased
        split folder, label the emotion folder name, no subject. Files that are not videos
        are reported skips.
    """
    _require_folder(root, "AFEW layout <root>/<Split>/<Emotion>/<clip>.avi")
    clips, skipped = [], []
    for split in _visible_entries(root):
        split_dir = os.path.join(root, split)
        if not os.path.isdir(split_dir):
            continue
        for emotion in _visible_entries(split_dir):
            emotion_dir = os.path.join(split_dir, emotion)
            if not os.path.isdir(emotion_dir):
                continue
            for name in _visible_entries(emotion_dir):
                path = os.path.join(emotion_dir, name)
                if _extension(name) not in VIDEO_EXTENSIONS:
                    skipped.append(Failure(path, "not a video file (unknown extension)"))
                    continue
                clip_id = f"{split}/{emotion}/{os.path.splitext(name)[0]}"
                clips.append(ClipSource(clip_id, path, emotion, split.lower()))
    return clips, skipped


def _read_ckplus_code(path: str) -> str:
    """The emotion name in a CK+ `*_emotion.txt` file (one float code 1..7)."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read().strip()
    try:
        code = float(text)
    except ValueError:
        raise InputError(path, f"expected one emotion code 1..7, found {text[:40]!r}") from None
    if code != int(code) or not 1 <= int(code) <= len(CKPLUS_EMOTIONS):
        raise InputError(path, f"emotion code {text!r} is not an integer in 1..{len(CKPLUS_EMOTIONS)}")
    return CKPLUS_EMOTIONS[int(code) - 1]


def list_ckplus(root: str) -> tuple[list, list]:
    """CK+: frames `<root>/cohn-kanade-images/S###/###/*.png`, labels `<root>/Emotion/S###/###/*_emotion.txt`.

    Returns:
        (clips, skipped): one clip per labelled sequence, clip_id `S###_###`, subject `S###`,
        path the tuple of its frame files sorted by name, split "train". Sequences without an
        emotion file, with an unreadable one or without frames are reported skips.
    """
    images_root = os.path.join(root, "cohn-kanade-images")
    emotion_root = os.path.join(root, "Emotion")
    _require_folder(images_root, "CK+ frames in cohn-kanade-images/S###/###/*.png")
    _require_folder(emotion_root, "CK+ labels in Emotion/S###/###/*_emotion.txt")
    clips, skipped = [], []
    for subject in _visible_entries(images_root):
        subject_dir = os.path.join(images_root, subject)
        if not os.path.isdir(subject_dir):
            continue
        for sequence in _visible_entries(subject_dir):
            sequence_dir = os.path.join(subject_dir, sequence)
            if not os.path.isdir(sequence_dir):
                continue
            clip_id = f"{subject}_{sequence}"
            frames = [
                os.path.join(sequence_dir, name)
                for name in _visible_entries(sequence_dir)
                if _extension(name) in IMAGE_EXTENSIONS
            ]
            label_dir = os.path.join(emotion_root, subject, sequence)
            label_files = (
                [name for name in _visible_entries(label_dir) if name.endswith("_emotion.txt")]
                if os.path.isdir(label_dir)
                else []
            )
            if not frames:
                skipped.append(Failure(sequence_dir, "sequence has no image files", clip_id))
            elif len(label_files) != 1:
                found = "no" if not label_files else f"{len(label_files)}"
                skipped.append(Failure(sequence_dir, f"{found} *_emotion.txt in {label_dir}", clip_id))
            else:
                try:
                    label = _read_ckplus_code(os.path.join(label_dir, label_files[0]))
                except InputError as error:
                    skipped.append(Failure(error.path, error.reason, clip_id))
                    continue
                clips.append(ClipSource(clip_id, tuple(frames), label, DEFAULT_SPLIT, subject))
    return clips, skipped


def list_ck48(root: str) -> tuple[list, list]:
    """CK+48: `<root>/<class>/S###_###_########.png`; a clip is the files sharing `S###_###`.

    Returns:
        (clips, skipped): clip_id `S###_###`, subject `S###`, path the tuple of its frame
        files sorted by name, split "train". Files not named like `S###_###_#.png` are
        reported skips.
    """
    _require_folder(root, "CK+48 layout <root>/<class>/S###_###_########.png")
    clips, skipped = [], []
    for label in _visible_entries(root):
        class_dir = os.path.join(root, label)
        if not os.path.isdir(class_dir):
            continue
        sequences = collections.defaultdict(list)
        for name in _visible_entries(class_dir):
            path = os.path.join(class_dir, name)
            match = _CK48_NAME.match(os.path.splitext(name)[0])
            if _extension(name) not in IMAGE_EXTENSIONS or not match:
                skipped.append(Failure(path, "not a CK+48 frame (expected S###_###_########.png)"))
                continue
            sequences[(match.group(1), match.group(2))].append(path)
        for (subject, sequence), frames in sorted(sequences.items()):
            clips.append(ClipSource(f"{subject}_{sequence}", tuple(sorted(frames)), label, DEFAULT_SPLIT, subject))
    return clips, skipped


def _csv_columns(first_row: list) -> tuple[Optional[dict], bool]:
    """(column index by name, whether `first_row` is a header)."""
    names = [cell.strip().lower() for cell in first_row]
    if "path" in names and "label" in names and set(names) <= set(CSV_COLUMNS):
        return {name: index for index, name in enumerate(names)}, True
    return None, False


def list_csv(csv_path: str) -> tuple[list, list]:
    """A CSV manifest: rows `path,label[,split][,subject]`, optional header row.

    Relative paths are resolved against the CSV's folder; the clip_id is the path as
    written in the CSV. A missing split is "train", a missing subject "". Rows with a
    wrong number of cells, an empty path/label or a split name that is not letters, digits
    and "_" (`schema.SPLIT_NAME`) are reported skips naming the line.
    """
    if not os.path.isfile(csv_path):
        raise InputError(csv_path, "no such CSV file")
    base = os.path.dirname(os.path.abspath(csv_path))
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = [(number, row) for number, row in enumerate(csv.reader(handle), start=1) if any(c.strip() for c in row)]
    if not rows:
        raise InputError(csv_path, "CSV file has no rows")
    columns, has_header = _csv_columns(rows[0][1])
    if has_header:
        rows = rows[1:]
    clips, skipped = [], []
    for number, row in rows:
        cells = [cell.strip() for cell in row]
        where = f"{csv_path}:{number}"
        if columns is None and not 2 <= len(cells) <= len(CSV_COLUMNS):
            skipped.append(Failure(where, f"expected path,label[,split][,subject], found {len(cells)} cells"))
            continue
        if columns is not None and len(cells) != len(columns):
            skipped.append(Failure(where, f"expected {len(columns)} cells like the header, found {len(cells)}"))
            continue
        values = dict(zip(CSV_COLUMNS, cells)) if columns is None else {n: cells[i] for n, i in columns.items()}
        if not values["path"] or not values["label"]:
            skipped.append(Failure(where, "empty path or label"))
            continue
        path = os.path.normpath(os.path.join(base, values["path"]))
        split = values.get("split") or DEFAULT_SPLIT
        if not schema.SPLIT_NAME.match(split):
            skipped.append(Failure(where, f"split {split!r} is not letters, digits and '_'"))
            continue
        clips.append(ClipSource(values["path"], path, values["label"], split, values.get("subject", "")))
    return clips, skipped


_LISTERS = {"afew": list_afew, "ckplus": list_ckplus, "ck48": list_ck48, "csv": list_csv}


def load_dataset(kind: str, root: str, class_names: Optional[Sequence[str]] = None) -> Dataset:
    """Lists the clips of a corpus.

    Args:
        kind: one of DATASET_KINDS.
        root: the corpus folder (the CSV file for "csv").
        class_names: the classes, in label-index order. None: the sorted set of labels
            found (for "ckplus": CKPLUS_EMOTIONS). A clip whose label is not among them is
            a reported skip naming its file.

    Returns:
        A Dataset. A clip id met twice keeps its first clip; the second is a reported skip.

    Raises:
        ValueError: unknown kind. InputError: `root` missing or not of the expected layout.
    """
    if kind not in _LISTERS:
        raise ValueError(f"unknown dataset kind {kind!r}; expected one of {DATASET_KINDS}")
    found, skipped = _LISTERS[kind](os.fspath(root))
    if class_names is None:
        class_names = CKPLUS_EMOTIONS if kind == "ckplus" else sorted({clip.label_name for clip in found})
    class_names = list(class_names)
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"class names repeat: {class_names}")
    known = set(class_names)
    clips, seen = [], set()
    for clip in found:
        if clip.label_name not in known:
            reason = f"unknown label {clip.label_name!r}; expected one of {class_names}"
            skipped.append(Failure(clip.display_path, reason, clip.clip_id))
        elif clip.clip_id in seen:
            skipped.append(Failure(clip.display_path, f"duplicate clip id {clip.clip_id!r}", clip.clip_id))
        else:
            seen.add(clip.clip_id)
            clips.append(clip)
    return Dataset(clips, class_names, skipped)


def split_by_subject(
    clips: Iterable[ClipSource],
    fractions: Optional[Mapping[str, float]] = None,
    folds: Optional[int] = None,
    seed: int = 0,
) -> list:
    """Assigns whole subjects to splits: every clip of a subject lands in the same split.

    Give exactly one of `fractions` (e.g. {"train": 0.8, "val": 0.2}, summing to 1) or
    `folds` (k >= 2 equal splits named "fold0" .. "fold{k-1}", for k-fold evaluation).
    Subjects are shuffled with `seed`, then each goes to the split furthest below its
    target number of clips, so splits match their fractions in clips, not only in
    subjects. A clip without a subject counts as a subject of its own.

    Returns:
        The clips, in their input order, with `split` replaced.
    """
    clips = list(clips)
    if (fractions is None) == (folds is None):
        raise ValueError("give exactly one of fractions or folds")
    if folds is not None:
        if folds < 2:
            raise ValueError(f"folds={folds}; need at least 2")
        fractions = {f"fold{index}": 1.0 / folds for index in range(folds)}
    if not fractions or any(value <= 0 for value in fractions.values()):
        raise ValueError(f"split fractions must be positive: {dict(fractions)}")
    if abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, not {sum(fractions.values()):g}: {dict(fractions)}")

    clips_per_subject = collections.Counter(clip.subject or clip.clip_id for clip in clips)
    subjects = sorted(clips_per_subject)
    random.Random(seed).shuffle(subjects)
    targets = {name: fraction * len(clips) for name, fraction in fractions.items()}
    assigned = dict.fromkeys(fractions, 0)
    split_of_subject = {}
    for subject in subjects:
        split = max(fractions, key=lambda name: targets[name] - assigned[name])
        split_of_subject[subject] = split
        assigned[split] += clips_per_subject[subject]
    return [dataclasses.replace(clip, split=split_of_subject[clip.subject or clip.clip_id]) for clip in clips]
