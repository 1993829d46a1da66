"""Sample grids as terminal art that reflow to the widget's width.

The art itself comes from :func:`ddpm_tui.render.samples_art` (image grids, 2-D point
scatters, 1-D sequence line plots), exactly as the CLI draws it; this widget only decides how wide to draw and
caches the result, because a 64-digit half-block grid costs tens of milliseconds to build and
Textual may render a widget many times while nothing changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.geometry import Size
from textual.widget import Widget

if TYPE_CHECKING:
    import numpy as np

ART_MODES = ("half", "braille", "ascii")


class ArtView(Widget):
    """Images ``(N, C, H, W)`` as a grid of half blocks/braille/ASCII, points ``(N, 2)`` as a
    scatter, or sequences ``(N, C, L)`` as line plots. Re-renders at the new width on resize, so a wider terminal shows more per row."""

    def __init__(
        self,
        data: np.ndarray | None = None,
        *,
        placeholder: str = "no samples yet",
        max_rows: int | None = None,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._data = data
        self.placeholder = placeholder
        self.max_rows = max_rows
        self.per_row: int | None = None  # images a row at most (a conditional run's grid: one class a row)
        self._cache: tuple[Any, Text] | None = None

    @property
    def data(self) -> np.ndarray | None:
        return self._data

    def set_data(self, data: np.ndarray | None, placeholder: str | None = None, per_row: int | None = None) -> None:
        """Show new images (or none), ``per_row`` at most a row; the layout is redone since the
        height may change."""
        self._data = data
        self.per_row = per_row
        if placeholder is not None:
            self.placeholder = placeholder
        self._cache = None
        self.refresh(layout=True)

    @property
    def mode(self) -> str:
        return getattr(self.app, "art_mode", "half")

    @property
    def is_points(self) -> bool:
        """Whether the samples are drawn as a chart (points or sequences) that fills its height."""
        from ddpm_tui.render import is_chart

        return self._data is not None and is_chart(self._data)

    def _art(self, width: int, height: int) -> Text:
        key = (id(self._data), width, height if self.is_points else 0, self.mode, self.max_rows, self.per_row)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        if self._data is None or len(self._data) == 0:
            art = Text(self.placeholder, style="dim")
        else:
            from ddpm_tui.render import samples_art

            art = samples_art(
                self._data, self.mode, width=width, height=max(6, height), max_rows=self.max_rows, per_row=self.per_row
            )
        self._cache = (key, art)
        return art

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        if self.is_points:
            return max(8, container.height)
        art = self._art(width, 0)
        if self._data is None or len(self._data) == 0:  # the placeholder wraps; grids never do
            return max(1, len(art.wrap(self.app.console, max(1, width))))
        return max(1, len(art.split()))

    def render(self) -> Text:
        return self._art(self.content_size.width, self.content_size.height)
