"""NumPy references of the paper's equations, written clip by clip from the formulas.

They share no code with keras_emotion.layers: loops over clips and frames, float64.
"""

import numpy as np


def softmax(x, axis=-1):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def structured_self_attention(regions, w_s1, w_s2):
    """One frame: R (L, D), W_s1 (D, U), W_s2 (U, N) -> v (N*D,), A (N, L), P (scalar)."""
    attention = softmax(w_s2.T @ np.tanh(w_s1.T @ regions.T), axis=1)  # (N, L)
    vector = (attention @ regions).reshape(-1)
    residual = attention @ attention.T - np.eye(attention.shape[0])
    return vector, attention, np.sum(residual**2)


def attention_cluster(regions, kernels, vectors, alpha, beta):
    """One frame: R (L, D), W_k^T stacked (N, D, U), w_k (N, U), alpha/beta (N,) -> (N*D,), (N, L)."""
    num_clusters = kernels.shape[0]
    outputs, maps = [], []
    for k in range(num_clusters):
        a_k = softmax(vectors[k] @ np.tanh(kernels[k].T @ regions.T))  # (L,)
        shifted = alpha[k] * (a_k @ regions) + beta[k]
        outputs.append(shifted / (np.sqrt(num_clusters) * np.linalg.norm(shifted)))
        maps.append(a_k)
    return np.concatenate(outputs), np.stack(maps)


def _per_clip(scores, mask, num_classes, pool):
    """Applies pool(valid_scores (V, C)) -> (p_c, p_f over valid) to each clip.

    A clip without a valid frame gets the uniform p_c and p_f = 0.
    """
    batch, frames = scores.shape[:2]
    mask = np.ones((batch, frames), bool) if mask is None else np.asarray(mask, bool)
    p_c = np.full((batch, num_classes), 1.0 / num_classes)
    p_f = np.zeros((batch, frames), np.float64)
    for b in range(batch):
        if mask[b].any():
            p_c[b], p_f[b, mask[b]] = pool(np.asarray(scores[b][mask[b]], np.float64))
    return p_c, p_f


def temporal_softmax_pooling(scores, mask=None):
    """p(c, f) = exp(O[f, c]) / sum exp(O) over valid frames; p_c = sum_f, p_f = sum_c."""

    def pool(valid):
        joint = np.exp(valid - valid.max())
        joint /= joint.sum()
        return joint.sum(axis=0), joint.sum(axis=1)

    return _per_clip(scores, mask, scores.shape[-1], pool)


def temporal_average_pooling(scores, mask=None):
    """p_c = softmax(mean_f O), p_f uniform over valid frames."""

    def pool(valid):
        return softmax(valid.mean(axis=0)), np.full(len(valid), 1.0 / len(valid))

    return _per_clip(scores, mask, scores.shape[-1], pool)


def temporal_max_pooling(scores, mask=None):
    """p_c = softmax(max_f O), p_f = share of classes whose (first) max is at frame f."""

    def pool(valid):
        share = np.zeros(len(valid))
        for c in range(valid.shape[1]):
            share[np.argmax(valid[:, c])] += 1.0 / valid.shape[1]
        return softmax(valid.max(axis=0)), share

    return _per_clip(scores, mask, scores.shape[-1], pool)


def lstm_pooling(descriptors, mask, lstm_kernel, lstm_recurrent, lstm_bias, dense_kernel, dense_bias):
    """Keras LSTM (gates i, f, c, o; sigmoid/tanh) over the valid frames, then softmax(Dense)."""
    units = lstm_recurrent.shape[0]

    def sigmoid(x):
        return 1.0 / (1.0 + np.exp(-x))

    def pool(valid):
        h = np.zeros(units)
        c = np.zeros(units)
        for x in valid:
            z = x @ lstm_kernel + h @ lstm_recurrent + lstm_bias
            i, f, g, o = np.split(z, 4)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
        return softmax(h @ dense_kernel + dense_bias), np.full(len(valid), 1.0 / len(valid))

    return _per_clip(descriptors, mask, dense_kernel.shape[1], pool)
