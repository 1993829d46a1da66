import json

import pytest

from core.config import FIELDS, PRESETS, ConfigError, RunConfig, default_preset, from_json, preset, replace


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_and_round_trip_through_json(name):
    cfg = preset(name, {"data_dir": "/data"} if name == "folder" else {})
    again = from_json(cfg.to_json())
    assert again == cfg
    assert json.loads(cfg.to_json())["channel_mult"] == list(cfg.channel_mult)


def test_text_values_are_parsed_by_field_type():
    cfg = preset("quick", {"steps": "500", "lr": "3e-4", "T": "250", "channel_mult": "1,2,2", "patch": "1",
                           "schedule": "linear", "amp": "false", "attn_resolutions": "[7]", "batch_size": "6.4e1"})  # fmt: skip
    assert (cfg.steps, cfg.lr, cfg.T, cfg.channel_mult, cfg.amp, cfg.attn_resolutions, cfg.batch_size) == (
        500,
        3e-4,
        250,
        (1, 2, 2),
        False,
        (7,),
        64,
    )


@pytest.mark.parametrize(
    "overrides,field,words",
    [
        ({"lr": "-1"}, "lr", "above 0"),
        ({"T": "0"}, "T", "between 1"),
        ({"schedule": "exponential"}, "schedule", "linear, cosine"),
        ({"objective": "score"}, "objective", "eps, x0, v"),
        ({"loss": "l3"}, "loss", "l2, l1, huber"),
        ({"steps": "ten"}, "steps", "whole number"),
        ({"batch_size": "12.5"}, "batch_size", "whole number"),
        ({"lr": "fast"}, "lr", "a number"),
        ({"amp": "maybe"}, "amp", "true or false"),
        ({"channel_mult": "1,x"}, "channel_mult", "whole numbers"),
        ({"channel_mult": "1,2,2,2"}, "channel_mult", "does not divide"),
        ({"sample_steps": "5000"}, "sample_steps", "T=1000"),
        ({"dataset": "cifar"}, "dataset", "mnist, fashion, scurve, folder"),
        ({"dataset": "folder"}, "data_dir", "folder of images"),
        ({"batch_size": "10", "grad_accum": "3"}, "batch_size", "grad_accum"),
        ({"stpes": "10"}, "stpes", "unknown setting"),
        ({"eta": "-0.1"}, "eta", "between 0 and 10"),
        ({"eta": "11"}, "eta", "between 0 and 10"),
        ({"eta_window": "1.2"}, "eta_window", "between 0 and 1"),
        ({"eta_window": "-0.1"}, "eta_window", "between 0 and 1"),
        ({"t_sampling": "stratified"}, "t_sampling", "uniform, antithetic, logit_normal"),
        ({"model": "mlp_embed"}, "model", "use model=unet"),
    ],
)
def test_bad_values_are_rejected_with_one_line_naming_the_field(overrides, field, words):
    with pytest.raises(ConfigError) as err:
        preset("quick", overrides)
    assert len(err.value.errors) == 1
    line = err.value.errors[0]
    assert line.startswith(f"{field}:") and words in line and "\n" not in line


def test_every_bad_field_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        preset("quick", {"lr": "0", "T": "-5", "schedule": "nope"})
    fields = sorted(e.split(":")[0] for e in err.value.errors)
    assert fields == ["T", "lr", "schedule"]


def test_unknown_preset_and_unknown_key():
    with pytest.raises(ConfigError, match="quick, quick-cond, classic"):
        preset("fast")
    with pytest.raises(ConfigError, match="did you mean"):
        replace(RunConfig(), {"step": 5})


def test_field_names_promised_to_the_cli_exist():
    for name in ("steps", "batch_size", "lr", "T", "schedule", "objective", "loss", "channels", "channel_mult", "seed"):
        assert name in FIELDS


def test_default_preset_follows_the_device():
    assert default_preset("cuda") == "classic" and default_preset("cpu") == "quick"


