"""Attention clusters with the shifting operation (SHIFT), Long et al. 2018."""

from __future__ import annotations

import keras
from keras import ops

from keras_emotion.layers.spatial_attention import RegionAttention

# Floor of the squared norm of a shifted vector, so a zero vector divides without NaN.
_MIN_SQUARED_NORM = 1e-12


@keras.saving.register_keras_serializable(package="keras_emotion")
class AttentionClusters(RegionAttention):
    """N independent attention units over face regions, each shifted and normalised.

    For each frame with regions R (L x D), every cluster k has its own scoring MLP,
    W_k (U x D) and w_k (U), and learnable scalars alpha_k (initially 1), beta_k
    (initially 0):

        a_k = softmax over L of w_k^T tanh(W_k R^T)          a_k: L
        v_k = a_k R                                          v_k: D
        s_k = (alpha_k v_k + beta_k) / (sqrt(N) ||alpha_k v_k + beta_k||_2)
        output = concat(s_1, ..., s_N)                       N * D

    The shift (alpha_k, beta_k) and the L2 normalisation keep the clusters diverse without
    a penalty, so this layer adds no loss.

    Weights: `kernels` (N, D, U) holds W_k^T, `vectors` (N, U) holds w_k,
    `alpha` (N,), `beta` (N,).

    Args:
        num_clusters: N, the number of attention units.
        units: U, the hidden size of every scoring MLP.
        return_attention: if True, `call` returns (output, A) with A stacking the a_k.

    Call args:
        inputs: R, shape (batch, frames, L, D) or (batch, L, D).
        mask: optional boolean frame mask, (batch, frames) or (batch,). Frames are
            processed independently, so the mask is only passed through to the outputs.

    Returns:
        Output of shape (batch, frames, N * D) (or (batch, N * D)); with
        `return_attention`, also A of shape (batch, frames, N, L) (or (batch, N, L)).
    """

    def __init__(self, num_clusters=2, units=64, return_attention=False, **kwargs):
        super().__init__(num_clusters, units, return_attention, **kwargs)
        self.num_clusters = int(num_clusters)

    def build(self, input_shape):
        feature_dim = self._feature_dim(input_shape)
        self.kernels = self.add_weight(
            name="kernels",
            shape=(self.num_clusters, feature_dim, self.units),
            initializer="glorot_uniform",
        )
        self.vectors = self.add_weight(
            name="vectors", shape=(self.num_clusters, self.units), initializer="glorot_uniform"
        )
        self.alpha = self.add_weight(name="alpha", shape=(self.num_clusters,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(self.num_clusters,), initializer="zeros")

    def call(self, inputs, mask=None):
        hidden = ops.tanh(ops.einsum("...ld,kdu->...klu", inputs, self.kernels))  # (..., N, L, U)
        scores = ops.einsum("...klu,ku->...kl", hidden, self.vectors)  # (..., N, L)
        attention = ops.softmax(scores, axis=-1)
        attended = ops.matmul(attention, inputs)  # (..., N, D)
        shifted = self.alpha[:, None] * attended + self.beta[:, None]
        squared_norm = ops.sum(ops.square(shifted), axis=-1, keepdims=True)
        normalised = shifted * ops.rsqrt(ops.maximum(squared_norm, _MIN_SQUARED_NORM))
        normalised = normalised / ops.sqrt(ops.cast(self.num_clusters, normalised.dtype))
        outputs = self._concat_maps(normalised)
        if self.return_attention:
            return outputs, attention
        return outputs

    def get_config(self):
        return {**super().get_config(), "num_clusters": self.num_clusters}
