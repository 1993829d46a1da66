import numpy as np
import pytest

from ddpm_tui.reverse_panels import frames_for, panel_steps, panels_text, reverse_panels, scatter_rows, states


def ddpm_draw(T: int, n: int = 5):
    """A DDPM trajectory as core.samplers records it with every step: frame i follows the
    network call at t = T-1-i and holds x_t (1-based), filled with the value t to tell them apart."""
    start = np.full((n, 2), float(T))
    timesteps = list(range(T - 1, -1, -1))
    frames = [np.full((n, 2), float(t)) for t in timesteps]
    return start, frames, timesteps


def test_ten_panels_from_x_T_to_x_0():
    assert panel_steps(100) == [100, 89, 78, 67, 56, 44, 33, 22, 11, 0]
    assert panel_steps(1000)[:3] == [1000, 889, 778] and panel_steps(10) == [10, 9, 8, 7, 6, 4, 3, 2, 1, 0]
    start, frames, timesteps = ddpm_draw(100)
    panels = reverse_panels(start, frames, timesteps, 100)
    assert [p.title for p in panels] == ["x_100", "x_89", "x_78", "x_67", "x_56", "x_44", "x_33", "x_22", "x_11", "x_0"]
    # each panel holds the state of its own timestep: x_T the noise, x_0 the final frame
    assert [int(p.points[0, 0]) for p in panels] == [100, 89, 78, 67, 56, 44, 33, 22, 11, 0]
    assert panels[-1].points is frames[-1]


def test_a_ddim_draw_shows_the_nearest_recorded_states():
    # trailing DDIM over T = 20 in 5 steps: calls at 19, 15, 11, 7, 3 leave x_16, x_12, x_8, x_4, x_0
    T, ts = 20, [19, 15, 11, 7, 3]
    frames = [np.zeros((1, 2)) + i for i in range(5)]
    assert [s for s, _ in states(np.zeros((1, 2)), frames, ts, T)] == [20, 16, 12, 8, 4, 0]
    panels = reverse_panels(np.zeros((1, 2)), frames, ts, T)
    # panel_steps(20) is 20, 18, 16, 13, 11, 9, 7, 4, 2, 0; a tie (18, 2) goes to the noisier state
    assert [p.step for p in panels] == [20, 20, 16, 12, 12, 8, 8, 4, 4, 0]
    assert frames_for(5) == 5
    with pytest.raises(ValueError, match="no trajectory"):
        reverse_panels(None, [], [], T)


def test_scatter_puts_each_point_in_its_braille_dot():
    rows = scatter_rows(np.array([[-1.59, 1.59], [1.59, -1.59], [9.0, 0.0], [np.nan, 0.0]]), cols=4, rows=2)
    assert len(rows) == 2 and all(len(r) == 4 for r in rows)
    assert rows[0][0] == chr(0x2800 + 0x01)  # top left dot
    assert rows[1][3] == chr(0x2800 + 0x80)  # bottom right dot
    assert sum(ch != chr(0x2800) for r in rows for ch in r) == 2  # the point outside and the NaN are left out


def test_panels_text_lays_ten_titled_boxes_out_to_the_width():
    start, frames, timesteps = ddpm_draw(100)
    panels = reverse_panels(start, frames, timesteps, 100)
    text = panels_text(panels, width=80, cols=16, rows=4).plain
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    titles = [w for line in lines for w in line.split() if w.startswith("x_")]
    assert titles == [p.title for p in panels]
    assert text.count("\u250c") == 10 and lines[0].split() == ["x_100", "x_89", "x_78", "x_67"]  # four boxes of 18 fit