@pytest.mark.parametrize(
    "field",
    [
        "ema_decay",
        "grad_clip",
        "min_snr_gamma",
        "eta",
        "eta_window",
        "lr",
        "dropout",
        "offset_noise",
        "weight_decay",
        "vlb_weight",
    ],
)
@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "1e400"])
def test_non_finite_numbers_are_refused_in_one_line(field, text):
    """Every range check is false for NaN: without this, ema_decay=nan was recorded and then
    sampled NaN images, grad_clip=nan silently turned clipping off."""
    with pytest.raises(ConfigError) as err:
        preset("quick", {field: text})
    assert err.value.errors == [f"{field}: expected a finite number, got {text!r}"]


@pytest.mark.parametrize("field", ["ema_decay", "grad_clip", "eta"])
def test_non_finite_values_set_directly_are_refused_too(field):
    import dataclasses

    cfg = dataclasses.replace(preset("quick"), **{field: float("nan")})
    with pytest.raises(ConfigError, match=f"{field}: nan is not a finite number"):
        cfg.validate()
    with pytest.raises(ConfigError, match=f"{field}: expected a finite number"):
        RunConfig.from_dict({**preset("quick").to_dict(), field: float("inf")})


def test_scurve_seed_is_the_written_out_recipe():
    cfg = preset("scurve-seed")
    assert (cfg.dataset, cfg.model, cfg.hidden, cfg.depth) == ("scurve", "mlp_embed", 128, 3)
    assert (cfg.T, cfg.schedule) == (100, "sigmoid-beta")
    assert (cfg.t_sampling, cfg.optimizer, cfg.lr, cfg.batch_size, cfg.grad_clip) == ("antithetic", "adam", 1e-3, 128, 1.0)
    assert (cfg.warmup, cfg.lr_decay, cfg.weight_decay, cfg.min_snr_gamma, cfg.objective) == (0, "constant", 0.0, 0.0, "eps")
    assert (cfg.sampler, cfg.sample_steps, cfg.clip_x0, cfg.ema_decay) == ("ddpm", 100, False, 0.0)
    with pytest.raises(ConfigError, match="model=mlp or mlp_embed"):
        preset("scurve-seed", {"model": "unet"})


def test_quick_alone_draws_logit_normal_timesteps_under_cpu_bf16():
    """The levers measured on two training seeds are quick's; old runs (neither field in their
    config) and every other preset train as before."""
    assert (RunConfig().t_sampling, RunConfig().cpu_bf16) == ("uniform", False)
    assert (preset("quick").t_sampling, preset("quick").cpu_bf16) == ("logit_normal", True)
    others = {name: PRESETS[name].get("t_sampling", "uniform") for name in PRESETS if name not in ("scurve-seed", "quick")}
    assert set(others.values()) == {"uniform"}, others
    assert not any(PRESETS[name].get("cpu_bf16") for name in PRESETS if name != "quick")


@pytest.mark.parametrize(
    "name,overrides,field,words",
    [
        ("quick", {"time_embedding": "rope"}, "time_embedding", "sinusoidal, random_fourier, learned_fourier"),
        ("scurve", {"time_embedding": "random_fourier"}, "time_embedding", "leave time_embedding=sinusoidal for model=mlp"),
        ("scurve", {"self_condition": "true"}, "self_condition", "only the U-Net"),
        ("scurve", {"learned_variance": "true"}, "learned_variance", "only the U-Net"),
        ("quick", {"vlb_weight": "-0.1"}, "vlb_weight", "between 0 and 1"),
        ("quick", {"vlb_weight": "2"}, "vlb_weight", "between 0 and 1"),
        ("quick", {"hflip": "true"}, "hflip", "a flipped 7 is not a 7"),
        ("fashion", {"hflip": "true"}, "hflip", "a flipped 7 is not a 7"),
        ("scurve", {"hflip": "true"}, "hflip", "holds no images"),
        ("quick", {"image_mode": "rgb"}, "image_mode", "only folder images"),
        ("folder", {"image_mode": "cmyk"}, "image_mode", "auto, rgb, l"),
        ("folder", {"image_mode": "rgb", "image_channels": "1"}, "image_channels", "set image_channels=3"),
    ],
)
def test_engine_options_are_refused_in_one_line(name, overrides, field, words):
    with pytest.raises(ConfigError) as err:
        preset(name, {**overrides, "data_dir": "/data"} if name == "folder" else overrides)
    assert len(err.value.errors) == 1
    line = err.value.errors[0]
    assert line.startswith(f"{field}:") and words in line and "\n" not in line


