"""Keras's layer test harness, config round trips and .keras save/load of models using the layers."""

import keras
import numpy as np
import pytest
from keras.src.testing import TestCase

from keras_emotion.layers import (
    AttentionClusters,
    LSTMPooling,
    SpatialAttention,
    TemporalAveragePooling,
    TemporalMaxPooling,
    TemporalSoftmaxPooling,
)

FRAMES, REGIONS, FEATURES, CLASSES = 3, 4, 5, 3
REGION_SHAPE = (2, FRAMES, REGIONS, FEATURES)
SCORE_SHAPE = (2, FRAMES, CLASSES)


# The harness's training step feeds a generator, which makes Keras warn about `shuffle`.
@pytest.mark.filterwarnings("ignore:`shuffle=True` was passed")
class KerasLayerHarnessTest(TestCase):
    """keras.src.testing.TestCase.run_layer_test: build, symbolic/eager calls, serialisation,
    a training step and mixed precision."""

    def test_spatial_attention(self):
        self.run_layer_test(
            SpatialAttention,
            {"num_heads": 2, "units": 6, "penalty": 0.5},
            input_shape=REGION_SHAPE,
            expected_output_shape=(2, FRAMES, 2 * FEATURES),
            expected_num_trainable_weights=2,
            expected_num_losses=1,
            supports_masking=True,
        )

    def test_spatial_attention_returning_attention(self):
        self.run_layer_test(
            SpatialAttention,
            {"num_heads": 3, "units": 6, "penalty": 0.0, "return_attention": True},
            input_shape=REGION_SHAPE[:1] + REGION_SHAPE[2:],
            expected_output_shape=((2, 3 * FEATURES), (2, 3, REGIONS)),
            expected_num_losses=0,
        )

    def test_attention_clusters(self):
        self.run_layer_test(
            AttentionClusters,
            {"num_clusters": 2, "units": 6},
            input_shape=REGION_SHAPE,
            expected_output_shape=(2, FRAMES, 2 * FEATURES),
            expected_num_trainable_weights=4,
            expected_num_losses=0,
            supports_masking=True,
        )

    def test_temporal_poolings(self):
        for layer_class in (TemporalSoftmaxPooling, TemporalAveragePooling, TemporalMaxPooling):
            with self.subTest(layer_class.__name__):
                self.run_layer_test(
                    layer_class,
                    {},
                    input_shape=SCORE_SHAPE,
                    expected_output_shape=((2, CLASSES), (2, FRAMES)),
                    expected_num_trainable_weights=0,
                    supports_masking=True,
                    run_training_check=False,  # no weights to train
                )

    def test_lstm_pooling(self):
        self.run_layer_test(
            LSTMPooling,
            {"num_classes": CLASSES, "units": 4},
            input_shape=(2, FRAMES, FEATURES),
            expected_output_shape=((2, CLASSES), (2, FRAMES)),
            expected_num_trainable_weights=5,
            supports_masking=True,
        )


@pytest.mark.parametrize(
    "layer",
    [
        SpatialAttention(num_heads=3, units=8, penalty=0.25, return_attention=True),
        AttentionClusters(num_clusters=4, units=16, return_attention=True),
        TemporalSoftmaxPooling(),
        LSTMPooling(num_classes=7, units=32),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_config_round_trip(layer):
    config = layer.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer)
    assert restored.get_config() == config


def _video_model(spatial, temporal, classes=CLASSES):
    """regions (batch, F, L, D) + frame mask (batch, F) -> (p_c, p_f)."""
    regions = keras.Input((None, REGIONS, FEATURES), name="regions")
    mask = keras.Input((None,), dtype="bool", name="frame_mask")
    if isinstance(temporal, LSTMPooling):
        descriptors = spatial(regions, mask=mask)
    else:
        descriptors = keras.layers.Dense(classes)(spatial(regions, mask=mask))
    p_c, p_f = temporal(descriptors, mask=mask)
    return keras.Model([regions, mask], [p_c, p_f])


@pytest.mark.parametrize(
    "spatial, temporal",
    [
        (lambda: SpatialAttention(num_heads=2, units=6), TemporalSoftmaxPooling),
        (lambda: AttentionClusters(num_clusters=2, units=6), TemporalMaxPooling),
        (lambda: SpatialAttention(num_heads=1, units=6, penalty=0.0), TemporalAveragePooling),
        (lambda: AttentionClusters(num_clusters=3, units=6), lambda: LSTMPooling(CLASSES, units=4)),
    ],
    ids=["sa-tp", "shift-max", "sa1-avg", "shift-lstm"],
)
def test_model_saves_to_keras_file_and_loads_with_identical_outputs(tmp_path, spatial, temporal):
    model = _video_model(spatial(), temporal())
    rng = np.random.default_rng(0)
    inputs = [
        rng.normal(size=(3, 4, REGIONS, FEATURES)).astype("float32"),
        np.array([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], bool),  # the last clip is empty
    ]
    model.compile(optimizer="sgd", loss=["categorical_crossentropy", None])
    history = model.fit(inputs, np.eye(CLASSES, dtype="float32")[[0, 2, 1]], epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    expected = model(inputs)
    expected_losses = [float(loss) for loss in model.losses]
    path = tmp_path / "model.keras"

    model.save(path)
    restored = keras.saving.load_model(path)

    for got, want in zip(restored(inputs), expected):
        np.testing.assert_array_equal(got, want)
    assert [float(loss) for loss in restored.losses] == expected_losses
