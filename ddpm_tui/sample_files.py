"""Samples written to disk: ``.npy`` arrays, or a ``.png`` grid (a scatter for 2-D points,
line plots for 1-D sequences).

``ddpm sample --out`` and the dashboard's Save both write through :func:`write_samples`, so a
file saved from either looks the same. Only numpy and Pillow: saving from the dashboard must
not load torch. The grid is laid out as torchvision's ``make_grid`` lays it out (the tests
check that it matches it pixel for pixel).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from core.atomic import atomic_write_bytes

PADDING = 2  # pixels between images and around the grid, as make_grid's default


def image_grid(images: np.ndarray, padding: int = PADDING, per_row: int | None = None) -> np.ndarray:
    """Images (N, C, H, W) as one image: ``per_row`` a row (default ``ceil(sqrt(N))``; a
    conditional run's grid passes the count of each class, so each row is one class),
    ``padding`` pixels of 0 between and around them, the last row filled from the left; a
    single image unpadded. Returns (H', W') for one channel, else (H', W', C), in the images'
    dtype."""
    n, c, h, w = images.shape
    if n == 1:
        grid = images[0]
    else:
        per_row = min(per_row or math.ceil(math.sqrt(n)), n)
        rows = math.ceil(n / per_row)
        grid = np.zeros((c, rows * (h + padding) + padding, per_row * (w + padding) + padding), dtype=images.dtype)
        for k, image in enumerate(images):
            top = (k // per_row) * (h + padding) + padding
            left = (k % per_row) * (w + padding) + padding
            grid[:, top : top + h, left : left + w] = image
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def points_image(points, size: int = 512):
    """2-D points drawn as dots on a white square spanning [-1.6, 1.6]^2."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(img)
    px = ((np.asarray(points, dtype=np.float64) + 1.6) / 3.2 * (size - 1)).clip(0, size - 1)
    for x, y in px:
        draw.ellipse((x - 1.5, size - 1 - y - 1.5, x + 1.5, size - 1 - y + 1.5), fill=0)
    return img


def sequences_image(data, shown: int = 8, width: int = 640, panel: int = 160):
    """Sequences (N, C, L) as line plots on white, one panel per channel (each spanning its own
    range), the first ``shown`` sequences in shades of grey."""
    from PIL import Image, ImageDraw

    x = np.asarray(data, dtype=np.float64)[:shown]
    channels, length = x.shape[1], x.shape[2]
    img = Image.new("L", (width, panel * channels), 255)
    draw = ImageDraw.Draw(img)
    for c in range(channels):
        lo, hi = float(x[:, c].min()), float(x[:, c].max())
        span = hi - lo or 1.0
        top = c * panel
        draw.line([(0, top + panel - 1), (width, top + panel - 1)], fill=200)
        for i, seq in enumerate(x[:, c]):
            px = np.arange(length) / max(1, length - 1) * (width - 1)
            py = top + 4 + (1 - (seq - lo) / span) * (panel - 9)
            draw.line(list(zip(px.tolist(), py.tolist())), fill=int(160 * i / max(1, len(x) - 1)), width=1)
    return img


def write_samples(out: Path, data, per_row: int | None = None) -> None:
    """``.npy``: uint8 (N, H, W) for gray, (N, C, H, W) for colour, float32 (N, 2) for points,
    float32 (N, C, L) for sequences (in the data's own units); ``.png``: a grid, ``per_row``
    images a row (see :func:`image_grid`), a scatter of the points, or line plots of the
    sequences. Written atomically."""
    buf = io.BytesIO()
    if out.suffix.lower() == ".npy":
        arr = data[:, 0] if data.ndim == 4 and data.shape[1] == 1 else data
        np.save(buf, arr)
    else:
        from PIL import Image

        if data.ndim == 2:
            img = points_image(data)
        elif data.ndim == 3 and data.dtype.kind == "f":
            img = sequences_image(data)
        else:
            img = Image.fromarray(image_grid(data, per_row=per_row))
        img.save(buf, format="PNG")
    atomic_write_bytes(out, buf.getvalue())
