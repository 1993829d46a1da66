"""Sweep expansion: grids, seeds, tuple values in brackets, random draws, and refusals."""

import pytest

from core.config import ConfigError
from core.sweep import describe, expand, split_values


def test_a_grid_times_seeds_names_each_run_by_its_setting():
    runs = expand("lr-vs-obj", "smoke", {"lr": "1e-3,2e-3,4e-3", "objective": "eps,v", "steps": "30"}, seeds=3)
    assert len(runs) == 18 and describe(runs) == "18 runs: 3 values of lr x 2 values of objective x 3 seeds"
    assert runs[0].name == "lr-vs-obj/lr=1e-3,objective=eps,seed=0"
    assert runs[-1].name == "lr-vs-obj/lr=4e-3,objective=v,seed=2"
    assert {(r.config.lr, r.config.objective, r.config.seed) for r in runs} == {
        (lr, o, s) for lr in (1e-3, 2e-3, 4e-3) for o in ("eps", "v") for s in (0, 1, 2)
    }
    assert all(r.config.steps == 30 for r in runs)  # one value: set on every run, not in the names
    assert len({r.name for r in runs}) == 18


def test_tuple_values_go_in_brackets():
    assert split_values("channel_mult", "[1,2],[1,2,2]") == ["[1,2]", "[1,2,2]"]
    assert split_values("attn_resolutions", "(7),(14,7)") == ["(7)", "(14,7)"]
    runs = expand("s", "smoke", {"channel_mult": "[1],[1,2]", "patch": "1"})
    assert [r.config.channel_mult for r in runs] == [(1,), (1, 2)] and runs[1].name == "s/channel_mult=[1,2]"
    with pytest.raises(ConfigError, match="unbalanced brackets"):
        split_values("channel_mult", "[1,2],[1,2")
    with pytest.raises(ConfigError, match="empty value"):
        split_values("lr", "1e-3,,2e-3")
    assert split_values("data_dir", " ") == [""]  # blank text is one blank value, for the field to judge


def test_seeds_count_up_from_the_presets_seed():
    runs = expand("s", "smoke", {"seed": "10"}, seeds=2)
    assert [r.config.seed for r in runs] == [10, 11] and [r.name for r in runs] == ["s/seed=10", "s/seed=11"]
    with pytest.raises(ConfigError, match="not both"):
        expand("s", "smoke", {"seed": "1,2"}, seeds=2)


def test_random_draws_distinct_settings_reproducibly():
    grid = {"lr": "1e-3,2e-3,3e-3,4e-3", "objective": "eps,v,x0"}
    a = expand("s", "smoke", grid, random_n=5)
    assert len(a) == 5 and len({r.name for r in a}) == 5
    assert [r.name for r in expand("s", "smoke", grid, random_n=5)] == [r.name for r in a]
    assert [r.name for r in expand("other", "smoke", grid, random_n=5)] != [r.name for r in a]  # seeded by the study
    with pytest.raises(ConfigError, match="more than the grid's 12 settings"):
        expand("s", "smoke", grid, random_n=13)


def test_one_bad_value_anywhere_refuses_the_whole_sweep_one_line_each():
    with pytest.raises(ConfigError) as err:
        expand("s", "smoke", {"lr": "1e-3,-1", "T": "50,0", "loss": "l2"}, seeds=2)
    assert sorted(e.split(":")[0] for e in err.value.errors) == ["T", "lr"]
    assert len(err.value.errors) == len(set(err.value.errors))  # each problem once, not once per run
    with pytest.raises(ConfigError, match="listed twice"):
        expand("s", "smoke", {"lr": "1e-3,1e-3"})
    with pytest.raises(ConfigError, match="quick, quick-cond, classic"):
        expand("s", "nope", {})
