"""The reverse process of a 2-D run as ten small scatter panels, x_T ... x_0.

The written-out S-curve toy shows its sampler this way: the same cloud of points at evenly
spaced timesteps, from noise to the curve. ``ddpm sample RUN --trajectory`` prints the panels
when it does not animate (``--panels``, or output that is not a terminal) and the explore
screen shows them (key ``n``); both go through this module, numpy and Rich only (the
dashboard imports no torch).

A draw's trajectory must hold every step (``trajectory_frames`` at least the sampler's steps;
:func:`frames_for`): frame i, recorded after the network call at ``timesteps[i]``, is then the
state x_s with s = ``timesteps[i + 1] + 1`` (1-based, as the papers count: x_T is the starting
noise, x_0 the samples), and s = 0 for the last frame. For DDPM that is s = ``timesteps[i]``;
for a DDIM draw of fewer steps, each panel shows the recorded state nearest its timestep.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.text import Text

PANELS = 10
LIMIT = 1.6  # the scatter's half-width, as ddpm_tui.charts.points_chart draws the S-curve
_BRAILLE_BITS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.int64)  # [row][col]


@dataclass
class Panel:
    """One panel: the states' timestep s (x_s) and its points, float (N, 2)."""

    step: int
    points: np.ndarray

    @property
    def title(self) -> str:
        return f"x_{self.step}"


def frames_for(steps: int) -> int:
    """The ``trajectory_frames`` to ask a sampler of ``steps`` steps for: every step."""
    return max(1, int(steps))


def panel_steps(T: int, n: int = PANELS) -> list[int]:
    """``n`` evenly spaced timesteps from T down to 0 (for T = 100: 100, 89, 78, ..., 11, 0)."""
    return [int(s) for s in np.linspace(T, 0, n).round()]


def states(start: np.ndarray, frames: list[np.ndarray], timesteps: list[int], T: int) -> list[tuple[int, np.ndarray]]:
    """(s, x_s) for the starting noise and every recorded frame, oldest first (see above)."""
    out = [(int(T), np.asarray(start))]
    for i, frame in enumerate(frames):
        s = int(timesteps[i + 1]) + 1 if i + 1 < len(frames) else 0
        out.append((s, np.asarray(frame)))
    return out


def reverse_panels(
    start: np.ndarray | None, frames: list[np.ndarray], timesteps: list[int], T: int, n: int = PANELS
) -> list[Panel]:
    """The ``n`` panels of a draw: for each of :func:`panel_steps`, the recorded state nearest
    it (the first on a tie). Raises ValueError when the draw kept no trajectory."""
    if start is None or not frames or len(frames) != len(timesteps):
        raise ValueError("the draw kept no trajectory to show; sample with every step recorded")
    have = states(start, frames, timesteps, T)
    steps = np.array([s for s, _ in have])
    panels = []
    for want in panel_steps(T, n):
        i = int(np.abs(steps - want).argmin())
        panels.append(Panel(int(steps[i]), have[i][1]))
    return panels


def scatter_rows(points: np.ndarray, cols: int, rows: int, limit: float = LIMIT) -> list[str]:
    """Points in [-limit, limit]^2 as ``rows`` lines of ``cols`` braille cells (2 x 4 dots each),
    y up; points outside the square are left out."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    pts = pts[(np.abs(pts) < limit).all(axis=1)]  # NaN fails this too
    w, h = 2 * cols, 4 * rows
    x = np.floor((pts[:, 0] + limit) / (2 * limit) * w).astype(np.int64)
    y = np.floor((limit - pts[:, 1]) / (2 * limit) * h).astype(np.int64)
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    on = np.zeros((h, w), dtype=bool)
    on[y[inside], x[inside]] = True
    codes = (on.reshape(rows, 4, cols, 2) * _BRAILLE_BITS[None, :, None, :]).sum(axis=(1, 3))
    return ["".join(chr(0x2800 + int(c)) for c in row) for row in codes]


def panels_text(panels: list[Panel], width: int = 80, *, cols: int = 16, rows: int = 6, color: bool = True) -> Text:
    """The panels side by side in framed boxes, as many to a line as fit in ``width`` cells,
    each titled x_s above its box."""
    box = cols + 2
    per_line = max(1, (max(width, box) + 1) // (box + 1))
    dots = "cyan" if color else ""
    lines: list[Text] = []
    for k in range(0, len(panels), per_line):
        group = panels[k : k + per_line]
        arts = [scatter_rows(p.points, cols, rows) for p in group]
        block = [Text(" ".join(p.title.center(box) for p in group), style="bold" if color else "")]
        block.append(Text(" ".join("\u250c" + "\u2500" * cols + "\u2510" for _ in group)))
        for r in range(rows):
            line = Text()
            for j, art in enumerate(arts):
                if j:
                    line.append(" ")
                line.append("\u2502")
                line.append(art[r], style=dots)
                line.append("\u2502")
            block.append(line)
        block.append(Text(" ".join("\u2514" + "\u2500" * cols + "\u2518" for _ in group)))
        if lines:
            lines.append(Text())
        lines.extend(block)
    out = Text("\n").join(lines)
    out.no_wrap, out.overflow = True, "crop"
    return out
