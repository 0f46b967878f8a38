"""Tests of keras_emotion.data.pipeline on real CK+48 frames and on synthetic marker clips."""

import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from keras_emotion import testing
from keras_emotion.data import pipeline, schema
from keras_emotion.data.config import InputConfig

MARKER_FRAMES = 6  # frames of the marker clip; frame t is gray 30 + 30 t with a white bar at the left
IDENTICAL_FRAMES = 10  # frames of the clip whose frames are all the same CK+48 face


def _clip(clip_id, frames_jpeg, label=0):
    return schema.AlignedClip(
        clip_id=clip_id,
        label=label,
        label_name="anger",
        source="synthetic",
        subject="S000",
        split="train",
        fps=0.0,
        frames_jpeg=frames_jpeg,
        detected=np.ones(len(frames_jpeg), dtype=bool),
        landmarks=np.zeros((len(frames_jpeg), 0, 2), dtype=np.float32),
    )


def _jpeg(image):
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


@pytest.fixture(scope="module")
def synthetic_dir(shared_dir, tmp_path_factory):
    """Splits "marker" (one MARKER_FRAMES clip) and "identical" (one IDENTICAL_FRAMES clip)."""
    directory = str(tmp_path_factory.mktemp("synthetic_clips"))
    marker_frames = []
    for t in range(MARKER_FRAMES):
        image = np.full((schema.IMAGE_SIZE, schema.IMAGE_SIZE), 30 + 30 * t, np.uint8)
        image[:, : schema.IMAGE_SIZE // 4] = 255
        marker_frames.append(_jpeg(image))
    testing.write_shards([_clip("marker", marker_frames)], directory, "marker")
    face_path = str(shared_dir / "data" / "ck48" / "CK+48" / "happy")
    face = cv2.imread(os.path.join(face_path, sorted(os.listdir(face_path))[0]), cv2.IMREAD_GRAYSCALE)
    face = cv2.resize(face, (schema.IMAGE_SIZE, schema.IMAGE_SIZE), interpolation=cv2.INTER_CUBIC)
    testing.write_shards([_clip("identical", [_jpeg(face)] * IDENTICAL_FRAMES)], directory, "identical")
    return directory


def _read_clips(directory):
    """clip_id -> parsed clip, read eagerly from every shard of `directory`."""
    clips = {}
    for serialized in tf.data.TFRecordDataset(tf.io.gfile.glob(os.path.join(directory, "*.tfrecord"))):
        clip = schema.parse_clip(serialized)
        clips[clip["clip_id"].numpy().decode()] = clip
    return clips


def _reference_decoded(jpeg, resize_size):
    """uint8 (256 / r, 256 / r, 3): the stored frame decoded at 1/r scale, as documented."""
    ratio = {32: 8, 40: 4}[resize_size]  # largest r in 1, 2, 4, 8 with 256 / r >= R
    return tf.io.decode_jpeg(jpeg, channels=3, ratio=ratio).numpy()


def _reference_resized(jpeg, size):
    """float32 (size, size, 3): the stored frame decoded at 1/r scale and area-resized, as documented."""
    return tf.image.resize(_reference_decoded(jpeg, size), [size, size], method="area").numpy()


def _elements(config, count):
    """The first `count` (frames, frame_mask, labels) batches of build_dataset(config), as NumPy."""
    batches = pipeline.build_dataset(config).take(count)
    return [(f["frames"].numpy(), f["frame_mask"].numpy(), labels.numpy()) for f, labels in batches]


def test_training_batches_have_documented_shapes_and_match_clip_ids(ck48_raw_tfrecords):
    clips = _read_clips(ck48_raw_tfrecords)
    config = InputConfig(
        ck48_raw_tfrecords, training=True, num_frames=8, image_size=32, global_batch_size=4, seed=3
    )
    dataset = pipeline.build_dataset(config)
    assert dataset.element_spec[0]["frames"] == tf.TensorSpec((4, 8, 32, 32, 3), tf.float32)
    assert dataset.element_spec[0]["frame_mask"] == tf.TensorSpec((4, 8), tf.float32)
    assert dataset.element_spec[1] == tf.TensorSpec((4,), tf.int32)
    seen = []
    for (features, labels), clip_ids in zip(dataset, pipeline.build_clip_id_dataset(config)):
        frames = features["frames"].numpy()
        assert frames.min() >= 0.0 and frames.max() <= 255.0 and frames.max() > 100.0
        np.testing.assert_array_equal(features["frame_mask"].numpy(), np.ones((4, 8)))
        expected_labels = [int(clips[clip_id.decode()]["label"]) for clip_id in clip_ids.numpy()]
        np.testing.assert_array_equal(labels.numpy(), expected_labels)
        seen.extend(clip_id.decode() for clip_id in clip_ids.numpy())
    assert len(seen) == len(set(seen)) == len(clips)  # 72 clips, batches of 4: nothing dropped


def test_uniform_evaluation_takes_evenly_spaced_frames_and_the_centre_crop(ck48_raw_tfrecords):
    clips = _read_clips(ck48_raw_tfrecords)
    config = InputConfig(
        ck48_raw_tfrecords, num_frames=5, image_size=24, crop_fraction=0.75, global_batch_size=8
    )
    assert config.sampling == "uniform" and config.resize_size == 32
    dataset = pipeline.build_dataset(config)
    clip_id_batches = pipeline.build_clip_id_dataset(config)
    checked_lengths = set()
    for (features, _), clip_ids in zip(dataset, clip_id_batches):
        for frames, clip_id in zip(features["frames"].numpy(), clip_ids.numpy()):
            jpegs = clips[clip_id.decode()]["frames"].numpy()
            expected = np.floor(np.linspace(0, len(jpegs), 5, endpoint=False) + len(jpegs) / 10).astype(int)
            for frame, index in zip(frames, expected):
                np.testing.assert_allclose(frame, _reference_resized(jpegs[index], 32)[4:28, 4:28], atol=1e-3)
            checked_lengths.add(len(jpegs))
    assert {3, 20} <= checked_lengths  # both looped short clips and long clips were checked


def test_all_sampling_pads_each_batch_and_masks_the_padding(ck48_raw_tfrecords):
    clips = _read_clips(ck48_raw_tfrecords)
    config = InputConfig(ck48_raw_tfrecords, sampling="all", image_size=16, global_batch_size=8)
    dataset = pipeline.build_dataset(config)
    assert dataset.element_spec[0]["frames"].shape.as_list() == [None, None, 16, 16, 3]
    padded_batches = 0
    for (features, _), clip_ids in zip(dataset, pipeline.build_clip_id_dataset(config)):
        frames, mask = features["frames"].numpy(), features["frame_mask"].numpy()
        lengths = [len(clips[clip_id.decode()]["frames"]) for clip_id in clip_ids.numpy()]
        assert frames.shape[1] == mask.shape[1] == max(lengths)
        for clip_frames, clip_mask, length in zip(frames, mask, lengths):
            np.testing.assert_array_equal(clip_mask, np.arange(max(lengths)) < length)
            assert np.all(clip_frames[length:] == 0.0)
            assert np.all(clip_frames[:length].max(axis=(1, 2, 3)) > 0)
        padded_batches += len(set(lengths)) > 1
    assert padded_batches > 0


@pytest.mark.parametrize("clip_length", [1, 3, 7, 16, 20, 45])
def test_random_sampling_is_sorted_and_loops_short_clips(clip_length):
    num_frames = 16
    subsets = set()
    for seed in range(8):
        indices = pipeline.sample_frame_indices(
            tf.constant(clip_length), num_frames, "random", tf.constant([seed, 7], tf.int64)
        ).numpy()
        assert indices.shape == (num_frames,)
        assert np.all(np.diff(indices) >= 0)
        counts = np.bincount(indices, minlength=clip_length)
        assert counts.min() == num_frames // clip_length  # every frame at least floor(F / T) times
        assert counts.max() == num_frames // clip_length + (num_frames % clip_length > 0)
        subsets.add(tuple(indices))
    assert (len(subsets) > 1) == (num_frames % clip_length > 0)


@pytest.mark.parametrize("clip_length", [2, 16, 50])
def test_uniform_and_all_sampling_match_numpy(clip_length):
    seed = tf.constant([0, 0], tf.int64)
    uniform = pipeline.sample_frame_indices(tf.constant(clip_length), 16, "uniform", seed).numpy()
    centres = (np.arange(16) + 0.5) * clip_length / 16
    np.testing.assert_array_equal(uniform, np.floor(centres).astype(int))
    every = pipeline.sample_frame_indices(tf.constant(clip_length), 16, "all", seed).numpy()
    np.testing.assert_array_equal(every, np.arange(clip_length))


def test_one_crop_and_flip_per_clip(synthetic_dir):
    """Training cuts the window from the frame decoded at 1/4 scale (64 x 64): 32 / 40 of its
    side, 51 px, at one of 14 x 14 offsets, then area-resizes it to 32 x 32."""
    clip = _read_clips(synthetic_dir)["identical"]
    decoded = _reference_decoded(clip["frames"][0], 40)
    config = InputConfig(
        synthetic_dir, split="identical", training=True, num_frames=4, image_size=32, crop_fraction=0.8,
        global_batch_size=1, repeat=True, seed=5,
    )
    side = round(64 * 32 / 40)
    candidates = {
        (top, left, flipped): window[:, ::-1] if flipped else window
        for top in range(64 - side + 1)
        for left in range(64 - side + 1)
        for window in [tf.image.resize(decoded[top : top + side, left : left + side], [32, 32], method="area").numpy()]
        for flipped in (False, True)
    }
    windows = set()
    for frames, _, _ in _elements(config, 16):
        clip_frames = frames[0]
        for frame in clip_frames[1:]:
            np.testing.assert_array_equal(frame, clip_frames[0])
        matches = [
            key for key, window in candidates.items() if np.allclose(window, clip_frames[0], atol=1e-3)
        ]
        assert len(matches) == 1
        windows.add(matches[0])
    assert len({(top, left) for top, left, _ in windows}) > 3  # not always the centre (6, 6)
    assert {flipped for _, _, flipped in windows} == {False, True}


def _marker_state(frames):
    """Per frame of (F, S, S, 3): (flipped?, frame index from the gray level)."""
    left, right = frames[:, :, :3].mean(axis=(1, 2, 3)), frames[:, :, -3:].mean(axis=(1, 2, 3))
    middle = frames[:, :, 12:20].mean(axis=(1, 2, 3))
    return right > left, np.round((middle - 30) / 30).astype(int)


def test_flip_is_detected_on_an_asymmetric_clip_and_frames_are_looped_in_order(synthetic_dir):
    config = InputConfig(
        synthetic_dir, split="marker", training=True, num_frames=8, image_size=32, crop_fraction=1.0,
        global_batch_size=1, repeat=True, seed=11,
    )
    flips = []
    for frames, _, _ in _elements(config, 12):
        flipped, indices = _marker_state(frames[0])
        assert len(set(flipped)) == 1
        flips.append(flipped[0])
        assert np.all(np.diff(indices) >= 0) and set(indices) == set(range(MARKER_FRAMES))
    assert set(flips) == {False, True}
    unflipped = InputConfig(
        synthetic_dir, split="marker", training=True, num_frames=8, image_size=32, crop_fraction=1.0,
        global_batch_size=1, repeat=True, seed=11, flip=False,
    )
    assert not any(_marker_state(frames[0])[0].any() for frames, _, _ in _elements(unflipped, 6))


def test_color_jitter_is_one_affine_change_per_clip(synthetic_dir):
    clip = _read_clips(synthetic_dir)["identical"]
    reference = _reference_resized(clip["frames"][0], 32)[..., 0].ravel()
    config = InputConfig(
        synthetic_dir, split="identical", training=True, num_frames=3, image_size=32, crop_fraction=1.0,
        global_batch_size=1, repeat=True, seed=2, flip=False, color_jitter=True,
    )
    deltas = []
    for frames, _, _ in _elements(config, 4):
        for frame in frames[0][1:]:
            np.testing.assert_array_equal(frame, frames[0][0])
        output = frames[0][0][..., 0].ravel()
        inside = (output > 0) & (output < 255)
        factor, offset = np.polyfit(reference[inside], output[inside], 1)
        np.testing.assert_allclose(factor * reference[inside] + offset, output[inside], atol=0.01)
        assert 0.8 <= factor <= 1.25
        delta = offset - (1 - factor) * reference.mean()
        assert -32.0 <= delta <= 32.0
        deltas.append(delta)
    assert np.ptp(deltas) > 1.0


def test_same_seed_gives_same_batches_and_another_seed_others(ck48_raw_tfrecords):
    def batches(seed):
        config = InputConfig(
            ck48_raw_tfrecords, training=True, num_frames=4, image_size=16, global_batch_size=4,
            seed=seed, color_jitter=True,
        )
        return _elements(config, 3)

    first, again, other = batches(1), batches(1), batches(2)
    for (frames, _, labels), (frames_again, _, labels_again) in zip(first, again):
        np.testing.assert_array_equal(frames, frames_again)
        np.testing.assert_array_equal(labels, labels_again)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other))

    dataset = pipeline.build_dataset(
        InputConfig(
            ck48_raw_tfrecords, training=True, num_frames=4, image_size=16, global_batch_size=4, seed=1
        )
    )
    first_epoch, second_epoch = (next(iter(dataset))[0]["frames"].numpy() for _ in range(2))
    assert not np.array_equal(first_epoch, second_epoch)  # each pass over the data draws anew


