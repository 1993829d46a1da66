"""``ddpm compare`` shows every run's samples from one common training step, against real tiny
runs: three smoke runs trained once for the module (a: 12 steps, b: 18 steps at another lr,
both with samples and checkpoints every 6; c: 4 steps, sharing no step with the others)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.ddpm_tui.conftest import Cli, error_line

ROOT = Path(__file__).resolve().parents[2]
EVERY_6 = ["--preset", "smoke", "--set", "log_every=3", "--set", "sample_every=6", "--set", "checkpoint_every=6"]


@pytest.fixture(scope="module")
def three(tmp_path_factory) -> Path:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cli = Cli(tmp_path_factory.mktemp("compare") / "experiments.db")
        for args in (
            [*EVERY_6, "--set", "steps=12", "--name", "a"],
            [*EVERY_6, "--set", "steps=18", "--set", "lr=5e-3", "--name", "b"],
            ["--preset", "smoke", "--set", "steps=4", "--set", "sample_every=0", "--set", "checkpoint_every=0", "--name", "c"],
        ):
            res = cli("run", *args)
            assert res.exit_code == 0, res.output
    finally:
        torch.set_num_threads(threads)
    return cli.db


@pytest.fixture
def cli(three) -> Cli:
    return Cli(three)


def grid_blocks(text: str, names: list[str]) -> dict[str, list[str]]:
    """The art printed under each run's ``ID NAME step ...`` line, up to the next such line."""
    blocks: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        head = next((n for n in names if line.split()[1:2] == [n] and " step " in line), None) if line.strip() else None
        if head is not None:
            current = blocks.setdefault(head, [])
        elif current is not None:
            current.append(line)
    return blocks


def test_the_grids_come_from_the_latest_step_all_runs_have_samples_at(cli):
    with cli.store() as s:
        assert s.sample_steps(1) == [6, 12] and s.sample_steps(2) == [6, 12, 18]
    doc = cli.json("compare", "1", "2")
    assert doc["config_differences"] == {"lr": [0.002, 0.005], "steps": [12, 18]}  # the contract's fields are kept
    assert (doc["step"], doc["same_noise"], doc["shared_steps"]) == (12, False, [6, 12])
    assert doc["sample_steps"] == {"1": 12, "2": 12}  # not b's latest (18): runs are judged on equal training
    text = cli("compare", "1", "2", "--art", "ascii").stdout
    assert "samples at step 12 (all these runs have samples at steps 6, 12)" in text
    assert "1 a step 12, ddim-10 eta 0" in text and "2 b step 12, ddim-10 eta 0" in text


def test_step_picks_another_shared_step_and_names_the_shared_ones_when_a_run_lacks_it(cli):
    doc = cli.json("compare", "1", "2", "--step", "6")
    assert doc["step"] == 6 and doc["sample_steps"] == {"1": 6, "2": 6}
    at6 = grid_blocks(cli("compare", "1", "2", "--step", "6", "--art", "ascii").stdout, ["a", "b"])
    at12 = grid_blocks(cli("compare", "1", "2", "--art", "ascii").stdout, ["a", "b"])
    assert at6["a"] and at6["a"] != at12["a"]  # another step, another grid
    for step in ("18", "7"):
        res = cli("compare", "1", "2", "--step", step)
        assert res.exit_code == 1
        assert error_line(res) == (
            f"error: --step {step}: run 1 (a) has no samples at step {step}; they all have samples at steps 6, 12"
        )


def test_runs_sharing_no_step_show_their_latest_grids_under_a_note(cli):
    doc = cli.json("compare", "1", "3")
    assert doc["step"] is None and doc["shared_steps"] == [] and doc["sample_steps"] == {"1": 12, "3": 4}
    text = cli("compare", "1", "3", "--art", "ascii").stdout
    assert "these runs have no sample step in common: each grid is its run's latest" in text
    assert "1 a step 12" in text and "3 c step 4" in text
    res = cli("compare", "1", "3", "--step", "4")
    assert res.exit_code == 1 and "run 1 (a) has no samples at step 4; these runs have no samples at a common step" in error_line(
        res
    )


def test_sampling_options_need_same_noise(cli):
    for args in (["--seed", "3"], ["--sampler", "ddpm"], ["--steps", "5"], ["--device", "cpu"]):
        res = cli("compare", "1", "2", *args)
        assert res.exit_code == 1, args
        assert f"{args[0]}: only for fresh grids; add --same-noise" in error_line(res)


