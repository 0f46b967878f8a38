import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_emotion.layers import SpatialAttention, attention_penalty

from layer_reference import structured_self_attention

BATCH, FRAMES, REGIONS, FEATURES, UNITS = 3, 4, 6, 5, 7


def _random_layer(rng, num_heads=2, penalty=1.0, **kwargs):
    layer = SpatialAttention(num_heads=num_heads, units=UNITS, penalty=penalty, **kwargs)
    layer.build((None, FRAMES, REGIONS, FEATURES))
    w_s1 = rng.normal(size=(FEATURES, UNITS)).astype("float32")
    w_s2 = rng.normal(size=(UNITS, num_heads)).astype("float32")
    layer.set_weights([w_s1, w_s2])
    return layer, w_s1, w_s2


@pytest.mark.parametrize("num_heads", [1, 3])
def test_matches_numpy_reference_with_frame_mask(num_heads):
    rng = np.random.default_rng(num_heads)
    layer, w_s1, w_s2 = _random_layer(rng, num_heads, penalty=0.5, return_attention=True)
    regions = rng.normal(size=(BATCH, FRAMES, REGIONS, FEATURES)).astype("float32")
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], bool)

    vectors, attention = layer(regions, mask=mask)

    assert vectors.shape == (BATCH, FRAMES, num_heads * FEATURES)
    assert attention.shape == (BATCH, FRAMES, num_heads, REGIONS)
    penalties = []
    for b in range(BATCH):
        for f in range(FRAMES):
            v, a, p = structured_self_attention(regions[b, f], w_s1, w_s2)
            np.testing.assert_allclose(vectors[b, f], v, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(attention[b, f], a, rtol=1e-5, atol=1e-6)
            if mask[b, f]:
                penalties.append(p)
    assert len(layer.losses) == 1
    np.testing.assert_allclose(layer.losses[0], 0.5 * np.mean(penalties), rtol=1e-5)


@pytest.mark.parametrize("policy, compute_dtype, rtol", [("mixed_float16", "float16", 1e-2), ("mixed_bfloat16", "bfloat16", 5e-2)])
def test_penalty_is_float32_under_mixed_precision(global_dtype_policy, policy, compute_dtype, rtol):
    global_dtype_policy(policy)
    rng = np.random.default_rng(4)
    layer, w_s1, w_s2 = _random_layer(rng, num_heads=3, penalty=0.5)
    regions = rng.normal(size=(BATCH, FRAMES, REGIONS, FEATURES)).astype("float32")
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 1, 0, 1]], bool)

    vectors = layer(regions, mask=mask)

    assert keras.backend.standardize_dtype(vectors.dtype) == compute_dtype
    (loss,) = layer.losses
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    penalties = [structured_self_attention(regions[b, f], w_s1, w_s2)[2] for b, f in zip(*np.nonzero(mask))]
    np.testing.assert_allclose(float(loss), 0.5 * np.mean(penalties), rtol=rtol)


