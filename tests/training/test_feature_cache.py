"""Tests of keras_emotion.training.feature_cache: maps of fixed views, kept on disk under a key."""

import os
import re

import keras
import numpy as np
import pytest

from keras_emotion.models import ModelConfig, build_model
from keras_emotion.models.backbones import build_backbone
from keras_emotion.models.builder import copy_head_weights, feature_map_backbone
from keras_emotion.training import feature_cache
from keras_emotion.training.face_clips import fer2013_clips
from keras_emotion.training.task import classification_loss

SIZE = 32


@pytest.fixture(scope="module")
def faces(shared_dir):
    """uint8 (12, 32, 32, 3) real FER2013 faces and their labels."""
    clips, _ = fer2013_clips(str(shared_dir / "data" / "fer2013" / "validation"), SIZE, max_per_class=2)
    return clips.frames[:12], clips.labels[:12]


@pytest.fixture(scope="module")
def backbone():
    keras.utils.set_random_seed(1)
    return build_backbone("compact", SIZE)


def test_views_are_the_backbones_maps_of_the_frame_its_mirror_and_a_zoom(faces, backbone):
    frames, _ = faces
    maps = feature_cache.compute_feature_maps(backbone, frames, feature_cache.VIEWS, batch_size=5)
    assert maps.shape == (12, 4, 2, 2, 256) and maps.dtype == np.float16
    plain = backbone.predict(frames.astype(np.float32), verbose=0)
    mirrored = backbone.predict(frames[:, :, ::-1].astype(np.float32), verbose=0)
    np.testing.assert_allclose(maps[:, 0], plain, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(maps[:, 1], mirrored, rtol=2e-3, atol=2e-3)
    # The zoom is another view: its maps differ from the frame's by a good part of their size.
    assert np.abs(maps[:, 2].astype(np.float32) - plain).mean() > 0.1 * np.abs(plain).mean()
    zoomed = feature_cache.view_frames(frames, 0.9, False)
    np.testing.assert_allclose(feature_cache.view_frames(frames, 0.9, True), zoomed[:, :, ::-1])


def test_cache_is_reused_and_a_cache_of_another_backbone_is_refused(faces, backbone, tmp_path):
    frames, _ = faces
    views = feature_cache.VIEWS[:2]
    key = feature_cache.cache_key("compact", backbone, frames, views, alignment={"eye_level": 0.38})
    cache_dir = str(tmp_path / "cache")
    first = feature_cache.load_or_compute(cache_dir, key, backbone, frames, views)
    assert sorted(os.listdir(cache_dir)) == ["key.json", "maps.npy"]
    # A second call reads the file: a backbone that cannot run proves nothing is recomputed.
    again = feature_cache.load_or_compute(cache_dir, key, None, frames, views)
    np.testing.assert_array_equal(again, first)

    other = build_backbone("compact", SIZE)
    other_key = feature_cache.cache_key("compact", other, frames, views, alignment={"eye_level": 0.38})
    with pytest.raises(ValueError, match=re.escape(f"{cache_dir}: feature cache made for another backbone, data or alignment: {{'weights_sha256': {{'cached': '{key['weights_sha256']}'")):
        feature_cache.load_or_compute(cache_dir, other_key, other, frames, views)
    realigned = dict(key, alignment={"eye_level": 0.4})
    with pytest.raises(ValueError, match=re.escape("{'alignment': {'cached': {'eye_level': 0.38}, 'wanted': {'eye_level': 0.4}}}")):
        feature_cache.load_or_compute(cache_dir, realigned, backbone, frames, views)


def test_maps_without_their_key_are_computed_again(faces, backbone, tmp_path):
    """A run killed between writing the maps and the key leaves a cache that is not used."""
    frames, _ = faces
    key = feature_cache.cache_key("compact", backbone, frames, feature_cache.VIEWS[:1])
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    np.save(cache_dir / "maps.npy", np.zeros((12, 1, 2, 2, 256), np.float16))
    maps = feature_cache.load_or_compute(str(cache_dir), key, backbone, frames, feature_cache.VIEWS[:1])
    assert np.abs(maps).max() > 0 and (cache_dir / "key.json").exists()


def test_the_head_gives_the_same_loss_from_maps_and_from_images(faces, backbone, tmp_path):
    frames, labels = faces
    config = ModelConfig(num_classes=7, num_frames=3, image_size=SIZE, spatial="sa", num_heads=2, penalty=0.5,
                         attention_units=8)
    keras.utils.set_random_seed(2)
    weights = str(tmp_path / "backbone.weights.h5")
    backbone.save_weights(weights)
    on_images = build_model(ModelConfig(**{**config.to_dict(), "backbone_weights": weights}))
    on_maps = build_model(config, backbone=feature_map_backbone(backbone.output_shape[1:]))
    copy_head_weights(on_maps, on_images)  # the heads start from different random values

    clips = frames.reshape(4, 3, SIZE, SIZE, 3)
    maps = feature_cache.compute_feature_maps(backbone, frames, feature_cache.VIEWS[:1])[:, 0].reshape(4, 3, 2, 2, 256)
    mask = np.ones((4, 3), np.float32)
    clip_labels = labels.reshape(4, 3)[:, 0]
    losses = []
    for model, inputs in ((on_images, clips.astype(np.float32)), (on_maps, maps.astype(np.float32))):
        outputs = model({"frames": inputs, "frame_mask": mask}, training=False)
        losses.append(float(classification_loss()(clip_labels, outputs["probabilities"])) + float(sum(model.losses)))
    assert losses[0] == pytest.approx(losses[1], rel=1e-3)
    assert on_maps.get_layer("backbone").count_params() == 0
