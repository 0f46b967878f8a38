"""Temporal poolings: per-frame class scores (or descriptors) of a clip -> clip probabilities.

Every pooling takes a clip of F frames and an optional boolean frame mask (batch, F) and
returns two tensors:

    p_c: (batch, classes)  the clip's class probabilities,
    p_f: (batch, F)        how much each frame contributes (sums to 1 over valid frames).

Masked frames get p_f = 0 and do not influence p_c. A clip whose frames are all masked has
no evidence: all four poolings return the uniform p_c = 1 / classes (so a cross-entropy on it
stays finite and has no gradient) and p_f = 0 for it, never NaN.
"""

from __future__ import annotations

import keras
from keras import ops


def _frame_validity(frames, mask):
    """Boolean (batch, F) validity of the frames of `frames` (batch, F, ...); all valid if no mask."""
    if mask is None:
        return ops.ones(ops.shape(frames)[:2], dtype="bool")
    return ops.cast(mask, "bool")


def _masked_max(values, valid, axis):
    """Max of `values` over `axis` among entries where `valid` (broadcastable) is True.

    Returns 0 where no entry is valid. Kept dims (keepdims=True).
    """
    candidates = ops.where(valid, values, float("-inf"))
    maximum = ops.max(candidates, axis=axis, keepdims=True)
    return ops.where(ops.any(valid, axis=axis, keepdims=True), maximum, ops.zeros_like(maximum))


def _safe_divide(numerator, denominator):
    """numerator / denominator, where a zero denominator (only with a zero numerator) gives 0."""
    return numerator / ops.where(denominator > 0, denominator, ops.ones_like(denominator))


def _uniform_over_valid(valid, dtype):
    """p_f spread evenly over the valid frames: (batch, F) bool -> (batch, F) of `dtype`."""
    weights = ops.cast(valid, dtype)
    return _safe_divide(weights, ops.sum(weights, axis=1, keepdims=True))


