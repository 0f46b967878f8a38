"""The Beam pipeline (DirectRunner) writes exactly what process_clip produces, plus manifest and report."""

import dataclasses
import glob
import json
import os

import tensorflow as tf

from keras_emotion.data import schema
from keras_emotion.data.beam_pipeline import FAILURES_NAME, run_beam_preprocessing
from keras_emotion.data.datasets import ClipSource, load_dataset
from keras_emotion.data.faces import AlignmentConfig, FaceAligner
from keras_emotion.data.preprocess import REPORT_NAME, PreprocessConfig, process_clip


def test_beam_direct_runner_matches_process_clip(tmp_path, ck48_dir):
    dataset = load_dataset("ck48", ck48_dir)
    clips = dataset.clips[::60][:4]
    clips[1] = dataclasses.replace(clips[1], split="val")
    missing = ClipSource("missing", str(tmp_path / "missing.avi"), clips[0].label_name)
    config = PreprocessConfig(alignment=AlignmentConfig(upsample=0))
    output = str(tmp_path / "out")

    report = run_beam_preprocessing(clips + [missing], output, dataset.class_names, config)

    aligner = FaceAligner(config.alignment)
    for split in ("train", "val"):
        expected = {
            schema.serialize_clip(process_clip(clip, aligner, dataset.class_names, config))
            for clip in clips
            if clip.split == split
        }
        written = [record.numpy() for record in tf.data.TFRecordDataset(glob.glob(schema.shard_pattern(output, split)))]
        assert sorted(written) == sorted(expected), split
    assert sorted(os.listdir(output)) == sorted(
        [FAILURES_NAME, REPORT_NAME, schema.MANIFEST_NAME, "train-00000.tfrecord", "val-00000.tfrecord"]
    )

    assert [(f.clip_id, f.path, f.reason) for f in report.failures] == [
        ("missing", missing.path, "no such file or folder")
    ]
    assert (report.clips, report.written) == (5, 4)
    assert (report.stats.frames, report.stats.faces_found) == (12, 12)
    assert report.stats.seconds["detection"] > 0
    assert json.loads(open(os.path.join(output, REPORT_NAME)).read())["written"] == 4

    manifest = json.loads(open(os.path.join(output, schema.MANIFEST_NAME)).read())
    counts = {split: dict.fromkeys(dataset.class_names, 0) for split in ("train", "val")}
    for clip in clips:
        counts[clip.split][clip.label_name] += 1
    assert manifest["counts"] == counts and manifest["complete"]
    assert [shard["file"] for shard in manifest["shards"]] == ["train-00000.tfrecord", "val-00000.tfrecord"]
