"""process_clip and the corpus runner on real CK+48 clips: failures reported, shards complete,
resume without duplicates, manifest counts equal to the folder counts."""

import collections
import fnmatch
import glob
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import tensorflow as tf

from keras_emotion.data import schema
from keras_emotion.data.datasets import ClipSource, load_dataset
from keras_emotion.data.faces import AlignmentConfig, FaceAligner
from keras_emotion.data.preprocess import (
    REPORT_NAME,
    ClipStats,
    PreprocessConfig,
    preprocess_corpus,
    process_clip,
)
from keras_emotion.data.demo import SEQUENCE_NAME
from keras_emotion.data.video import InputError, read_frames, read_image
from keras_emotion.files import temp_path

SCRIPT_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
FAST = PreprocessConfig(alignment=AlignmentConfig(upsample=0))


@pytest.fixture(scope="module")
def ck48(ck48_dir):
    return load_dataset("ck48", ck48_dir)


def _every_nth(clips, count):
    return clips[:: len(clips) // count][:count]


def _read_shards(directory):
    """{file name: [parsed clip dict, ...]} of the complete shards in `directory`."""
    return {
        os.path.basename(path): list(tf.data.TFRecordDataset(path).map(schema.parse_clip).as_numpy_iterator())
        for path in sorted(glob.glob(schema.shard_pattern(directory)))
    }


def _clip_ids(directory):
    return [item["clip_id"].decode() for items in _read_shards(directory).values() for item in items]


def test_process_clip_matches_the_aligner_on_a_ck48_clip(ck48):
    source = ck48.clips[0]
    aligner = FaceAligner(FAST.alignment)
    stats = ClipStats()
    clip = process_clip(source, aligner, ck48.class_names, FAST, stats)

    reference = aligner.align_clip([read_image(path) for path in source.path])
    assert (clip.clip_id, clip.label, clip.label_name, clip.subject, clip.split, clip.fps) == (
        source.clip_id, ck48.class_names.index(source.label_name), source.label_name, source.subject, "train", 0.0
    )
    assert clip.num_frames == len(source.path) == 3
    for jpeg, face in zip(clip.frames_jpeg, reference.faces):
        decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert decoded.shape == (schema.IMAGE_SIZE, schema.IMAGE_SIZE, 3)
        assert np.abs(decoded.astype(float) - face).mean() < 2.0
    np.testing.assert_array_equal(clip.detected, reference.detected)
    np.testing.assert_allclose(clip.landmarks, reference.landmarks)
    assert clip.landmarks.shape == (3, 68, 2)
    assert (stats.frames, stats.faces_found) == (3, 3)
    assert set(stats.seconds) == {"reading", "detection", "landmarks", "alignment", "encoding"}
    assert all(seconds > 0 for seconds in stats.seconds.values())


def test_process_clip_rejects_an_unknown_label(ck48):
    source = ck48.clips[0]
    with pytest.raises(InputError, match=r"\.png \(\+2 frames\): unknown label 'anger'; expected one of \['happy'\]"):
        process_clip(source, FaceAligner(FAST.alignment), ["happy"], FAST)


def test_bad_clips_are_reported_while_the_rest_is_written(tmp_path, ck48, write_avi):
    good = _every_nth(ck48.clips, 3)
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    blank = tmp_path / "blank"
    blank.mkdir()
    for index in range(2):
        cv2.imwrite(str(blank / f"{index}.png"), np.full((64, 64), 128, np.uint8))
    video = tmp_path / "video.avi"
    write_avi(video, [cv2.resize(read_image(path), (144, 144)) for path in good[0].path])
    bad = [
        ClipSource("corrupt", str(corrupt), "anger"),
        ClipSource("blank", str(blank), "anger"),
        ClipSource("missing", str(tmp_path / "missing.mp4"), "anger"),
        ClipSource("bored", str(video), "bored"),
    ]
    clips = good + [ClipSource("video", str(video), good[0].label_name)] + bad
    output = tmp_path / "out"

    report = preprocess_corpus(clips, str(output), FAST, 1, ck48.class_names, progress=False)

    reasons = {failure.clip_id: (failure.path, failure.reason) for failure in report.failures}
    assert reasons == {
        "corrupt": (str(corrupt), "cannot open video (unreadable, corrupt or unsupported format)"),
        "blank": (str(blank), "no face detected in any of the 2 frames"),
        "missing": (str(tmp_path / "missing.mp4"), "no such file or folder"),
        "bored": (str(video), f"unknown label 'bored'; expected one of {ck48.class_names}"),
    }
    assert sorted(_clip_ids(output)) == sorted(clip.clip_id for clip in good + clips[3:4])
    assert (report.clips, report.written, report.already_done) == (len(clips), 4, 0)
    assert report.stats.frames == 12 and report.faces_found_percent == 100.0
    saved = json.loads((output / REPORT_NAME).read_text())
    assert saved == json.loads(json.dumps(report.to_dict()))
    manifest = json.loads((output / schema.MANIFEST_NAME).read_text())
    assert manifest["complete"] and manifest["num_clips"] == 4
    assert manifest["preprocessing"]["alignment"]["upsample"] == 0
    assert set(manifest["versions"]) >= {"tensorflow", "keras", "dlib", "opencv", "numpy"}
    parsed = [item for items in _read_shards(output).values() for item in items]
    video_clip = next(item for item in parsed if item["clip_id"] == b"video")
    assert video_clip["fps"] == pytest.approx(10.0) and video_clip["num_frames"] == 3


def test_temp_shards_never_match_the_shard_pattern(tmp_path, ck48):
    final = os.path.join(str(tmp_path), "train-00003.tfrecord")
    assert fnmatch.fnmatch(final, schema.shard_pattern(str(tmp_path), "train"))
    assert not fnmatch.fnmatch(temp_path(final), schema.shard_pattern(str(tmp_path)))

    seen_during_run = []

    def look(done, total, failed):
        temp_files = sorted(name for name in os.listdir(tmp_path) if name.endswith(".tmp"))
        seen_during_run.append((temp_files, glob.glob(schema.shard_pattern(str(tmp_path)))))

    config = PreprocessConfig(alignment=FAST.alignment, shard_bytes=1)
    preprocess_corpus(_every_nth(ck48.clips, 2), str(tmp_path), config, 1, ck48.class_names, progress=look)
    assert seen_during_run[0] == ([".train-00000.tfrecord.tmp"], [])
    first_shard = os.path.join(str(tmp_path), "train-00000.tfrecord")
    assert seen_during_run[1] == ([".train-00001.tfrecord.tmp"], [first_shard])


def test_interrupted_run_resumes_without_duplicates(tmp_path, ck48):
    clips = _every_nth(ck48.clips, 10)
    config = PreprocessConfig(alignment=FAST.alignment, shard_bytes=80_000)  # about 2 clips per shard

    def interrupt_after_five(done, total, failed):
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        preprocess_corpus(clips, str(tmp_path), config, 2, ck48.class_names, progress=interrupt_after_five)
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    first_ids = _clip_ids(tmp_path)
    assert 1 <= len(first_ids) < 5 and len(set(first_ids)) == len(first_ids)  # the open shard was dropped
    (tmp_path / ".train-00009.tfrecord.tmp").write_bytes(b"left by a killed run")

    report = preprocess_corpus(clips, str(tmp_path), config, 1, ck48.class_names, progress=False)

    assert (report.already_done, report.written, report.failures) == (len(first_ids), 10 - len(first_ids), [])
    assert sorted(_clip_ids(tmp_path)) == sorted(clip.clip_id for clip in clips)
    shards = _read_shards(tmp_path)
    assert sorted(shards) == [f"train-{index:05d}.tfrecord" for index in range(len(shards))]
    assert all(os.path.getsize(tmp_path / name) <= 80_000 or len(items) == 1 for name, items in shards.items())
    manifest = json.loads((tmp_path / schema.MANIFEST_NAME).read_text())
    expected = collections.Counter(clip.label_name for clip in clips)
    assert manifest["counts"] == {"train": {name: expected[name] for name in ck48.class_names}}
    assert [entry["file"] for entry in manifest["shards"]] == sorted(shards)
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_resuming_with_other_parameters_is_refused(tmp_path, ck48):
    clips = ck48.clips[:1]
    preprocess_corpus(clips, str(tmp_path), FAST, 1, ck48.class_names, progress=False)
    five_points = PreprocessConfig(alignment=AlignmentConfig(upsample=0, landmarks=5))
    with pytest.raises(ValueError, match=r"manifest.json: existing shards were written with other preprocessing"):
        preprocess_corpus(clips, str(tmp_path), five_points, 1, ck48.class_names, progress=False)


def test_ck48_end_to_end_counts_match_the_folders(ck48_tfrecords, ck48_dir):
    manifest = json.loads(open(os.path.join(ck48_tfrecords, schema.MANIFEST_NAME)).read())
    folder_counts = {
        label: len({name[:8] for name in os.listdir(os.path.join(ck48_dir, label))})
        for label in sorted(os.listdir(ck48_dir))
    }
    assert manifest["class_names"] == sorted(folder_counts)
    assert manifest["counts"] == {"train": folder_counts}
    shards = _read_shards(ck48_tfrecords)
    assert [entry["file"] for entry in manifest["shards"]] == sorted(shards) and len(shards) > 1
    parsed = [item for items in shards.values() for item in items]
    assert len({item["clip_id"] for item in parsed}) == len(parsed) == sum(folder_counts.values())
    assert collections.Counter(item["label_name"].decode() for item in parsed) == folder_counts
    assert all(item["num_frames"] == 3 and item["landmarks"].shape == (3, 68, 2) for item in parsed)
    assert tf.io.decode_jpeg(parsed[0]["frames"][0]).shape == (schema.IMAGE_SIZE, schema.IMAGE_SIZE, 3)


REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (an exited process nobody reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _children(pid: int) -> list:
    """PIDs of the live child processes of `pid` (from /proc)."""
    children = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[1] == str(pid) and fields[0] != "Z":
            children.append(int(entry))
    return children


def _start_preprocess(csv_path, output, log) -> subprocess.Popen:
    command = [
        sys.executable, str(REPO_ROOT / "scripts" / "preprocess.py"), "--dataset=csv", f"--input={csv_path}",
        f"--output_dir={output}", "--workers=2", "--upsample=0", "--no_cnn_fallback",
    ]
    with open(log, "w") as stream:
        return subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, env=SCRIPT_ENV)


def _workers_and_tracker(process: subprocess.Popen, timeout: float = 60) -> list:
    """The children of preprocess.py once its 2 workers and the resource tracker run."""
    deadline = time.monotonic() + timeout
    while len(children := _children(process.pid)) < 3:
        assert process.poll() is None and time.monotonic() < deadline, "preprocess.py did not start its workers"
        time.sleep(0.05)
    return children


def _wait_until_gone(pids, timeout: float = 30) -> list:
    """The PIDs still alive after `timeout` seconds (workers may still be importing their
    libraries when the parent dies: they end once their initializer runs)."""
    deadline = time.monotonic() + timeout
    while (alive := [pid for pid in pids if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def test_killed_or_terminated_preprocessing_leaves_no_process_and_a_second_run_is_refused(tmp_path, ck48):
    """preprocess.py --workers 2 SIGKILLed, then SIGTERMed (a second run meanwhile refused at
    once), then run to the end: no worker or resource tracker outlives its parent, no temp
    shard stays, every clip ends up in the shards exactly once."""
    frames = [path for clip in _every_nth(ck48.clips, 40) for path in clip.path[-1:]]
    csv_path = tmp_path / "clips.csv"
    csv_path.write_text("".join(f"{path},{os.path.basename(os.path.dirname(path))}\n" for path in frames))
    output = tmp_path / "out"

    killed = _start_preprocess(csv_path, output, tmp_path / "killed.log")
    children = _workers_and_tracker(killed)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=10)
    assert _wait_until_gone(children) == [], "workers and resource tracker die with their SIGKILLed parent"

    terminated = _start_preprocess(csv_path, output, tmp_path / "terminated.log")
    children = _workers_and_tracker(terminated)
    second = subprocess.run(
        terminated.args, capture_output=True, text=True, env=SCRIPT_ENV, timeout=60
    )
    assert second.returncode == 1
    assert re.search(
        rf"^preprocess: {output} is in use by another run \(preprocess, PID {terminated.pid} on .*\): wait for it "
        rf"to end or use another output folder; if that run is gone, delete {output / '.lock'}$",
        second.stderr, re.MULTILINE,
    ), second.stderr[-2000:]
    os.kill(terminated.pid, signal.SIGTERM)
    assert terminated.wait(timeout=60) != 0
    assert _wait_until_gone(children) == [], "SIGTERM stops the workers and the resource tracker"
    log = (tmp_path / "terminated.log").read_text()
    assert f"taking over the stale lock of PID {killed.pid}" in log
    assert not [name for name in os.listdir(output) if name.startswith(".")], "no temp shard, no lock left"

    finished = _start_preprocess(csv_path, output, tmp_path / "finished.log")
    assert finished.wait(timeout=120) == 0, (tmp_path / "finished.log").read_text()[-3000:]
    manifest = json.loads((output / schema.MANIFEST_NAME).read_text())
    report = json.loads((output / REPORT_NAME).read_text())
    assert manifest["complete"] and report["clips"] == len(frames)
    clip_ids = _clip_ids(str(output))
    assert len(clip_ids) == len(set(clip_ids)) == len(frames) - len(report["failures"])


def test_a_truncated_video_is_kept_and_recorded_in_the_report(tmp_path, small_demo_corpus):
    intact = str(small_demo_corpus / "Train" / "happy" / "happy_train_000.avi")
    truncated = str(tmp_path / "happy_truncated.avi")
    shutil.copy(intact, truncated)
    os.truncate(truncated, int(os.path.getsize(truncated) * 0.6))
    frames_read = len(read_frames(truncated)[0])
    assert 0 < frames_read < 4
    clips = [ClipSource("intact", intact, "happy"), ClipSource("truncated", truncated, "happy")]

    report = preprocess_corpus(clips, str(tmp_path / "out"), FAST, class_names=["happy"], progress=False)

    assert (report.written, report.failures) == (2, [])
    record = {
        "clip_id": "truncated", "path": truncated, "truncated": True, "frames_read": frames_read, "frames_expected": 4
    }
    assert report.stats.truncated_clips == [record]
    saved = json.loads((tmp_path / "out" / REPORT_NAME).read_text())
    assert saved["stats"]["truncated_clips"] == [record]
    assert f"  truncated: {truncated}: {frames_read} of 4 frames decoded" in report.summary().splitlines()


def test_workers_write_the_clips_in_corpus_order_whatever_their_speeds(tmp_path, small_demo_corpus):
    """The first clip (134 frames) takes longest, so its worker finishes last: the shards still
    hold the corpus's order, byte for byte what one process writes."""
    short_clips = sorted((small_demo_corpus / "Train").glob("*/*.avi"))
    clips = [ClipSource("long", str(small_demo_corpus / SEQUENCE_NAME), "happy")] + [
        ClipSource(path.stem, str(path), path.parent.name) for path in short_clips
    ]
    class_names = sorted({clip.label_name for clip in clips})
    for workers in (1, 2):
        preprocess_corpus(clips, str(tmp_path / str(workers)), FAST, workers, class_names, progress=False)
        assert _clip_ids(tmp_path / str(workers)) == [clip.clip_id for clip in clips]
    shard = "train-00000.tfrecord"
    assert (tmp_path / "1" / shard).read_bytes() == (tmp_path / "2" / shard).read_bytes()
