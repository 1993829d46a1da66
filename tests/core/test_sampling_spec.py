"""The one place a sampling request is resolved, and the protocol figures carry."""

import pytest

from core.config import preset
from core.sampling_spec import Protocol, SamplingError, SamplingSpec, parse_classes, resolve_spec, sample_labels


def test_defaults_are_the_runs_own_sampler_steps_and_eta():
    quick = preset("quick", {"sampler": "ddim"})  # quick's DDIM: 50 steps, eta 1.8, window 0.7
    assert resolve_spec(quick) == SamplingSpec("ddim", 50, 1.8, eta_window=0.7)
    assert resolve_spec(quick.to_dict()) == resolve_spec(quick)  # a stored config reads the same
    assert resolve_spec(quick, steps=10) == SamplingSpec("ddim", 10, 1.8, eta_window=0.7)
    assert resolve_spec({k: v for k, v in quick.to_dict().items() if k != "eta_window"}).eta_window == 1.0  # an older run
    assert resolve_spec(quick, eta=0) == SamplingSpec("ddim", 50, 0.0)
    assert resolve_spec(quick, sampler="ddpm") == SamplingSpec("ddpm", 1000, 1.0)
    assert resolve_spec(preset("quick", {"sampler": "ddpm"})).steps == 1000


@pytest.mark.parametrize(
    "kw,words",
    [
        ({"sampler": "ddpm", "steps": 50}, "always takes T=1000 steps"),
        ({"sampler": "ddpm", "eta": 0.5}, "eta sets the ddim sampler's noise"),
        ({"steps": 0}, "use 1 to 1000"),
        ({"steps": 1001}, "T=1000"),
        ({"eta": float("nan")}, "eta: nan is out of range"),
        ({"eta": 11}, "from 0 to 10"),
        ({"sampler": "euler"}, "ddpm, ddim"),
    ],
)
def test_impossible_requests_are_one_line_errors(kw, words):
    with pytest.raises(SamplingError) as err:
        resolve_spec(preset("quick"), **kw)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_protocol_keys_name_what_must_match_and_ignore_the_seed():
    spec = SamplingSpec("ddim", 50, 1.8)
    assert spec.label == "ddim-50 eta 1.8" and SamplingSpec("ddpm", 500, 1.0).label == "ddpm-500"
    a, b = Protocol(spec, 1000, seed=0), Protocol(spec, 1000, seed=1)
    assert a.key == b.key == "ddim-50 eta 1.8, n=1000"
    assert Protocol(spec, 500).key != a.key and Protocol(SamplingSpec("ddim", 50, 0.0), 1000).key != a.key
    row = {"sampler": "ddim", "steps": 50, "eta": 1.8, "n": 1000, "seed": 3}
    assert Protocol.from_row(row) == Protocol(spec, 1000, 3)


def test_classes_are_read_as_the_cli_and_the_sample_screen_both_write_them():
    assert parse_classes(None) is None and parse_classes([]) is None
    assert parse_classes(["7"]) == [7]
    assert parse_classes(["3,5"]) == [3, 5] and parse_classes([" 3 , 5 "]) == [3, 5]
    assert parse_classes(["0-9"]) == list(range(10))
    assert parse_classes(["7", "1-2", "5,6"]) == [7, 1, 2, 5, 6]  # in the order given


@pytest.mark.parametrize("text", ["seven", "", "3,", "-1", "5-3", "1-x", "1.5", "3;5"])
def test_a_class_that_is_no_class_is_one_line_naming_the_option(text):
    with pytest.raises(SamplingError) as err:
        parse_classes([text])
    message = str(err.value)
    assert message.startswith(f"--class {text!r}: expected a class such as 7") and "\n" not in message
    with pytest.raises(SamplingError) as err:
        parse_classes([text], what="classes")
    assert str(err.value).startswith(f"classes {text!r}: expected")


