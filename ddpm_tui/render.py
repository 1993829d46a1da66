"""Images -> terminal art: half blocks in grey or colour, braille dots, or an ASCII ramp.

- ``half``: one cell holds two pixels stacked, drawn as the upper half block with the top
  pixel as foreground and the bottom one as background. A 28x28 digit is 28 cells by 14.
  Colours are 24-bit; Rich maps them to the 256-colour palette (whose 24-step grey ramp suits
  digits) or to 16 colours when that is all the terminal has.
- ``braille``: one cell holds 2x4 pixels as dots, thresholded; a digit is 14 cells by 7, so
  a 64-digit grid fits a laptop terminal. No colour needed.
- ``ascii``: one character per 1x2 pixels from a ten-step ramp, for terminals without colour
  (``NO_COLOR``, ``TERM=dumb``, output piped to a file).

Everything returns :class:`rich.text.Text`, which the CLI prints and the dashboard shows.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from rich.color import Color
from rich.style import Style
from rich.text import Text

MODES = ("half", "braille", "ascii")
RAMP = " .:-=+*#%@"
UPPER_HALF = "\u2580"
_BRAILLE_BITS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.int64)  # [row][col]


def pick_mode(color_system: str | None, forced: str | None = None) -> str:
    """``forced`` if given; else half blocks when the terminal has colour, ASCII when not."""
    if forced:
        if forced not in MODES:
            raise ValueError(f"art mode {forced!r} is not one of {', '.join(MODES)}")
        return forced
    return "half" if color_system else "ascii"


def cell_size(mode: str, height: int, width: int) -> tuple[int, int]:
    """(columns, rows) one image takes in a mode."""
    if mode == "half":
        return width, (height + 1) // 2
    if mode == "braille":
        return (width + 1) // 2, (height + 3) // 4
    return width, (height + 1) // 2


def _hwc(img: np.ndarray) -> np.ndarray:
    """Any of (H, W), (1, H, W), (3, H, W) uint8 -> (H, W, C)."""
    a = np.asarray(img)
    if a.ndim == 2:
        return a[:, :, None]
    if a.ndim == 3 and a.shape[0] in (1, 3):
        return a.transpose(1, 2, 0)
    raise ValueError(f"expected an image of shape (H, W) or (C, H, W), got {a.shape}")


def _grey(a: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (H, W) luminance as uint8."""
    if a.shape[2] == 1:
        return a[:, :, 0]
    return (a[:, :, :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.uint8)


def _pad_rows(a: np.ndarray, multiple: int) -> np.ndarray:
    extra = (-a.shape[0]) % multiple
    if extra:
        a = np.concatenate([a, np.zeros((extra, *a.shape[1:]), dtype=a.dtype)])
    return a


@lru_cache(maxsize=65536)
def _half_style(top: tuple[int, ...], bottom: tuple[int, ...]) -> Style:
    return Style(color=Color.from_rgb(*top), bgcolor=Color.from_rgb(*bottom))


def image_rows(img: np.ndarray, mode: str) -> list[Text]:
    """One image as a list of styled lines."""
    a = _hwc(img)
    if mode == "half":
        a = _pad_rows(a, 2)
        rgb = a if a.shape[2] == 3 else np.repeat(a[:, :, :1], 3, axis=2)
        lines = []
        for y in range(0, rgb.shape[0], 2):
            line = Text()
            top, bottom = rgb[y], rgb[y + 1]
            for x in range(rgb.shape[1]):
                line.append(UPPER_HALF, _half_style(tuple(int(v) for v in top[x]), tuple(int(v) for v in bottom[x])))
            lines.append(line)
        return lines
    g = _grey(a)
    if mode == "braille":
        g = _pad_rows(g, 4)
        if g.shape[1] % 2:
            g = np.concatenate([g, np.zeros((g.shape[0], 1), dtype=g.dtype)], axis=1)
        on = g >= 128
        h, w = on.shape
        cells = on.reshape(h // 4, 4, w // 2, 2)
        codes = (cells * _BRAILLE_BITS[None, :, None, :]).sum(axis=(1, 3))
        return [Text("".join(chr(0x2800 + int(c)) for c in row)) for row in codes]
    if mode == "ascii":
        g = _pad_rows(g, 2).astype(np.float32)
        pairs = (g[0::2] + g[1::2]) / 2.0
        idx = np.clip((pairs / 256.0 * len(RAMP)).astype(int), 0, len(RAMP) - 1)
        return [Text("".join(RAMP[i] for i in row)) for row in idx]
    raise ValueError(f"art mode {mode!r} is not one of {', '.join(MODES)}")


def grid(
    images: np.ndarray, mode: str, width: int = 80, gutter: int = 1, max_rows: int | None = None, per_row: int | None = None
) -> Text:
    """Images (N, C, H, W) or (N, H, W) tiled left to right, wrapping at ``width`` cells,
    with a ``gutter`` of blank cells between images and a blank line between rows.
    ``per_row`` caps the images of a row (a conditional run's grid: one class a row)."""
    imgs = np.asarray(images)
    if imgs.ndim == 3:
        imgs = imgs[:, None]
    if imgs.shape[0] == 0:
        return Text()
    cw, ch = cell_size(mode, imgs.shape[2], imgs.shape[3])
    per_row = min(per_row or imgs.shape[0], max(1, (max(width, cw) + gutter) // (cw + gutter)))
    chunks = [imgs[i : i + per_row] for i in range(0, imgs.shape[0], per_row)][:max_rows]
    lines: list[Text] = []
    for r, chunk in enumerate(chunks):
        if r:
            lines.append(Text())
        arts = [image_rows(im, mode) for im in chunk]
        for y in range(ch):
            line = Text()
            for i, art in enumerate(arts):
                if i:
                    line.append(" " * gutter)
                line.append_text(art[y])
            lines.append(line)
    out = Text("\n", no_wrap=True, overflow="crop").join(lines)
    out.no_wrap, out.overflow = True, "crop"
    return out


def grid_size(n: int, mode: str, height: int, width: int, term_width: int, gutter: int = 1) -> tuple[int, int]:
    """(columns, lines) a grid of ``n`` images takes at ``term_width``."""
    cw, ch = cell_size(mode, height, width)
    per_row = max(1, (max(term_width, cw) + gutter) // (cw + gutter))
    rows = -(-n // per_row)
    return min(n, per_row) * (cw + gutter) - gutter, rows * ch + max(0, rows - 1)


def is_sequences(data) -> bool:
    """Float (N, C, L) arrays are 1-D sequences; images are uint8 and points (N, 2)."""
    return data.ndim == 3 and data.dtype.kind == "f"


def is_chart(data) -> bool:
    """Samples drawn as a chart (points, sequences), which fills the height it is given, rather
    than as a grid of images, whose height follows from its width."""
    return data.ndim == 2 or is_sequences(data)


def samples_art(
    data,
    mode: str,
    *,
    width: int,
    height: int | None = None,
    max_rows: int | None = None,
    per_row: int | None = None,
    title: str | None = None,
    color: bool | None = None,
) -> Text:
    """Any samples as terminal art: the one place the CLI (``samples_view``) and the dashboard
    (``ArtView``) choose how to draw them. Images as a grid (``per_row`` a row, ``max_rows``
    rows at most), 2-D points as a scatter, sequences (N, C, L) as line plots per channel;
    charts are ``height`` lines tall (default: their own), in ``color`` (default: unless the
    mode is ``ascii``)."""
    from ddpm_tui.charts import points_chart, sequences_chart

    color = mode != "ascii" if color is None else color
    if data.ndim == 2:
        return Text.from_ansi(points_chart(data, width=max(20, width), height=max(6, height or 20), color=color, title=title))
    if is_sequences(data):
        return Text.from_ansi(sequences_chart(data, width=max(20, width), height=height, color=color, title=title))
    return grid(data, mode, width=max(1, width), max_rows=max_rows, per_row=per_row)