def test_engine_options_default_to_the_engine_of_before():
    """A config recorded before these options existed (no such keys) reads with the defaults
    that reproduce it: what lets old runs resume and old checkpoints sample."""
    old = {
        k: v
        for k, v in preset("quick").to_dict().items()
        if k not in {"time_embedding", "image_mode", "hflip", "self_condition", "learned_variance", "vlb_weight"}
    }
    cfg = RunConfig.from_dict(old)
    assert (cfg.time_embedding, cfg.image_mode, cfg.hflip) == ("sinusoidal", "auto", False)
    assert (cfg.self_condition, cfg.learned_variance, cfg.vlb_weight) == (False, False, 0.001)
    assert cfg == preset("quick")


def test_image_mode_sets_the_channels_and_hflip_suits_folders():
    gray = preset("folder", {"data_dir": "/data", "image_mode": "l", "hflip": "true"})
    assert (gray.image_channels, gray.data_channels, gray.sample_shape, gray.hflip) == (1, 1, (1, 32, 32), True)
    assert from_json(gray.to_json()) == gray  # a recorded config reads back as it was
    assert preset("folder", {"data_dir": "/data", "image_mode": "rgb", "image_channels": "3"}).data_channels == 3


def test_ddims_own_settings_are_optional_numbers_checked_like_the_runs_own():
    cfg = preset("quick", {"ddim_eta": "none", "ddim_steps": "40"})
    assert cfg.ddim_eta is None and cfg.ddim_steps == 40
    assert RunConfig.from_dict(json.loads(cfg.to_json())) == cfg  # null survives the round trip
    for key, value, words in (
        ("ddim_eta", "11", "ddim_eta: 11.0 is out of range"),
        ("ddim_eta", "nan", "ddim_eta: expected a finite number"),
        ("ddim_eta_window", "1.5", "ddim_eta_window: 1.5 is out of range"),
        ("ddim_steps", "5000", "ddim_steps: 5000 is out of range; it must be between 1 and T=1000"),
        ("ddim_steps", "4.5", "ddim_steps: expected a whole number"),
    ):
        with pytest.raises(ConfigError) as err:
            preset("quick", {key: value})
        assert words in str(err.value), str(err.value)


def test_switching_quick_to_ddim_takes_its_ddim_settings_as_the_runs_own():
    """'quick, but with DDIM' means quick's DDIM (50 steps, eta 1.8, window 0.7), not DDIM at
    DPM-Solver++'s 15 steps and eta 8; what the user sets beside it still wins."""
    ddim = preset("quick", {"sampler": "ddim"})
    assert (ddim.sample_steps, ddim.eta, ddim.eta_window) == (50, 1.8, 0.7)
    assert (ddim.ddim_steps, ddim.ddim_eta, ddim.ddim_eta_window) == (None, None, None)
    mine = preset("quick", {"sampler": "ddim", "eta": 0.5, "sample_steps": 20})
    assert (mine.sample_steps, mine.eta, mine.eta_window) == (20, 0.5, 0.7)
    with pytest.raises(ConfigError, match="ddim_eta: this run's own sampler is ddim; set eta"):
        preset("quick", {"sampler": "ddim", "ddim_eta": 1.5})
