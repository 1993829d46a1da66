"""The noise schedule as a chart: how much signal (sqrt abar_t) and noise (sqrt(1 - abar_t))
x_t holds at each t, with the t being explored marked, so the picture beside it has a
number to go with it."""

from __future__ import annotations

from textual_plotext import PlotextPlot


class ScheduleChart(PlotextPlot):
    """Signal and noise coefficients over t, and a marker at the chosen t."""

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._abar: list[float] = []
        self._t = 0

    def set_schedule(self, alphas_cumprod: list[float], t: int) -> None:
        self._abar = list(alphas_cumprod)
        self.set_t(t)

    def set_t(self, t: int) -> None:
        self._t = t
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        if not self._abar:
            plt.title("schedule: loading")
            self.refresh()
            return
        ts = list(range(len(self._abar)))
        plt.plot(ts, [a**0.5 for a in self._abar], color="cyan", marker="braille", label="signal sqrt(abar)")
        plt.plot(ts, [(1 - a) ** 0.5 for a in self._abar], color="orange", marker="braille", label="noise sqrt(1-abar)")
        plt.vline(t, "gray")
        plt.ylim(0, 1)
        plt.xlabel("t")
        plt.title(f"schedule at t = {t}")
        self.refresh()