def test_input_context_shards_files_and_batches_per_replica(ck48_raw_tfrecords):
    config = InputConfig(ck48_raw_tfrecords, num_frames=2, image_size=8, global_batch_size=12)
    ids_per_pipeline = []
    for pipeline_id in range(3):
        context = tf.distribute.InputContext(
            num_input_pipelines=3, input_pipeline_id=pipeline_id, num_replicas_in_sync=6
        )
        dataset = pipeline.build_dataset(config, context)
        assert dataset.element_spec[0]["frames"].shape.as_list() == [None, 2, 8, 8, 3]
        sizes = [int(labels.shape[0]) for _, labels in dataset]
        assert max(sizes) == 2
        clip_id_batches = pipeline.build_clip_id_dataset(config, context)
        ids_per_pipeline.append({i.decode() for batch in clip_id_batches for i in batch.numpy()})
    all_ids = set(_read_clips(ck48_raw_tfrecords))
    assert set.union(*ids_per_pipeline) == all_ids
    assert sum(len(ids) for ids in ids_per_pipeline) == len(all_ids)

    too_many = tf.distribute.InputContext(num_input_pipelines=4, input_pipeline_id=0, num_replicas_in_sync=4)
    with pytest.raises(ValueError, match="3 shards .* too few for 4 input pipelines"):
        pipeline.build_dataset(config, too_many)


