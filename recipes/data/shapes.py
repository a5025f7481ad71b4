"""A seeded *synthetic* image data set: procedurally drawn shapes.

It exists so that smoke runs and benchmarks at CIFAR scale (32x32x3, ten
classes) work offline on data a network can actually learn. It is not a
benchmark of anything and is named `synthetic_shapes` wherever it appears.

Each image is a shape of one of ten classes, drawn at a random position and
size in a random colour on a random background colour, with Gaussian pixel
noise. The same seed always gives the same images.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SHAPE_CLASSES", "make_shapes"]

SHAPE_CLASSES = (
    "disk",
    "square",
    "triangle",
    "plus",
    "ring",
    "h_stripes",
    "v_stripes",
    "diamond",
    "x_cross",
    "checker",
)


def _mask(label, dy, dx, radius):
    """Boolean mask of one shape, from coordinates relative to its centre."""
    ady, adx = np.abs(dy), np.abs(dx)
    inside = np.maximum(ady, adx) <= radius
    arm = radius / 3
    masks = {
        "disk": dy**2 + dx**2 <= radius**2,
        "square": inside,
        "triangle": inside & (dy >= 2 * adx - radius),
        "plus": inside & ((ady <= arm) | (adx <= arm)),
        "ring": np.abs(np.sqrt(dy**2 + dx**2) - 0.7 * radius) <= arm,
        "h_stripes": inside & (np.floor(dy / arm) % 2 == 0),
        "v_stripes": inside & (np.floor(dx / arm) % 2 == 0),
        "diamond": ady + adx <= radius,
        "x_cross": inside & (np.abs(ady - adx) <= arm * 0.8),
        "checker": inside & ((np.floor(dy / arm) + np.floor(dx / arm)) % 2 == 0),
    }
    return masks[SHAPE_CLASSES[label]]


def _colours(rng):
    """A foreground and a background colour that differ clearly."""
    while True:
        fg, bg = rng.uniform(0.0, 1.0, size=(2, 3))
        if np.abs(fg - bg).sum() > 0.6:
            return fg, bg


def make_shapes(num_examples, seed=0, size=32, noise=0.08):
    """Draw `num_examples` labelled shape images.

    Args:
        num_examples: number of images.
        seed: seed of the generator; equal seeds give equal arrays.
        size: height and width of the square images.
        noise: standard deviation of the Gaussian pixel noise.

    Returns:
        `(images, labels)`: uint8 array `(n, size, size, 3)` and int64 array
        `(n,)` with balanced classes in random order.

    Example:
        >>> images, labels = make_shapes(20, seed=1)
        >>> images.shape, images.dtype, labels[:3]
        ((20, 32, 32, 3), dtype('uint8'), array([...]))
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(num_examples) % len(SHAPE_CLASSES))
    grid = np.arange(size, dtype=np.float64) + 0.5
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    images = np.empty((num_examples, size, size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        radius = rng.uniform(0.2, 0.4) * size
        cy, cx = rng.uniform(radius, size - radius, size=2)
        mask = _mask(label, yy - cy, xx - cx, radius)
        fg, bg = _colours(rng)
        image = np.where(mask[..., None], fg, bg)
        image = image + rng.normal(0.0, noise, size=image.shape)
        images[i] = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    return images, labels.astype(np.int64)
