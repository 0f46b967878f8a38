import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_emotion.layers import (
    LSTMPooling,
    TemporalAveragePooling,
    TemporalMaxPooling,
    TemporalSoftmaxPooling,
)

import layer_reference

BATCH, FRAMES, CLASSES = 4, 5, 3
# Clip 0 fully valid, clip 1 right-padded, clip 2 with a hole, clip 3 fully masked.
MASK = np.array(
    [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 1, 1, 0], [0, 0, 0, 0, 0]], bool
)
SCORE_POOLINGS = [
    (TemporalSoftmaxPooling, layer_reference.temporal_softmax_pooling),
    (TemporalAveragePooling, layer_reference.temporal_average_pooling),
    (TemporalMaxPooling, layer_reference.temporal_max_pooling),
]


def _scores(seed, scale=3.0):
    return (scale * np.random.default_rng(seed).normal(size=(BATCH, FRAMES, CLASSES))).astype("float32")


@pytest.mark.parametrize("mask", [None, MASK], ids=["unmasked", "masked"])
@pytest.mark.parametrize("layer_class, reference", SCORE_POOLINGS)
def test_score_poolings_match_numpy_reference(layer_class, reference, mask):
    scores = _scores(0)
    p_c, p_f = layer_class()(scores, mask=mask)
    expected_c, expected_f = reference(scores, mask)
    np.testing.assert_allclose(p_c, expected_c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p_f, expected_f, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer_class, reference", SCORE_POOLINGS)
def test_masked_frames_give_exact_zeros_and_ignore_garbage(layer_class, reference):
    scores = _scores(1)
    clean_c, clean_f = layer_class()(scores, mask=MASK)
    scores[~MASK] = np.nan
    p_c, p_f = layer_class()(scores, mask=MASK)
    np.testing.assert_array_equal(p_c, clean_c)
    np.testing.assert_array_equal(p_f, clean_f)
    assert np.all(np.asarray(p_f)[~MASK] == 0.0)
    np.testing.assert_allclose(p_c[3], np.full(CLASSES, 1.0 / CLASSES))  # clip without a valid frame


def test_lstm_pooling_matches_numpy_lstm_over_valid_frames():
    rng = np.random.default_rng(2)
    features, units = 6, 4
    layer = LSTMPooling(num_classes=CLASSES, units=units)
    layer.build((None, FRAMES, features))
    weights = [
        rng.normal(size=(features, 4 * units)),
        rng.normal(size=(units, 4 * units)),
        rng.normal(size=4 * units),
        rng.normal(size=(units, CLASSES)),
        rng.normal(size=CLASSES),
    ]
    layer.set_weights([w.astype("float32") for w in weights])
    descriptors = rng.normal(size=(BATCH, FRAMES, features)).astype("float32")

    p_c, p_f = layer(descriptors, mask=MASK)

    expected_c, expected_f = layer_reference.lstm_pooling(descriptors, MASK, *weights)
    np.testing.assert_allclose(p_c, expected_c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p_f, expected_f, rtol=1e-6)


def _cross_entropy(class_probabilities):
    """Keras's categorical cross-entropy of p_c against class 0, summed over the batch."""
    labels = tf.one_hot(tf.zeros(BATCH, tf.int32), CLASSES)
    loss = tf.reduce_sum(keras.losses.categorical_crossentropy(labels, class_probabilities))
    assert np.isfinite(loss)
    return loss


@pytest.mark.parametrize("layer_class", [TemporalSoftmaxPooling, TemporalAveragePooling, TemporalMaxPooling])
def test_gradients_finite_for_huge_scores_and_empty_clips(layer_class):
    scores = tf.constant(1e4 * _scores(3, scale=1.0))
    with tf.GradientTape() as tape:
        tape.watch(scores)
        p_c, p_f = layer_class()(scores, mask=tf.constant(MASK))
        objective = _cross_entropy(p_c) + tf.reduce_sum(p_f * p_f)
    gradient = np.asarray(tape.gradient(objective, scores))
    assert np.all(np.isfinite(p_c)) and np.all(np.isfinite(p_f))
    assert np.all(np.isfinite(gradient))
    assert np.all(gradient[~MASK] == 0.0)


def test_lstm_pooling_gradients_finite_with_empty_clip():
    layer = LSTMPooling(num_classes=CLASSES, units=4)
    descriptors = tf.constant(_scores(4))
    with tf.GradientTape() as tape:
        tape.watch(descriptors)
        p_c, _ = layer(descriptors, mask=tf.constant(MASK))
        objective = _cross_entropy(p_c)
    for gradient in tape.gradient(objective, [descriptors, *layer.trainable_variables]):
        assert np.all(np.isfinite(gradient))


def test_softmax_pooling_is_average_of_frame_probabilities_when_frames_agree():
    frame_scores = np.array([2.0, -1.0, 0.5], "float32")
    scores = np.tile(frame_scores, (1, FRAMES, 1))
    p_c, p_f = TemporalSoftmaxPooling()(scores)
    np.testing.assert_allclose(p_c[0], layer_reference.softmax(frame_scores), rtol=1e-6)
    np.testing.assert_allclose(p_f[0], np.full(FRAMES, 1.0 / FRAMES), rtol=1e-6)
    average_c, _ = TemporalAveragePooling()(scores)
    np.testing.assert_allclose(p_c, average_c, rtol=1e-6)


def test_softmax_pooling_tends_to_max_as_one_score_grows():
    base = _scores(5, scale=1.0)[:1]
    best_frame, best_class = 2, 1
    distances = []
    for boost in (2.0, 8.0, 32.0):
        scores = base.copy()
        scores[0, best_frame, best_class] += boost
        p_c, p_f = TemporalSoftmaxPooling()(scores)
        distances.append(abs(1.0 - float(p_c[0, best_class])) + abs(1.0 - float(p_f[0, best_frame])))
        max_c, max_f = TemporalMaxPooling()(scores)
        assert int(np.argmax(max_f[0])) == best_frame  # the max-score frame
    assert distances[0] > distances[1] > distances[2]
    assert distances[2] < 1e-6


def test_huge_scores_stay_stable():
    scores = np.array([[[1e4, 0.0], [1e4 - 1.0, 5e3]]], "float32")
    p_c, p_f = TemporalSoftmaxPooling()(scores)
    e = np.exp(-1.0)
    np.testing.assert_allclose(p_c, [[1.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(p_f, [[1 / (1 + e), e / (1 + e)]], rtol=1e-6)


def test_max_pooling_ties_go_to_the_earliest_frame():
    scores = np.array([[[1.0, 3.0], [1.0, 0.0], [0.0, 3.0]]], "float32")
    _, p_f = TemporalMaxPooling()(scores)
    np.testing.assert_allclose(p_f, [[1.0, 0.0, 0.0]])


def test_output_shapes_mask_consumption_and_errors():
    pooling = TemporalSoftmaxPooling()
    assert pooling.compute_output_shape((None, 16, 7)) == ((None, 7), (None, 16))
    assert LSTMPooling(7).compute_output_shape((2, 16, 32)) == ((2, 7), (2, 16))
    assert pooling.compute_mask(None, tf.constant(MASK)) == (None, None)
    with pytest.raises(ValueError, match=r"TemporalMaxPooling expects .*got shape \(2, 3\)"):
        TemporalMaxPooling()(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match="num_classes >= 2 .*num_classes=1"):
        LSTMPooling(num_classes=1)
