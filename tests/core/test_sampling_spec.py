"""The one place a sampling request is resolved, and the protocol figures carry."""

import pytest

from core.config import preset
from core.sampling_spec import Protocol, SamplingError, SamplingSpec, resolve_spec


def test_defaults_are_the_runs_own_sampler_steps_and_eta():
    quick = preset("quick")
    assert resolve_spec(quick) == SamplingSpec("ddim", 50, 1.8)
    assert resolve_spec(quick.to_dict()) == resolve_spec(quick)  # a stored config reads the same
    assert resolve_spec(quick, steps=10) == SamplingSpec("ddim", 10, 1.8)
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