def test_a_class_the_run_lacks_names_the_field_it_came_from():
    cond = preset("smoke", {"cond": "class"})
    assert sample_labels(cond, 4, [3, 5]) == [3, 3, 5, 5]
    with pytest.raises(SamplingError, match=r"^classes 12: this run's classes are 0 to 9$"):
        sample_labels(cond, 4, [12], what="classes")


def test_dpm_solver_takes_an_eta_of_its_own_and_not_ddims():
    quick = preset("quick", {"sampler": "ddim"})  # DDIM with eta 1.8
    assert resolve_spec(quick, "dpmpp2m", 15).eta == 0.0 and resolve_spec(quick, "dpmpp2m", 15).label == "dpmpp2m-15"
    assert resolve_spec(quick, "dpmpp2m", 15, eta=1).label == "dpmpp2m-15 eta 1"  # the SDE solver
    own = preset("quick", {"eta": 1.0, "sample_steps": 20, "ddim_steps": None, "ddim_eta": None, "ddim_eta_window": None})
    assert resolve_spec(own).label == "dpmpp2m-20 eta 1" and resolve_spec(own, "ddim").eta == 1.0


def test_an_eta_window_is_part_of_the_spec_its_label_and_its_protocol():
    """Extra noise confined to the clean end of the chain is another way of sampling: its
    figures must never join a series drawn without the window."""
    windowed = SamplingSpec("ddim", 50, 1.8, eta_window=0.7)
    assert windowed.label == "ddim-50 eta 1.8 window 0.7" and SamplingSpec("ddim", 50, 1.8).label == "ddim-50 eta 1.8"
    assert SamplingSpec("dpmpp2m", 15, 3.0, 2.0, eta_window=0.5).label == "dpmpp2m-15 eta 3 window 0.5 w 2"
    assert Protocol(windowed, 1000).key != Protocol(SamplingSpec("ddim", 50, 1.8), 1000).key
    row = {"sampler": "ddim", "steps": 50, "eta": 1.8, "eta_window": 0.7, "n": 1000, "seed": 3}
    assert Protocol.from_row(row) == Protocol(windowed, 1000, 3)
    old = {"sampler": "ddim", "steps": 50, "eta": 1.8, "eta_window": None, "n": 1000, "seed": 3}  # recorded before it existed
    assert Protocol.from_row(old).spec.eta_window == 1.0
    assert windowed.as_dict()["eta_window"] == 0.7


def test_the_eta_window_defaults_to_the_runs_own_and_is_dropped_where_it_changes_nothing():
    run = preset("quick", {"sampler": "ddim", "eta": 1.8, "eta_window": 0.7})
    assert resolve_spec(run) == SamplingSpec("ddim", 50, 1.8, eta_window=0.7)
    assert resolve_spec(run, eta=2.5).eta_window == 0.7  # the run's window with another eta
    assert resolve_spec(run, eta_window=1) == SamplingSpec("ddim", 50, 1.8)  # asked away
    assert resolve_spec(run, eta_window=0.5).label == "ddim-50 eta 1.8 window 0.5"
    # eta at most 1 adds no extra noise, so the run's window means nothing and is not named
    assert resolve_spec(run, eta=1) == SamplingSpec("ddim", 50, 1.0) and resolve_spec(run, eta=0).label == "ddim-50 eta 0"
    assert resolve_spec(run, "ddpm") == SamplingSpec("ddpm", 1000, 1.0)
    # another sampler does not inherit DDIM's window, as it does not inherit its eta
    assert resolve_spec(run, "dpmpp2m", 15, eta=3).label == "dpmpp2m-15 eta 3"
    assert resolve_spec(run, "dpmpp2m", 15, eta=3, eta_window=0.7).label == "dpmpp2m-15 eta 3 window 0.7"
    own = preset("quick", {"sampler": "dpmpp2m", "eta": 3.0, "eta_window": 0.6, "sample_steps": 15})
    assert resolve_spec(own).label == "dpmpp2m-15 eta 3 window 0.6"


