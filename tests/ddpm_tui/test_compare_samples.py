"""The common step of several runs, and how its errors name the steps that would work."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ddpm_tui.compare_samples import CompareError, SampleView, choose_step, shared_steps, steps_text


def run(rid: int, name: str):
    """What choose_step reads of a run (the CLI tests use real ones)."""
    return SimpleNamespace(id=rid, name=name)


def test_the_latest_shared_step_is_the_default_and_an_asked_step_must_be_shared():
    runs = [run(1, "a"), run(2, "b")]
    steps = {1: [6, 12], 2: [6, 12, 18]}
    assert shared_steps(steps) == [6, 12] and shared_steps({}) == []
    assert choose_step(runs, steps, None, "samples") == 12
    assert choose_step(runs, steps, 6, "samples") == 6
    with pytest.raises(
        CompareError, match=r"^--step 18: run 1 \(a\) has no samples at step 18; they all have samples at steps 6, 12$"
    ):
        choose_step(runs, steps, 18, "samples")
    assert choose_step(runs, {1: [4], 2: [6]}, None, "samples") is None
    with pytest.raises(
        CompareError, match="run 2 \\(b\\) has no checkpoints at step 4; these runs have no checkpoints at a common step"
    ):
        choose_step(runs, {1: [4], 2: [6]}, 4, "checkpoints")


def test_a_long_list_of_steps_keeps_its_ends_on_one_line():
    assert steps_text([6, 12]) == "6, 12"
    assert steps_text(list(range(10, 1010, 10))) == "10, 20, 30, ..., 940, 950, 960, 970, 980, 990, 1000 (100 steps)"


def test_the_note_appears_only_when_grids_come_from_different_steps():
    assert SampleView(None, [], {1: None, 2: None}).note is None  # nothing to show, nothing to warn about
    assert SampleView(12, [12], {1: object(), 2: object()}).note is None
    assert "no sample step in common" in SampleView(None, [], {1: object(), 2: None}).note