def test_works_with_distribute_datasets_from_function(ck48_raw_tfrecords):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    config = InputConfig(
        ck48_raw_tfrecords, training=True, num_frames=2, image_size=8, global_batch_size=4
    )
    distributed = strategy.distribute_datasets_from_function(
        lambda context: pipeline.build_dataset(config, context)
    )
    features, labels = next(iter(distributed))
    assert features["frames"].shape == (4, 2, 8, 8, 3) and labels.shape == (4,)


def test_errors_name_the_pattern_or_the_file(tmp_path, synthetic_dir):
    missing = str(tmp_path / "nothing-*.tfrecord")
    with pytest.raises(ValueError, match="no TFRecord shards match .*nothing-\\*.tfrecord"):
        pipeline.build_dataset(InputConfig(missing))
    with pytest.raises(ValueError, match="no TFRecord shards match .*test-\\*.tfrecord"):
        pipeline.build_dataset(InputConfig(synthetic_dir, split="test"))

    not_a_record = tmp_path / "train-00000.tfrecord"
    not_a_record.write_bytes(b"this is a text file, not a TFRecord" * 10)
    with pytest.raises(ValueError, match="train-00000.tfrecord is not a TFRecord file"):
        pipeline.build_dataset(InputConfig(str(tmp_path)))

    with tf.io.TFRecordWriter(str(not_a_record)) as writer:
        writer.write(tf.train.Example().SerializeToString())
    with pytest.raises(ValueError, match="train-00000.tfrecord: the first record is not an aligned clip"):
        pipeline.build_dataset(InputConfig(str(tmp_path)))


