"""Terminal art for a known digit in all three modes, and grids that wrap."""

import random

import numpy as np
import pytest
from rich.console import Console

from core.sources import load_mnist
from ddpm_tui.render import RAMP, UPPER_HALF, cell_size, grid, image_rows, pick_mode


@pytest.fixture(scope="module")
def seven():
    """The first test digit of MNIST, a 7."""
    x, y = load_mnist("test")
    assert y[0] == 7
    return x[0]


def test_ascii_draws_the_seven(seven):
    rows = [t.plain for t in image_rows(seven, "ascii")]
    assert len(rows) == 14 and all(len(r) == 28 for r in rows)
    assert set("".join(rows)) <= set(RAMP)
    # the 7's horizontal bar: a long run of dark ink in the upper third
    bar = max(rows[:6], key=lambda r: sum(c in "%@#" for c in r))
    assert sum(c in "%@#" for c in bar) >= 10
    # its stem: ink in the lower rows, left of where the bar ends
    assert any(c != " " for c in rows[11][5:15])
    assert rows[0].strip() == ""
    assert rows[-1].rstrip() and len(rows[-1].rstrip()) < 16  # the foot of the stem, far left of the bar's end


def test_half_blocks_carry_the_pixels_as_colours(seven):
    rows = image_rows(seven, "half")
    assert len(rows) == 14 and all(t.plain == UPPER_HALF * 28 for t in rows)
    y, x = 8, 10  # cell (x, y) holds pixels (2y, x) on top and (2y + 1, x) below
    style = rows[y].get_style_at_offset(Console(), x)
    assert style.color.triplet == (seven[2 * y, x],) * 3
    assert style.bgcolor.triplet == (seven[2 * y + 1, x],) * 3
    v = seven[2 * y, x]
    true = Console(color_system="truecolor", force_terminal=True, width=40)
    with true.capture() as cap:
        true.print(rows[y])
    assert f"38;2;{v};{v};{v}" in cap.get()


def test_braille_dots_match_the_thresholded_pixels(seven):
    rows = [t.plain for t in image_rows(seven, "braille")]
    assert len(rows) == 7 and all(len(r) == 14 for r in rows)
    bits = [[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]]
    for cy in range(7):
        for cx in range(14):
            code = ord(rows[cy][cx]) - 0x2800
            for dy in range(4):
                for dx in range(2):
                    on = seven[4 * cy + dy, 2 * cx + dx] >= 128
                    assert bool(code & bits[dy][dx]) == on


def test_grid_wraps_to_the_width_with_gutters():
    imgs = np.zeros((5, 1, 28, 28), dtype=np.uint8)
    text = grid(imgs, "ascii", width=90)
    lines = text.plain.split("\n")
    # 3 digits of 28 plus 2 gutters = 86 <= 90; 2 rows of 14 lines and a blank line between
    assert len(lines) == 29 and len(lines[0]) == 86 and lines[14] == ""
    assert len(grid(imgs, "braille", width=90).plain.split("\n")[0]) == 5 * 14 + 4
    assert len(grid(imgs, "ascii", width=10).plain.split("\n")) == 5 * 14 + 4  # one per row when narrow
    assert len(grid(imgs, "ascii", width=90, max_rows=1).plain.split("\n")) == 14


def test_rgb_and_odd_sizes():
    img = np.zeros((3, 5, 5), dtype=np.uint8)
    img[0] = 255  # pure red
    rows = image_rows(img, "half")
    assert len(rows) == 3 and rows[0].get_style_at_offset(Console(), 0).color.triplet == (255, 0, 0)
    assert cell_size("braille", 5, 5) == (3, 2) and len(image_rows(img, "braille")) == 2


def test_mode_follows_the_terminal():
    assert pick_mode("truecolor") == "half" and pick_mode("256") == "half"
    assert pick_mode(None) == "ascii"
    assert pick_mode(None, "braille") == "braille"
    with pytest.raises(ValueError, match="half, braille, ascii"):
        pick_mode("truecolor", "sixel")


def test_smoothed_loss_follows_a_short_curve_and_calms_a_long_one():
    from ddpm_tui.charts import smooth

    young = [0.5, 0.2, 0.1, 0.07, 0.05, 0.04, 0.035, 0.034, 0.034, 0.033, 0.033, 0.033, 0.032]
    assert smooth(young) == pytest.approx(young)  # too few rows to average: drawn as recorded
    rng = random.Random(0)
    noisy = [0.03 + rng.uniform(-0.01, 0.01) for _ in range(2000)]
    tail = smooth(noisy)[-500:]
    assert max(tail) - min(tail) < 0.5 * (max(noisy) - min(noisy))
    assert abs(sum(tail) / len(tail) - 0.03) < 0.002


def test_sequences_are_drawn_as_line_plots_one_panel_per_channel():
    import math

    import numpy as np

    from ddpm_tui.render import is_chart, is_sequences, samples_art

    t = np.arange(64) / 64
    seqs = np.stack([np.stack([np.sin(2 * math.pi * (1 + i) * t), 5 + np.cos(2 * math.pi * t)]) for i in range(6)])
    seqs = seqs.astype(np.float32)
    assert is_sequences(seqs) and is_chart(seqs) and not is_sequences(np.zeros((2, 28, 28), np.uint8))
    art = samples_art(seqs, "ascii", width=60, height=24)
    lines = art.plain.rstrip("\n").splitlines()
    assert 22 <= len(lines) <= 24 and max(len(line) for line in lines) == 60
    assert "channel 0" in art.plain and "channel 1" in art.plain
    assert any(0x2800 < ord(ch) <= 0x28FF for ch in art.plain)  # braille lines
    assert "6.00" in art.plain or "5.9" in art.plain  # the second channel's own units on its axis
    assert "\x1b" not in art.plain and not art.spans  # ascii: no colour


def test_a_chart_leaves_nothing_behind_for_the_next():
    """plotext keeps one figure per process: a sequence plot's subplots must not stay in it,
    or the next chart is drawn into the old grid beside the old lines (and slowly)."""
    import numpy as np

    from ddpm_tui.charts import loss_chart, sequences_chart

    series = {"a": ([1, 2, 3, 4], [1.0, 0.5, 0.3, 0.2])}
    alone = loss_chart(series, width=60, height=12, color=False)
    rng = np.random.default_rng(0)
    seqs = np.stack([rng.uniform(1000, 2000, (4, 32)), rng.uniform(-3, 3, (4, 32))], axis=1).astype(np.float32)
    sequences_chart(seqs, width=60, color=False)
    assert loss_chart(series, width=60, height=12, color=False) == alone
