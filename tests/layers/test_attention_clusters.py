import numpy as np
import pytest
import tensorflow as tf

from keras_emotion.layers import AttentionClusters

from layer_reference import attention_cluster

BATCH, FRAMES, REGIONS, FEATURES, UNITS = 2, 3, 5, 4, 6


def _random_layer(rng, num_clusters, **kwargs):
    layer = AttentionClusters(num_clusters=num_clusters, units=UNITS, **kwargs)
    layer.build((None, FRAMES, REGIONS, FEATURES))
    weights = [
        rng.normal(size=(num_clusters, FEATURES, UNITS)).astype("float32"),
        rng.normal(size=(num_clusters, UNITS)).astype("float32"),
        rng.uniform(0.5, 2.0, size=num_clusters).astype("float32"),
        rng.normal(size=num_clusters).astype("float32"),
    ]
    layer.set_weights(weights)
    return layer, weights


@pytest.mark.parametrize("num_clusters", [1, 3])
def test_matches_numpy_reference(num_clusters):
    rng = np.random.default_rng(num_clusters)
    layer, weights = _random_layer(rng, num_clusters, return_attention=True)
    regions = rng.normal(size=(BATCH, FRAMES, REGIONS, FEATURES)).astype("float32")

    outputs, attention = layer(regions, mask=np.array([[1, 1, 0], [0, 0, 0]], bool))

    assert outputs.shape == (BATCH, FRAMES, num_clusters * FEATURES)
    assert attention.shape == (BATCH, FRAMES, num_clusters, REGIONS)
    for b in range(BATCH):
        for f in range(FRAMES):
            reference, maps = attention_cluster(regions[b, f], *weights)
            np.testing.assert_allclose(outputs[b, f], reference, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(attention[b, f], maps, rtol=1e-5, atol=1e-6)
    assert layer.losses == []


def test_rank3_input_and_unit_norm_of_concatenation():
    rng = np.random.default_rng(4)
    layer, weights = _random_layer(rng, 2)
    regions = rng.normal(size=(BATCH, REGIONS, FEATURES)).astype("float32")

    outputs = np.asarray(layer(regions))

    np.testing.assert_allclose(
        outputs, np.stack([attention_cluster(r, *weights)[0] for r in regions]), rtol=1e-5, atol=1e-5
    )
    # Each of the N shifted vectors has norm 1/sqrt(N): the concatenation has norm 1.
    np.testing.assert_allclose(np.linalg.norm(outputs, axis=-1), 1.0, rtol=1e-5)


def test_each_cluster_has_its_own_scoring_weights():
    rng = np.random.default_rng(5)
    layer, weights = _random_layer(rng, 2)
    regions = rng.normal(size=(BATCH, FRAMES, REGIONS, FEATURES)).astype("float32")
    before = np.asarray(layer(regions))
    weights[0][1] += 1.0  # change only cluster 1's W_k
    layer.set_weights(weights)
    after = np.asarray(layer(regions))
    np.testing.assert_array_equal(after[..., :FEATURES], before[..., :FEATURES])
    assert np.abs(after[..., FEATURES:] - before[..., FEATURES:]).max() > 1e-3


def test_gradients_are_finite_for_zero_and_huge_inputs():
    rng = np.random.default_rng(6)
    layer, _ = _random_layer(rng, 2)
    layer.set_weights([*layer.get_weights()[:3], np.zeros(2, "float32")])  # beta = 0
    regions = np.zeros((BATCH, FRAMES, REGIONS, FEATURES), "float32")
    regions[0] = 1e4 * rng.normal(size=(FRAMES, REGIONS, FEATURES))
    regions = tf.constant(regions)
    with tf.GradientTape() as tape:
        tape.watch(regions)
        outputs = layer(regions)
        objective = tf.reduce_sum(outputs * rng.normal(size=outputs.shape))
    for gradient in tape.gradient(objective, [regions, *layer.trainable_variables]):
        assert np.all(np.isfinite(gradient))
    assert np.all(np.isfinite(outputs))


def test_mask_is_passed_through_and_bad_input_reported():
    mask = tf.constant([[True, False]])
    assert AttentionClusters(return_attention=True).compute_mask(None, mask) == (mask, mask)
    with pytest.raises(ValueError, match="number of attention maps must be >= 1, got 0"):
        AttentionClusters(num_clusters=0)
    with pytest.raises(ValueError, match=r"needs a known feature size D .*\(2, 3, None\)"):
        AttentionClusters().build((2, 3, None))
