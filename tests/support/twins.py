"""NumPy twins shared by several test files: each the slow, obvious version of a library formula."""

import math

import numpy as np

__all__ = ["np_patches", "np_noise"]


def np_patches(x, ksize, strides, padding, dilation):
    """im2col by explicit loops, TF's padding rule, rows in (taps..., channel) order."""
    spatial = x.shape[1:-1]
    outs, pads = [], []
    for n, k, s, d in zip(spatial, ksize, strides, dilation, strict=True):
        span = (k - 1) * d + 1
        if padding == "same":
            out = math.ceil(n / s)
            total = max((out - 1) * s + span - n, 0)
            pads.append((total // 2, total - total // 2))
        elif padding == "causal":
            out, _ = n, pads.append((span - 1, 0))
        else:
            out = (n - span) // s + 1
            pads.append((0, 0))
        outs.append(out)
    xp = np.pad(x, [(0, 0), *pads, (0, 0)])
    rows = []
    for b in range(x.shape[0]):
        for pos in np.ndindex(*outs):
            taps = [
                xp[
                    (
                        b,
                        *[
                            p * s + t * d
                            for p, s, t, d in zip(pos, strides, tap, dilation, strict=True)
                        ],
                    )
                ]
                for tap in np.ndindex(*ksize)
            ]
            rows.append(np.concatenate(taps))
    return np.array(rows)


def np_noise(w2d, x_rows, rel):
    """Twin: span from the SVD of the input rows, singular values^2 vs rel * max."""
    u, s, _ = np.linalg.svd(x_rows.T.astype(np.float64), full_matrices=False)
    basis = u[:, s**2 > rel * s[0] ** 2]
    w = w2d.astype(np.float64)
    perp = w - basis @ (basis.T @ w)
    ratio = np.linalg.norm(perp, axis=0) / np.linalg.norm(w, axis=0)
    return np.array(
        [ratio.mean(), ratio.max(), np.linalg.norm(perp), np.linalg.norm(w - perp), basis.shape[1]]
    )
