"""The art widget in a headless terminal."""

import asyncio

from textual.app import App, ComposeResult

from ddpm_tui.widgets.art import ArtView

TEXT = "no samples yet: the worker records a grid every sample_every steps"


class OneArt(App):
    CSS = "ArtView { width: 24; height: auto; }"

    def compose(self) -> ComposeResult:
        yield ArtView(placeholder=TEXT)


def test_a_long_placeholder_wraps_instead_of_being_cut():
    async def main():
        app = OneArt()
        async with app.run_test(size=(60, 12)) as pilot:
            await pilot.pause()
            art = app.query_one(ArtView)
            assert art.size.height == 3  # 66 characters in a 24-column widget
            lines = [art.render_line(y).text.strip() for y in range(art.size.height)]
            assert " ".join(lines) == TEXT, lines

    asyncio.run(main())


class SequenceArt(App):
    CSS = "ArtView { width: 50; height: 20; }"

    def compose(self) -> ComposeResult:
        yield ArtView()


def test_sequences_fill_the_widget_as_line_plots():
    import numpy as np

    async def main():
        app = SequenceArt()
        async with app.run_test(size=(60, 24)) as pilot:
            art = app.query_one(ArtView)
            art.set_data(np.sin(np.linspace(0, 6, 2 * 2 * 32)).reshape(2, 2, 32).astype(np.float32))
            await pilot.pause()
            lines = [art.render_line(y).text for y in range(art.size.height)]
            assert art.is_points and art.size.height == 20
            assert any("channel 0" in line for line in lines) and any("channel 1" in line for line in lines)

    asyncio.run(main())