def test_config_rejects_bad_values(synthetic_dir):
    with pytest.raises(ValueError, match="sampling='every'"):
        InputConfig(synthetic_dir, sampling="every")
    with pytest.raises(ValueError, match="crop_fraction=1.5"):
        InputConfig(synthetic_dir, crop_fraction=1.5)
    with pytest.raises(ValueError, match="num_frames=0"):
        InputConfig(synthetic_dir, num_frames=0)
    with pytest.raises(ValueError, match="deterministic=True"):
        config = InputConfig(synthetic_dir, split="marker", deterministic=False)
        pipeline.build_clip_id_dataset(config)


def test_a_clip_without_frames_is_reported_by_id(tmp_path):
    one_frame = _clip("empty_clip", [_jpeg(np.zeros((8, 8), np.uint8))])
    example = tf.train.SequenceExample.FromString(schema.serialize_clip(one_frame))
    for name in ("frames", "detected", "landmarks"):
        del example.feature_lists.feature_list[name].feature[:]
    with tf.io.TFRecordWriter(str(tmp_path / "train-00000.tfrecord")) as writer:
        writer.write(example.SerializeToString())
    with pytest.raises(tf.errors.InvalidArgumentError, match="clip has no frames.*empty_clip"):
        next(iter(pipeline.build_dataset(InputConfig(str(tmp_path)))))
