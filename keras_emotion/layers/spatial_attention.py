"""Multi-head structured self-attention over the regions of a face feature map.

The backbone's last convolutional map, flattened, gives each frame a set of L regions
R (L x D). Following Lin et al. 2017 ("A Structured Self-Attentive Sentence Embedding"),
used by Aminbeidokhti et al. 2019 for faces:

    A = softmax_L(W_s2^T tanh(W_s1^T R^T))    A: N x L   (one attention map per head)
    v = flatten(A R)                          v: N * D
    P = ||A A^T - I||_F^2                     penalty that pushes heads to distinct regions

This module also holds `RegionAttention`, the base that `SpatialAttention` and
`AttentionClusters` share (input checks, output shapes, frame-mask pass-through).
"""

from __future__ import annotations

import keras
from keras import ops


def attention_penalty(attention):
    """Redundancy penalty of attention maps, ||A A^T - I||_F^2.

    Args:
        attention: A, shape (..., N, L); each row sums to 1.

    Returns:
        Shape (...): the squared Frobenius norm of A A^T - I per attention matrix;
        0 exactly when the N rows are one-hot at N distinct regions.
    """
    num_heads = ops.shape(attention)[-2]
    gram = ops.matmul(attention, ops.swapaxes(attention, -1, -2))
    residual = gram - ops.eye(num_heads, dtype=attention.dtype)
    return ops.sum(ops.square(residual), axis=(-2, -1))


class RegionAttention(keras.layers.Layer):
    """Base of the layers that pool L regions of every frame into N attended vectors.

    Subclasses implement `call`. Inputs are regions R of shape (batch, frames, L, D) or
    (batch, L, D); an optional frame mask of shape (batch, frames) (or (batch,)) is passed
    through unchanged to the outputs, for the temporal pooling downstream.
    Outputs are v of shape (batch, frames, N * D) (or (batch, N * D)) and, with
    `return_attention=True`, also the attention A of shape (batch, frames, N, L)
    (or (batch, N, L)).
    """

    def __init__(self, num_maps, units, return_attention, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("number of attention maps", num_maps), ("units", units)):
            if int(value) < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be >= 1, got {value}")
        self._num_maps = int(num_maps)
        self.units = int(units)
        self.return_attention = bool(return_attention)
        self.supports_masking = True

    def _feature_dim(self, input_shape):
        """Checks the regions' shape and returns D."""
        if len(input_shape) not in (3, 4):
            raise ValueError(
                f"{type(self).__name__} expects regions of shape (batch, frames, L, D) or "
                f"(batch, L, D); got shape {tuple(input_shape)}"
            )
        if input_shape[-1] is None:
            raise ValueError(
                f"{type(self).__name__} needs a known feature size D (last axis); "
                f"got shape {tuple(input_shape)}"
            )
        return int(input_shape[-1])

    @staticmethod
    def _concat_maps(per_map):
        """Concatenates the N per-map vectors: (..., N, D) -> (..., N * D)."""
        *leading, num_maps, feature_dim = ops.shape(per_map)
        return ops.reshape(per_map, (*leading, num_maps * feature_dim))

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        *leading, num_regions, feature_dim = input_shape
        vectors_shape = (*leading, None if feature_dim is None else self._num_maps * feature_dim)
        if self.return_attention:
            return vectors_shape, (*leading, self._num_maps, num_regions)
        return vectors_shape

    def compute_mask(self, inputs, mask=None):
        if self.return_attention:
            return mask, mask
        return mask

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "return_attention": self.return_attention,
        }


@keras.saving.register_keras_serializable(package="keras_emotion")
class SpatialAttention(RegionAttention):
    """Multi-head structured self-attention (Lin et al. 2017) over face regions.

    For each frame with regions R (L x D), with weights W_s1 (D x U) and W_s2 (U x N),
    no biases:

        S = tanh(R W_s1) W_s2                    S: L x N
        A = softmax over L of S^T                A: N x L
        v = flatten(A R)                         v: N * D
        P = ||A A^T - I||_F^2

    `penalty * mean(P)` over the batch and the valid frames is added with `add_loss`, in
    float32 also under a mixed-precision policy (nothing is added when `penalty` is 0; masked
    frames are left out of the mean, and a batch without a valid frame contributes 0).

    Args:
        num_heads: N, the number of attention maps.
        units: U, the hidden size of the scoring MLP.
        penalty: coefficient of the penalty P (>= 0).
        return_attention: if True, `call` returns (v, A).

    Call args:
        inputs: R, shape (batch, frames, L, D) or (batch, L, D).
        mask: optional boolean frame mask, (batch, frames) or (batch,); passed through.

    Returns:
        v of shape (batch, frames, N * D) (or (batch, N * D)); with `return_attention`,
        (v, A) with A of shape (batch, frames, N, L) (or (batch, N, L)).
    """

    def __init__(self, num_heads=2, units=64, penalty=1.0, return_attention=False, **kwargs):
        super().__init__(num_heads, units, return_attention, **kwargs)
        if penalty < 0:
            raise ValueError(f"SpatialAttention: penalty must be >= 0, got {penalty}")
        self.num_heads = int(num_heads)
        self.penalty = float(penalty)

    def build(self, input_shape):
        feature_dim = self._feature_dim(input_shape)
        self.w_s1 = self.add_weight(
            name="w_s1", shape=(feature_dim, self.units), initializer="glorot_uniform"
        )
        self.w_s2 = self.add_weight(
            name="w_s2", shape=(self.units, self.num_heads), initializer="glorot_uniform"
        )

    def call(self, inputs, mask=None):
        scores = ops.matmul(ops.tanh(ops.matmul(inputs, self.w_s1)), self.w_s2)  # (..., L, N)
        attention = ops.softmax(ops.swapaxes(scores, -1, -2), axis=-1)  # (..., N, L)
        attended = ops.matmul(attention, inputs)  # (..., N, D)
        vectors = self._concat_maps(attended)
        if self.penalty > 0:
            # In float32 whatever the compute dtype: Keras adds it to the float32 loss.
            per_frame = attention_penalty(ops.cast(attention, "float32"))
            self.add_loss(self.penalty * self._mean_over_valid_frames(per_frame, mask))
        if self.return_attention:
            return vectors, attention
        return vectors

    @staticmethod
    def _mean_over_valid_frames(per_frame, mask):
        """Mean of `per_frame` (batch, frames) or (batch,) over the entries the mask keeps."""
        if mask is None:
            return ops.mean(per_frame)
        weights = ops.cast(mask, per_frame.dtype)
        count = ops.sum(weights)
        return ops.sum(per_frame * weights) / ops.maximum(count, ops.ones_like(count))

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "penalty": self.penalty}
