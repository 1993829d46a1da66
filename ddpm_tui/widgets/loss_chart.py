"""A live loss chart: log y, the raw series faint and the smoothed one bold.

The log axis is drawn by hand (log10 of the values on a linear axis, ticks labelled with the
values): plotext's own ``yscale("log")`` transforms its stored data in place at every build,
so a widget that is rendered twice (any resize) would take the log of a log.

The series preparation (:func:`~ddpm_tui.charts.smooth`, ``thin``, ``positive``) is the
CLI's, so ``ddpm show`` and the dashboard draw the same curve. Points are appended as the
worker records them; the chart is rebuilt only when they change, never on a timer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from textual_plotext import PlotextPlot

from ddpm_tui.charts import COLORS, positive, smooth, thin

Series = dict[str, tuple[Sequence[float], Sequence[float]]]


class LossChart(PlotextPlot):
    """One curve (raw + smoothed) for a run, or one smoothed curve per run to compare."""

    def __init__(
        self, title: str = "loss (log scale)", *, name: str | None = None, id: str | None = None, classes: str | None = None
    ):
        super().__init__(name=name, id=id, classes=classes)
        self.title = title
        self._series: Series = {}

    @property
    def series(self) -> Series:
        return self._series

    def set_series(self, series: Series) -> None:
        self._series = {k: (list(xs), list(ys)) for k, (xs, ys) in series.items()}
        self._replot()

    def extend(self, label: str, xs: Sequence[float], ys: Sequence[float]) -> None:
        """Append new points to one series (the live run view)."""
        old_x, old_y = self._series.get(label, ([], []))
        self._series[label] = (list(old_x) + list(xs), list(old_y) + list(ys))
        self._replot()

    def _replot(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title)
        plt.xlabel("step")
        lo, hi = math.inf, -math.inf
        single = len(self._series) == 1
        for i, (label, (xs, ys)) in enumerate(self._series.items()):
            xs, ys = positive(xs, ys)  # what a log axis can show
            if not xs:
                continue
            color = COLORS[i % len(COLORS)]
            if len(ys) > 5:
                if single:
                    rx, ry = thin(xs, ys)
                    plt.plot(rx, log10(ry), color="gray", marker="dot", label="raw")
                sx, sy = thin(xs, smooth(ys))
                plt.plot(sx, log10(sy), color=color, marker="braille", label="smoothed" if single else label)
            else:
                sx, sy = thin(xs, ys)
                plt.plot(sx, log10(sy), color=color, marker="braille", label=label)
            lo, hi = min(lo, math.log10(min(ys))), max(hi, math.log10(max(ys)))
        if lo <= hi:
            ticks = log_ticks(lo, hi)
            plt.yticks(ticks, [f"{10**t:.3g}" for t in ticks])
        else:
            plt.title(f"{self.title}: no points yet")
        self.refresh()


def log10(values: Sequence[float]) -> list[float]:
    return [math.log10(v) for v in values]


def log_ticks(lo: float, hi: float) -> list[float]:
    """log10 positions of round values (1, 2, 5 times a power of ten) between two log10 bounds."""
    if hi - lo < 1e-9:
        return [lo]
    mantissas = (1.0,) if hi - lo > 3 else (1.0, 2.0, 5.0)
    out = []
    for k in range(math.floor(lo), math.ceil(hi) + 1):
        for m in mantissas:
            t = k + math.log10(m)
            if lo - 1e-9 <= t <= hi + 1e-9:
                out.append(t)
    if len(out) < 2:
        out = [lo, hi]
    return out
