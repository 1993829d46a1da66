"""bench/sampler_table.py reads its whole plan before the first draw."""

import importlib.util
import sys
from pathlib import Path

import pytest

from core.config import preset
from core.errors import DDPMError
from core.sampling_spec import SamplingSpec

ROOT = Path(__file__).resolve().parents[2]


def _sampler_table():
    spec = importlib.util.spec_from_file_location("sampler_table", ROOT / "bench" / "sampler_table.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["sampler_table"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_every_entry_and_step_count_is_one_spec_in_order():
    plan = _sampler_table().plan
    specs = plan(preset("quick"), "ddim:1.8:0.7,dpmpp2m:8:0.75,ddim", "15,50", "run", None)
    assert specs == [
        SamplingSpec("ddim", 15, 1.8, eta_window=0.7),
        SamplingSpec("ddim", 50, 1.8, eta_window=0.7),
        SamplingSpec("dpmpp2m", 15, 8.0, eta_window=0.75),
        SamplingSpec("dpmpp2m", 50, 8.0, eta_window=0.75),
        SamplingSpec("ddim", 15, 1.8, eta_window=0.7),  # the run's own eta and window
        SamplingSpec("ddim", 50, 1.8, eta_window=0.7),
    ]
    assert plan(preset("quick"), "ddim,dpmpp2m", "15", "0.5", None) == [
        SamplingSpec("ddim", 15, 0.5),  # --eta is DDIM's alone
        SamplingSpec("dpmpp2m", 15, 8.0, eta_window=0.75),  # quick's own sampler, with its own eta
    ]


@pytest.mark.parametrize(
    "samplers,steps,eta,words",
    [
        ("ddim:1.8:0.7,dpmpp2m:8:O.75", "15", "run", "--samplers entry 'dpmpp2m:8:O.75': window"),
        ("ddim:x", "15", "run", "--samplers entry 'ddim:x': eta"),
        ("ddim", "15,fifty", "run", "--steps '15,fifty'"),
        ("ddim", "15", "high", "--eta 'high'"),
        ("ddim,euler", "15", "run", "sampler 'euler' is not one of"),
        ("dpmpp2m:0.5:0.7", "15", "run", "drop the window"),
    ],
)
def test_a_bad_entry_anywhere_is_one_line_before_any_draw(samplers, steps, eta, words):
    with pytest.raises(DDPMError) as err:
        _sampler_table().plan(preset("quick"), samplers, steps, eta, None)
    assert words in str(err.value) and "\n" not in str(err.value)