def test_rank3_input_and_unmasked_penalty_mean():
    rng = np.random.default_rng(7)
    layer, w_s1, w_s2 = _random_layer(rng, num_heads=2, penalty=2.0)
    regions = rng.normal(size=(BATCH, REGIONS, FEATURES)).astype("float32")

    vectors = layer(regions)

    references = [structured_self_attention(r, w_s1, w_s2) for r in regions]
    np.testing.assert_allclose(vectors, np.stack([v for v, _, _ in references]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        layer.losses[0], 2.0 * np.mean([p for _, _, p in references]), rtol=1e-5
    )


def test_losses_are_replaced_not_accumulated_across_calls():
    rng = np.random.default_rng(1)
    layer, _, _ = _random_layer(rng)
    first = rng.normal(size=(BATCH, FRAMES, REGIONS, FEATURES)).astype("float32")
    layer(first)
    layer(first * 3.0)
    assert len(layer.losses) == 1


def test_zero_penalty_adds_no_loss():
    rng = np.random.default_rng(2)
    layer, _, _ = _random_layer(rng, penalty=0.0)
    layer(rng.normal(size=(BATCH, FRAMES, REGIONS, FEATURES)).astype("float32"))
    assert layer.losses == []


def _one_hot_attention_setup(second_head_target):
    """Regions and weights making head 0 attend region 0 and head 1 `second_head_target`.

    With W_s1 = I, tanh(R) is (1, -1) on region 0, (-1, 1) on region 1 and 0 elsewhere;
    W_s2 columns (+50, -50) and (-50, +50) give those regions a score 100 above the rest.
    """
    regions = np.zeros((1, 4, 2), "float32")
    regions[0, 0] = [10.0, -10.0]
    regions[0, 1] = [-10.0, 10.0]
    head_for_region = {0: [50.0, -50.0], 1: [-50.0, 50.0]}
    w_s2 = np.array([head_for_region[0], head_for_region[second_head_target]], "float32").T
    layer = SpatialAttention(num_heads=2, units=2, penalty=3.0, return_attention=True)
    layer.build((None, 4, 2))
    layer.set_weights([np.eye(2, dtype="float32"), w_s2])
    return layer, regions


def test_penalty_vanishes_for_one_hot_attention_at_distinct_regions():
    layer, regions = _one_hot_attention_setup(second_head_target=1)
    _, attention = layer(regions)
    np.testing.assert_allclose(attention[0], [[1, 0, 0, 0], [0, 1, 0, 0]], atol=1e-6)
    assert float(layer.losses[0]) < 1e-6


def test_penalty_is_two_when_both_heads_attend_the_same_region():
    layer, regions = _one_hot_attention_setup(second_head_target=0)
    layer(regions)
    # A A^T = all ones (2 x 2): ||A A^T - I||_F^2 = 2, times penalty 3.
    np.testing.assert_allclose(layer.losses[0], 6.0, rtol=1e-5)


def test_attention_penalty_helper():
    one_hot = np.eye(3, 5, dtype="float32")[None]
    assert float(attention_penalty(one_hot)[0]) == 0.0
    uniform = np.full((1, 2, 4), 0.25, "float32")
    # A A^T = 0.25 everywhere: diagonal (0.25 - 1)^2 twice, off-diagonal 0.25^2 twice.
    np.testing.assert_allclose(attention_penalty(uniform), [2 * 0.75**2 + 2 * 0.25**2])


def test_gradients_are_finite():
    rng = np.random.default_rng(3)
    layer, _, _ = _random_layer(rng)
    regions = tf.constant(100.0 * rng.normal(size=(BATCH, FRAMES, REGIONS, FEATURES)), tf.float32)
    mask = tf.constant([[True, True, False, False], [False] * 4, [True] * 4])
    with tf.GradientTape() as tape:
        tape.watch(regions)
        objective = tf.reduce_sum(layer(regions, mask=mask)) + tf.add_n(layer.losses)
    gradients = tape.gradient(objective, [regions, *layer.trainable_variables])
    for gradient in gradients:
        assert np.all(np.isfinite(gradient))
    assert np.any(np.asarray(gradients[1]) != 0)


def test_mask_is_passed_through():
    layer = SpatialAttention(return_attention=True)
    mask = tf.constant([[True, False]])
    assert layer.compute_mask(None, mask) == (mask, mask)
    assert SpatialAttention().compute_mask(None, mask) is mask


def test_bad_arguments_and_shapes_are_reported():
    with pytest.raises(ValueError, match="number of attention maps must be >= 1, got 0"):
        SpatialAttention(num_heads=0)
    with pytest.raises(ValueError, match="penalty must be >= 0, got -1"):
        SpatialAttention(penalty=-1.0)
    with pytest.raises(ValueError, match=r"expects regions of shape .*got shape \(2, 5\)"):
        SpatialAttention()(np.zeros((2, 5), "float32"))