def test_same_noise_plans_one_step_spec_and_seed_and_refuses_a_missing_checkpoint(cli):
    doc = cli.json("compare", "1", "2", "--same-noise", "--seed", "7", "--sampler", "ddim", "--steps", "5")
    assert (doc["step"], doc["same_noise"], doc["shared_steps"]) == (12, True, [6, 12])
    assert doc["sampling"] == {"step": 12, "sampler": "ddim", "steps": 5, "eta": 0.0, "guidance": None, "seed": 7, "n": 4,
                               "eta_window": 1.0}  # fmt: skip
    res = cli("compare", "1", "2", "--same-noise", "--step", "18")
    assert res.exit_code == 1
    assert (
        error_line(res) == "error: --step 18: run 1 (a) has no checkpoints at step 18; they all have checkpoints at steps 6, 12"
    )
    res = cli("compare", "1", "3", "--same-noise")
    assert res.exit_code == 1 and "no checkpoint at a common step (run 1: 6, 12; run 3: 4)" in error_line(res)
    res = cli("compare", "1", "2", "--same-noise", "--sampler", "ddpm", "--steps", "5")
    assert res.exit_code == 1 and "ddpm sampler always takes T=50 steps" in error_line(res)


def test_same_noise_draws_each_runs_checkpoint_with_the_same_noise(cli):
    """The grids are draw()'s for each checkpoint with the one seed and spec; two runs holding
    the same weights then show the same digits, while the recorded grids of those runs, and
    the fresh grids of runs with other weights, differ."""
    from core.generate import draw
    from core.sampling_spec import SamplingSpec
    from ddpm_tui.compare_samples import draw_same_noise, same_noise_plan

    with cli.store() as s:
        plan = same_noise_plan(s, [s.get_run(1), s.get_run(2)], 6, seed=3)
        assert plan.spec == SamplingSpec("ddim", 10, 0.0) and plan.n == 4
        grids = draw_same_noise(plan, "cpu")
        for rid in (1, 2):
            direct = draw(s.checkpoint_at(rid, 6).path, 4, SamplingSpec("ddim", 10, 0.0), seed=3, device="cpu").data
            assert np.array_equal(grids[rid], direct)
    assert not np.array_equal(grids[1], grids[2])  # other weights, other digits

    text = cli("compare", "1", "2", "--same-noise", "--art", "ascii").stdout
    assert "same noise at step 12: ddim-10 eta 0, seed 0, 4 from each checkpoint" in text
    fresh = grid_blocks(text, ["a", "b"])
    assert fresh["a"] and fresh["a"] != fresh["b"]


def test_two_runs_with_the_same_weights_draw_the_same_digits(cli, tmp_path):
    shutil.copy(cli.db, tmp_path / "experiments.db")
    shutil.copytree(cli.db.parent / "experiments.runs", tmp_path / "experiments.runs")
    copy = Cli(tmp_path / "experiments.db")
    with copy.store() as s:
        shutil.copy(s.checkpoint_at(1, 12).path, s.checkpoint_at(2, 12).path)  # b now holds a's weights at step 12
        recorded = (s.samples_at(1, 12).data, s.samples_at(2, 12).data)
    assert not np.array_equal(*recorded)
    fresh = grid_blocks(copy("compare", "1", "2", "--same-noise", "--art", "ascii").stdout, ["a", "b"])
    assert fresh["a"] and fresh["a"] == fresh["b"]
    other_seed = grid_blocks(copy("compare", "1", "2", "--same-noise", "--seed", "1", "--art", "ascii").stdout, ["a", "b"])
    assert other_seed["a"] == other_seed["b"] != fresh["a"]


def test_compare_imports_torch_only_for_same_noise(cli):
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from ddpm_tui.cli import app\n"
        f"db = {str(cli.db)!r}\n"
        "for args in (['1', '2'], ['1', '2', '--step', '6'], ['1', '3'], ['1', '2', '--step', '7'], ['1', '2', '--json']):\n"
        "    res = CliRunner().invoke(app, ['compare', *args, '--art', 'ascii', '--db', db])\n"
        "    assert res.exit_code == (1 if '7' in args else 0), res.output\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "res = CliRunner().invoke(app, ['compare', '1', '2', '--same-noise', '--art', 'ascii', '--db', db])\n"
        "assert res.exit_code == 0, res.output\n"
        "print(json.dumps('torch' in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", "import json\n" + code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) is True  # the same check sees torch once it is loaded
