"""Loss curves, point clouds and 1-D sequences as terminal charts (plotext), for the CLI.

The dashboard draws the same series with textual-plotext widgets; the series preparation
(:func:`smooth`, :func:`thin`) is shared so both faces show the same curves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

COLORS = ("cyan", "orange", "green", "magenta", "yellow", "blue", "red", "white")


def smooth(values: Sequence[float], weight: float | None = None) -> list[float]:
    """Exponential moving average with bias correction (as TensorBoard draws it), so the
    smoothed curve starts at the first value rather than at zero.

    By default the weight follows the number of points (a window of about a thirtieth of the
    series, at most 0.9): a fixed 0.9 over the dozen rows of a young run averaged its first
    steep drop into every later point, drawing the curve far above the raw losses."""
    if weight is None:
        weight = min(0.9, max(0.0, 1 - 30 / max(1, len(values))))
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i))
    return out


def thin(xs: Sequence[float], ys: Sequence[float], limit: int = 600) -> tuple[list, list]:
    """At most ``limit`` points, evenly spaced, always keeping the last: a terminal chart has
    a few hundred columns, and plotting 100,000 points only costs time."""
    n = len(xs)
    if n <= limit:
        return list(xs), list(ys)
    idx = sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})
    return [xs[i] for i in idx], [ys[i] for i in idx]


def positive(xs: Sequence[float], ys: Sequence[float]) -> tuple[list, list]:
    """Points a log axis can show."""
    keep = [(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y) and y > 0]
    return [p[0] for p in keep], [p[1] for p in keep]


def loss_chart(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    *,
    width: int = 80,
    height: int = 16,
    color: bool = True,
    log_y: bool = True,
    smoothed: bool = True,
    title: str | None = None,
) -> str:
    """Curves for one or several runs on one chart: raw (faint) and smoothed per series."""
    import plotext as plt

    fresh(plt)
    plt.plotsize(max(20, width), max(6, height))
    plt.theme("pro" if color else "clear")
    any_points = False
    for i, (label, (xs, ys)) in enumerate(series.items()):
        xs, ys = positive(xs, ys) if log_y else (list(xs), list(ys))
        if not xs:
            continue
        any_points = True
        c = COLORS[i % len(COLORS)]
        if smoothed and len(ys) > 5:
            sx, sy = thin(xs, smooth(ys))
            if len(series) == 1:
                rx, ry = thin(xs, ys)
                plt.plot(rx, ry, color="gray" if color else None, marker="dot", label=f"{label} raw")
            plt.plot(sx, sy, color=c if color else None, marker="braille", label=label)
        else:
            tx, ty = thin(xs, ys)
            plt.plot(tx, ty, color=c if color else None, marker="braille", label=label)
    if log_y and any_points:
        plt.yscale("log")
    plt.xlabel("step")
    if title:
        plt.title(title)
    out = built(plt, color)
    fresh(plt)
    return out


def points_chart(points, *, width: int = 60, height: int = 20, color: bool = True, title: str | None = None) -> str:
    """A 2-D point cloud (the S-curve toy) as a braille scatter."""
    import plotext as plt

    fresh(plt)
    plt.plotsize(max(20, width), max(6, height))
    plt.theme("pro" if color else "clear")
    plt.scatter([float(p[0]) for p in points], [float(p[1]) for p in points], marker="braille", color="cyan" if color else None)
    plt.xlim(-1.6, 1.6)
    plt.ylim(-1.6, 1.6)
    if title:
        plt.title(title)
    out = built(plt, color)
    fresh(plt)
    return out


SEQUENCES_SHOWN = 4  # sequences drawn per channel: more become a tangle at terminal resolution


def fresh(plt) -> None:
    """An empty figure: plotext keeps one per process, and its ``clear_figure`` clears only
    the active subplot, so the main figure is made active first (a sequence plot's subplot
    grid would otherwise stay for the next chart, drawn into it beside the old lines)."""
    plt.main()
    plt.clear_figure()


def built(plt, color: bool) -> str:
    """The figure as text; without colour, with every escape taken out: plotext keeps state
    between figures (a colour set by an earlier chart in the same process can survive the
    "clear" theme), and a chart for a plain terminal or a file must hold none."""
    out = plt.build()
    return out if color else plt.uncolorize(out)


def sequences_chart(
    data,
    *,
    width: int = 80,
    height: int | None = None,
    color: bool = True,
    title: str | None = None,
    per_channel: int = SEQUENCES_SHOWN,
) -> str:
    """Sequences (N, C, L) as line plots, one panel per channel (of 4 at most), the first
    ``per_channel`` sequences in each, in the data's own units; ``height`` (default 10 lines
    a channel) is shared between the panels."""
    import plotext as plt

    channels = min(4, int(data.shape[1]))
    length = int(data.shape[2])
    height = height or 10 * channels
    xs = list(range(length))
    fresh(plt)
    plt.subplots(channels, 1)
    plt.main().plotsize(max(20, width), max(6 * channels, height))  # the figure's size, shared by its panels
    for c in range(channels):
        plt.subplot(c + 1, 1)
        plt.theme("pro" if color else "clear")
        for i in range(min(per_channel, len(data))):
            plt.plot(xs, [float(v) for v in data[i, c]], marker="braille", color=COLORS[i % len(COLORS)] if color else None)
        label = f"channel {c}" + (f" of {data.shape[1]}" if data.shape[1] > channels and c == channels - 1 else "")
        plt.title(f"{title}: {label}" if title and c == 0 else label)
    out = built(plt, color)
    fresh(plt)
    return out


def study_positions(data) -> list[float]:
    """Where each of a study chart's x values sits: log10 of the value over a decade or more
    (drawn by hand, as the loss chart's y: plotext's own log scale rewrites its data at each
    build), the value itself for other numbers, the index for categories."""
    if data.log_x:
        return [math.log10(x) for x in data.xs]
    if data.numeric:
        return [float(x) for x in data.xs]
    return [float(i) for i in range(len(data.xs))]


def draw_study(plt, data, color: bool = True) -> None:
    """A figure against a swept key (:func:`core.study.chart_data`) onto a plotext figure
    (the module, or a textual-plotext widget's ``plt``): each line's means joined, with a bar
    of ±std at each point; lines sit a little apart so their bars do not hide each other."""
    from core.study import canonical, value_text

    pos = study_positions(data)
    where = {canonical(x): p for x, p in zip(data.xs, pos)}
    span = (max(pos) - min(pos)) or 1.0
    n = len(data.lines)
    for i, line in enumerate(data.lines):
        c = COLORS[i % len(COLORS)] if color else None
        shift = (i - (n - 1) / 2) * 0.015 * span if n > 1 else 0.0
        xs = [where[canonical(p.x)] + shift for p in line.points]
        ys = [p.stat.mean for p in line.points]
        plt.plot(xs, ys, color=c, marker="braille", label=line.label)
        plt.scatter(xs, ys, color=c, marker="o")
        for x, p in zip(xs, line.points):
            if p.stat.std:
                plt.plot([x, x], [p.stat.mean - p.stat.std, p.stat.mean + p.stat.std], color=c, marker="|")
    plt.xticks(pos, [value_text(x) for x in data.xs])
    plt.xlabel(data.key + (" (log scale)" if data.log_x else ""))
    plt.title(data.title)


def study_chart(data, *, width: int = 80, height: int = 16, color: bool = True) -> str:
    """:func:`draw_study` as text, for the CLI."""
    import plotext as plt

    fresh(plt)
    plt.plotsize(max(20, width), max(6, height))
    plt.theme("pro" if color else "clear")
    draw_study(plt, data, color)
    out = built(plt, color)
    fresh(plt)
    return out