class TemporalPooling(keras.layers.Layer):
    """Base of the temporal poolings: input checks, output shapes, mask consumption.

    Subclasses implement `call(inputs, mask=None) -> (p_c, p_f)`:

    Call args:
        inputs: per-frame class scores O, shape (batch, F, C) (frame descriptors of shape
            (batch, F, D) for `LSTMPooling`).
        mask: optional boolean frame mask, shape (batch, F).

    Returns:
        (p_c of shape (batch, C), p_f of shape (batch, F)).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects per-frame inputs of shape (batch, frames, "
                f"classes); got shape {tuple(input_shape)}"
            )

    def _num_outputs(self, input_shape):
        """Size of p_c for inputs of `input_shape`."""
        return input_shape[-1]

    def compute_output_shape(self, input_shape):
        batch, frames = input_shape[0], input_shape[1]
        return (batch, self._num_outputs(input_shape)), (batch, frames)

    def compute_mask(self, inputs, mask=None):
        # The frame mask is consumed here: masked frames already have p_f = 0.
        return None, None

    @staticmethod
    def _uniform_for_empty_clips(class_probabilities, valid):
        """Replaces p_c (batch, classes) by 1 / classes for clips without a valid frame."""
        uniform = ops.ones_like(class_probabilities) / ops.shape(class_probabilities)[-1]
        return ops.where(ops.any(valid, axis=1, keepdims=True), class_probabilities, uniform)


@keras.saving.register_keras_serializable(package="keras_emotion")
class TemporalSoftmaxPooling(TemporalPooling):
    """Temporal softmax pooling: one softmax over all frames x classes of a clip.

    With per-frame class scores O (F x C):

        p(c, f) = exp(O[f, c]) / sum_{f', c'} exp(O[f', c'])      (valid frames only)
        p_c = sum_f p(c, f),      p_f = sum_c p(c, f)

    The largest valid score is subtracted before the exponential, so huge scores (1e4) are
    stable. When all frames carry the same scores this is the average of the per-frame
    class probabilities; as one score grows it tends to max pooling on that frame.
    """

    def call(self, inputs, mask=None):
        valid = _frame_validity(inputs, mask)
        valid_entries = valid[:, :, None]  # (batch, F, 1)
        shift = ops.stop_gradient(_masked_max(inputs, valid_entries, axis=(1, 2)))
        shifted = ops.where(valid_entries, inputs - shift, ops.zeros_like(inputs))
        exponentials = ops.exp(shifted) * ops.cast(valid_entries, inputs.dtype)
        joint = _safe_divide(exponentials, ops.sum(exponentials, axis=(1, 2), keepdims=True))
        return self._uniform_for_empty_clips(ops.sum(joint, axis=1), valid), ops.sum(joint, axis=2)


@keras.saving.register_keras_serializable(package="keras_emotion")
class TemporalAveragePooling(TemporalPooling):
    """Average pooling of per-frame scores (paper eq. 7).

        p_c = softmax_c(mean over valid f of O[f, c]),   p_f = 1 / (number of valid frames)
    """

    def call(self, inputs, mask=None):
        valid = _frame_validity(inputs, mask)
        frame_weights = _uniform_over_valid(valid, inputs.dtype)  # (batch, F)
        mean_scores = ops.sum(
            ops.where(valid[:, :, None], inputs, ops.zeros_like(inputs))
            * frame_weights[:, :, None],
            axis=1,
        )
        return self._uniform_for_empty_clips(ops.softmax(mean_scores), valid), frame_weights


@keras.saving.register_keras_serializable(package="keras_emotion")
class TemporalMaxPooling(TemporalPooling):
    """Max pooling of per-frame scores.

        p_c = softmax_c(max over valid f of O[f, c])
        p_f = (number of classes c whose max is attained at frame f) / C

    p_f is the share of the per-class maxima that frame f provides; a tie between frames
    goes to the earliest one, so p_f sums to 1.
    """

    def call(self, inputs, mask=None):
        valid = _frame_validity(inputs, mask)
        valid_entries = valid[:, :, None]
        max_scores = ops.squeeze(_masked_max(inputs, valid_entries, axis=1), axis=1)  # (batch, C)
        candidates = ops.where(valid_entries, inputs, float("-inf"))
        best_frame = ops.argmax(candidates, axis=1)  # (batch, C)
        frame_index = ops.arange(ops.shape(inputs)[1], dtype=best_frame.dtype)
        is_best = ops.cast(frame_index[None, :, None] == best_frame[:, None, :], inputs.dtype)
        frame_share = ops.mean(is_best, axis=2) * ops.cast(valid, inputs.dtype)
        return self._uniform_for_empty_clips(ops.softmax(max_scores), valid), frame_share


@keras.saving.register_keras_serializable(package="keras_emotion")
class LSTMPooling(TemporalPooling):
    """VGG+LSTM baseline: an LSTM reads the frame descriptors, a Dense layer classifies.

        h = LSTM state after the last valid frame (masked frames are skipped)
        p_c = softmax(W h + b),     p_f = 1 / (number of valid frames)

    Args:
        num_classes: C, the number of classes.
        units: hidden size of the LSTM.
    """

    def __init__(self, num_classes, units=128, **kwargs):
        super().__init__(**kwargs)
        if int(num_classes) < 2 or int(units) < 1:
            raise ValueError(
                f"LSTMPooling needs num_classes >= 2 and units >= 1; got num_classes="
                f"{num_classes}, units={units}"
            )
        self.num_classes = int(num_classes)
        self.units = int(units)
        # cuDNN's kernel asserts at run time on masks that are not right-padded or that mask
        # a whole clip; this layer accepts any frame mask, so it always uses the generic loop.
        self.lstm = keras.layers.LSTM(
            self.units, use_cudnn=False, dtype=self.dtype_policy, name="lstm"
        )
        self.classifier = keras.layers.Dense(
            self.num_classes, dtype=self.dtype_policy, name="classifier"
        )

    def build(self, input_shape):
        super().build(input_shape)
        self.lstm.build(input_shape)
        self.classifier.build((input_shape[0], self.units))

    def _num_outputs(self, input_shape):
        return self.num_classes

    def call(self, inputs, mask=None):
        valid = _frame_validity(inputs, mask)
        last_state = self.lstm(inputs, mask=valid)
        class_probabilities = self._uniform_for_empty_clips(
            ops.softmax(self.classifier(last_state)), valid
        )
        return class_probabilities, _uniform_over_valid(valid, class_probabilities.dtype)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "units": self.units}