@pytest.mark.parametrize(
    "kw,words",
    [
        ({"eta_window": 1.5}, "eta_window: 1.5 is out of range; use a number from 0 to 1"),
        ({"eta_window": float("nan")}, "eta_window: nan is out of range"),
        ({"eta_window": 0.7, "eta": 0.5}, "eta_window: it confines an eta above 1, and eta 0.5 adds no extra noise"),
        ({"eta_window": 0.7, "sampler": "ddpm"}, "eta_window: the ddpm sampler's noise is fixed"),
    ],
)
def test_an_eta_window_that_cannot_apply_is_a_one_line_error(kw, words):
    with pytest.raises(SamplingError) as err:
        resolve_spec(preset("quick"), **kw)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_resolved_spec_is_checked_against_another_run_with_every_field_it_carries():
    """What draw (the sample job's command line) and the same-noise comparison (other runs)
    do: nothing of the spec is replaced by the run's own, and a run that cannot honour it says so."""
    from core.sampling_spec import resolve_for

    quick = preset("quick")  # DPM-Solver++ 15 eta 8 window 0.75; DDIM 50 eta 1.8 window 0.7
    for spec in (SamplingSpec("ddim", 20, 1.8), SamplingSpec("dpmpp2m", 15, 8.0, eta_window=0.75), SamplingSpec("ddim", 5, 0.0)):
        assert resolve_for(quick, spec) == spec
    with pytest.raises(SamplingError, match="guidance: this run is unconditional"):
        resolve_for(quick, SamplingSpec("ddim", 50, 1.8, 2.0))
    with pytest.raises(SamplingError, match="T=1000"):
        resolve_for(quick, SamplingSpec("ddpm", 100, 1.0))


def test_quick_draws_with_dpm_solver_and_asks_for_ddim_get_ddims_own_steps_eta_and_window():
    """quick's default is DPM-Solver++ at 15 steps with eta 8 in a 0.75 window; DDIM's best on
    the same weights is 50 steps with eta 1.8 in a 0.7 window, and that is what asking for
    DDIM (bench/quality.py --sampler ddim, ddpm sample --sampler ddim) must give, not DDIM
    with DPM-Solver++'s eta of 8."""
    quick = preset("quick")
    assert resolve_spec(quick) == SamplingSpec("dpmpp2m", 15, 8.0, eta_window=0.75)
    assert resolve_spec(quick, "ddim") == SamplingSpec("ddim", 50, 1.8, eta_window=0.7)
    assert resolve_spec(quick.to_dict(), "ddim") == resolve_spec(quick, "ddim")
    assert resolve_spec(quick, "ddim", 20) == SamplingSpec("ddim", 20, 1.8, eta_window=0.7)
    assert resolve_spec(quick, "ddim", eta=2.5) == SamplingSpec("ddim", 50, 2.5, eta_window=0.7)
    assert resolve_spec(quick, "ddim", eta=0) == SamplingSpec("ddim", 50, 0.0)
    assert resolve_spec(quick, "dpmpp2m", 20) == SamplingSpec("dpmpp2m", 20, 8.0, eta_window=0.75)


def test_a_run_without_ddim_settings_of_its_own_draws_ddim_as_before():
    """Runs recorded before the ddim_* fields, and presets that leave them unset, give DDIM the
    run's own steps, eta and window, as they always did."""
    cond = preset("quick-cond")
    assert resolve_spec(cond, "ddim") == SamplingSpec("ddim", 20, 1.0, 1.5)
    old = {k: v for k, v in preset("quick").to_dict().items() if not k.startswith("ddim_")}
    assert resolve_spec(old, "ddim") == SamplingSpec("ddim", 15, 8.0, eta_window=0.75)
    assert resolve_spec(dict(old, ddim_eta=None, ddim_steps=None, ddim_eta_window=None), "ddim").steps == 15
