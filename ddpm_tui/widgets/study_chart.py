"""A study's figure against one swept key, live: the chart ``ddpm study`` prints
(:func:`ddpm_tui.charts.draw_study`), drawn into a textual-plotext widget and redrawn only
when its data changes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual_plotext import PlotextPlot

from ddpm_tui.charts import draw_study

if TYPE_CHECKING:
    from core.study import ChartData


class StudyChart(PlotextPlot):
    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None):
        super().__init__(name=name, id=id, classes=classes)
        self._data: ChartData | None = None
        self._drawn = False

    @property
    def data(self) -> ChartData | None:
        return self._data

    def set_data(self, data: ChartData | None, empty: str = "nothing to chart yet") -> None:
        if self._drawn and data == self._data:
            return
        self._data, self._drawn = data, True
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        if data is None:
            plt.title(empty)
        else:
            draw_study(plt, data)
        self.refresh()
