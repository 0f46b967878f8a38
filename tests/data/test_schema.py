"""serialize_clip -> parse_clip round trip on real CK+48 frames."""

import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from keras_emotion.data import schema


def _clip(ck48_dir, num_frames=3, num_landmarks=68, **overrides):
    """An AlignedClip of JPEG-encoded real CK+48 frames with random landmarks."""
    folder = os.path.join(ck48_dir, "happy")
    names = sorted(os.listdir(folder))[:num_frames]
    frames = [cv2.imencode(".jpg", cv2.imread(os.path.join(folder, name)))[1].tobytes() for name in names]
    rng = np.random.default_rng(0)
    values = dict(
        clip_id="S010_006",
        label=4,
        label_name="happy",
        source=folder,
        subject="S010",
        split="val",
        fps=29.97,
        frames_jpeg=frames,
        detected=np.array([True, False, True][:num_frames]),
        landmarks=rng.uniform(0, 256, size=(num_frames, num_landmarks, 2)).astype(np.float32),
    )
    values.update(overrides)
    return schema.AlignedClip(**values)


@pytest.mark.parametrize("num_landmarks", [68, 5])
def test_round_trip_keeps_every_field(ck48_dir, num_landmarks):
    clip = _clip(ck48_dir, num_landmarks=num_landmarks)
    parsed = schema.parse_clip(tf.constant(schema.serialize_clip(clip)))

    for name in ("clip_id", "label_name", "source", "subject", "split"):
        assert parsed[name].numpy().decode() == getattr(clip, name), name
    assert parsed["label"].dtype == tf.int32 and int(parsed["label"]) == clip.label
    assert int(parsed["num_frames"]) == 3
    assert float(parsed["fps"]) == pytest.approx(29.97, rel=1e-6)
    assert [frame for frame in parsed["frames"].numpy()] == clip.frames_jpeg
    decoded = tf.io.decode_jpeg(parsed["frames"][0]).numpy()
    assert decoded.shape == (48, 48, 3)
    assert parsed["detected"].dtype == tf.bool
    np.testing.assert_array_equal(parsed["detected"].numpy(), [True, False, True])
    assert parsed["landmarks"].shape == (3, num_landmarks, 2)
    np.testing.assert_array_equal(parsed["landmarks"].numpy(), clip.landmarks)


def test_parse_clip_parses_only_the_features_asked_for(ck48_dir):
    clip = _clip(ck48_dir)
    serialized = tf.constant(schema.serialize_clip(clip))
    parsed = schema.parse_clip(serialized, features=("label", "frames", "landmarks"))
    assert sorted(parsed) == ["frames", "label", "landmarks"]
    assert parsed["label"].dtype == tf.int32 and int(parsed["label"]) == clip.label
    assert [frame for frame in parsed["frames"].numpy()] == clip.frames_jpeg
    np.testing.assert_array_equal(parsed["landmarks"].numpy(), clip.landmarks)
    with pytest.raises(ValueError) as error:
        schema.parse_clip(serialized, features=("frames", "pixels"))
    assert str(error.value) == (
        "unknown clip features ['pixels']; known: ['clip_id', 'detected', 'fps', 'frames', 'label', "
        "'label_name', 'landmarks', 'num_frames', 'source', 'split', 'subject']"
    )


def test_parse_clip_works_inside_a_tf_data_graph(ck48_dir):
    records = [schema.serialize_clip(_clip(ck48_dir, clip_id=f"clip{index}")) for index in range(2)]
    dataset = tf.data.Dataset.from_tensor_slices(records).map(schema.parse_clip)
    assert [item["clip_id"].decode() for item in dataset.as_numpy_iterator()] == ["clip0", "clip1"]


def test_clip_without_frames_raises(ck48_dir):
    clip = _clip(ck48_dir, frames_jpeg=[], detected=np.zeros(0, bool), landmarks=np.zeros((0, 68, 2), np.float32))
    with pytest.raises(ValueError, match="'S010_006' has no frames"):
        schema.serialize_clip(clip)


def test_mismatched_lengths_raise(ck48_dir):
    clip = _clip(ck48_dir, detected=np.array([True, True]))
    with pytest.raises(ValueError, match="3 frames but 2 detected flags and 3 landmark sets"):
        schema.serialize_clip(clip)
