"""Run configuration: one dataclass, named presets, parsing and validation.

A config is plain data (it round-trips through JSON into the store and into checkpoints).
Every field can be set from text (``--set key=value``); a bad value is reported as one line
naming the field and what is allowed, and all bad fields are reported at once.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, fields

from core.choices import (
    CONDITIONS,
    DATASETS,
    DDPM_VARIANCES,
    ETA_MAX,
    GUIDANCE_MAX,
    IMAGE_MODE_CHANNELS,
    IMAGE_MODES,
    LOSSES,
    LR_DECAYS,
    MODELS,
    OBJECTIVES,
    OPTIMIZERS,
    SAMPLERS,
    SCHEDULES,
    SEQUENCE_DATASETS,
    T_SAMPLINGS,
    TIME_EMBEDDINGS,
)
from core.errors import DDPMError


class ConfigError(DDPMError, ValueError):
    """One or more bad fields; ``str()`` gives one line per field."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("\n".join(errors))


@dataclass
class RunConfig:
    """Everything that determines a training run (the device and time budget do not)."""

    # data
    dataset: str = "mnist"
    data_dir: str = ""  # the image folder, for dataset=folder
    image_size: int = 28
    image_channels: int = 1  # for dataset=folder: 1 (gray) or 3 (RGB)
    image_mode: str = "auto"  # for dataset=folder: read images as rgb or l (gray), which sets image_channels
    hflip: bool = False  # for dataset=folder: flip a random half of each training batch left to right
    # model
    model: str = "unet"
    channels: int = 32  # U-Net base width
    channel_mult: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = ()
    dropout: float = 0.0
    patch: int = 2  # pixels folded into channels before the U-Net (1 = none)
    time_embedding: str = "sinusoidal"  # U-Net step features: sinusoidal, random_fourier, learned_fourier
    self_condition: bool = False  # the U-Net also sees its own x0 estimate (Chen et al. 2022), in training and sampling
    learned_variance: bool = False  # the U-Net also predicts the reverse variance; ddpm samples with it, ddim/dpmpp2m ignore it
    vlb_weight: float = 0.001  # learned_variance: lambda of the hybrid loss L_simple + lambda L_vlb
    cond: str = "none"  # class: the model is told which class to draw (classifier-free guidance)
    cond_drop: float = 0.1  # share of training labels replaced by the null label (cond=class)
    num_classes: int = 10  # label rows of a conditional model (10 for the digit datasets)
    hidden: int = 256  # MLP width, for model=mlp or mlp_embed
    depth: int = 4  # MLP residual blocks (model=mlp) or layers (model=mlp_embed)
    # diffusion
    T: int = 1000
    schedule: str = "cosine"
    objective: str = "eps"
    loss: str = "l2"
    min_snr_gamma: float = 5.0  # 0 turns the weighting off
    offset_noise: float = 0.0
    # optimisation
    steps: int = 2000
    batch_size: int = 128
    lr: float = 2e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    warmup: int = 100
    lr_decay: str = "cosine"
    grad_clip: float = 1.0  # 0 turns clipping off
    grad_accum: int = 1  # micro-batches per step; batch_size is split among them
    t_sampling: str = "uniform"  # antithetic: pairs t, T-1-t (the S-curve toy's); logit_normal: more mid-chain t
    ema_decay: float = 0.995
    amp: bool = True  # bf16 autocast on CUDA (compute capability 8.0 and up)
    cpu_bf16: bool = False  # bf16 autocast on a CPU with bf16 units (AVX512-BF16 or AMX); fp32 on others
    seed: int = 0
    # what the loop reports
    log_every: int = 25
    sample_every: int = 500
    sample_n: int = 16
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3  # newest checkpoints kept on disk; 0 keeps all
    eval_every: int = 0  # judge the samples (FID, KID, confident share...) every this many steps; 0 = never
    eval_n: int = 1000  # samples per evaluation
    # sampling defaults
    sampler: str = "ddim"
    sample_steps: int = 50
    eta: float = 0.0  # 0 deterministic DDIM, 1 DDPM's noise, above 1 extra noise (up to ETA_MAX)
    eta_window: float = 1.0  # an eta above 1 applies where t < eta_window * T; eta 1 above (core.samplers.windowed_eta)
    # DDIM's own steps, eta and window on a run whose sampler is another, where the best of
    # each differs (quick: DPM-Solver++ at eta 8, DDIM at 1.8); none: the run's sample_steps,
    # eta and eta_window, as runs recorded before these settings draw DDIM
    ddim_steps: int | None = None
    ddim_eta: float | None = None
    ddim_eta_window: float | None = None
    guidance: float = 1.0  # cond=class: 0 unconditional, 1 conditional, above 1 guided (up to GUIDANCE_MAX)
    clip_x0: bool = True
    ddpm_variance: str = "posterior"  # the ddpm sampler's noise: posterior (beta~_t) or beta (beta_t); learned_variance overrides
    # 1-D sequences (dataset=sines or seq, model=unet1d; data_dir: seq's .npy file or folder)
    seq_length: int = 128  # steps of a sequence; the U-Net halves it once per extra channel_mult level
    seq_channels: int = 2  # values per step

    # ---- derived ---------------------------------------------------------------------

    @property
    def is_image(self) -> bool:
        return self.dataset in ("mnist", "fashion", "folder")

    @property
    def is_sequence(self) -> bool:
        return self.dataset in SEQUENCE_DATASETS

    @property
    def data_channels(self) -> int:
        return self.image_channels if self.dataset == "folder" else 1

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one training example: (C, H, W) for images, (C, L) for sequences, (2,) for points."""
        if self.is_sequence:
            return (self.seq_channels, self.seq_length)
        if not self.is_image:
            return (2,)
        return (self.data_channels, self.image_size, self.image_size)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        """Build and validate a config from a dict of typed or textual values."""
        return replace(cls(), data, validate=True)

    def validate(self) -> RunConfig:
        errors = _validate(self)
        if errors:
            raise ConfigError(errors)
        return self


_HINTS: dict[str, typing.Any] = {}

# Each of DDIM's own settings and the run-wide one it stands in for.
DDIM_OWN = {"ddim_steps": "sample_steps", "ddim_eta": "eta", "ddim_eta_window": "eta_window"}


def _hints() -> dict[str, typing.Any]:
    if not _HINTS:
        _HINTS.update(typing.get_type_hints(RunConfig))
    return _HINTS


FIELDS = tuple(f.name for f in fields(RunConfig))


def field_type(name: str) -> typing.Any:
    """A setting's type, an optional one's (``float | None``) as its type when set (``float``)."""
    hint = _hints()[name]
    return next((a for a in typing.get_args(hint) if a is not type(None)), hint) if optional(name) else hint


def optional(name: str) -> bool:
    """Whether a setting may be left unset (none)."""
    return type(None) in typing.get_args(_hints()[name])


def parse_value(name: str, value: typing.Any) -> typing.Any:
    """Coerce a value (often text from the command line) to the field's type; an optional
    setting also takes none (or null), which leaves it unset."""
    if optional(name) and (value is None or str(value).strip().lower() in ("none", "null")):
        return None
    hint = field_type(name)
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ValueError(f"{name}: expected a whole number, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            f = float(str(value).strip())
        except ValueError:
            raise ValueError(f"{name}: expected a whole number, got {value!r}") from None
        if not f.is_integer():
            raise ValueError(f"{name}: expected a whole number, got {value!r}")
        return int(f)
    if hint is float:
        if isinstance(value, bool):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected a number, got {value!r}") from None
        if not math.isfinite(f):
            # Every range check is false for NaN, so a NaN would pass validation and then
            # silently sample NaN images (ema_decay) or turn clipping off (grad_clip).
            raise ValueError(f"{name}: expected a finite number, got {value!r}")
        return f
    if hint is str:
        return str(value)
    # tuple[int, ...]
    if isinstance(value, (list, tuple)):
        items = list(value)
    else:
        text = str(value).strip().strip("()[]")
        items = [p for p in text.replace(" ", ",").split(",") if p]
    try:
        return tuple(int(str(i)) for i in items)
    except ValueError:
        raise ValueError(f"{name}: expected whole numbers separated by commas (e.g. 1,2,2), got {value!r}") from None


def replace(base: RunConfig, overrides: dict[str, typing.Any], *, validate: bool = True) -> RunConfig:
    """A copy of ``base`` with ``overrides`` parsed in; every bad key is reported at once."""
    errors = []
    values = {}
    for key, raw in overrides.items():
        if key not in FIELDS:
            close = [f for f in FIELDS if f.startswith(key[:3])] if key else []
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            errors.append(f"{key}: unknown setting{hint}; settings are: {', '.join(FIELDS)}")
            continue
        try:
            values[key] = parse_value(key, raw)
        except ValueError as e:
            errors.append(str(e))
    if errors:
        raise ConfigError(errors)
    if values.get("sampler") == "ddim" and base.sampler != "ddim":
        # "This run, but with DDIM": its DDIM settings become its own, unless set beside (a
        # value equal to the base's, as a form passes every field, counts as not set).
        for ddim, own in DDIM_OWN.items():
            kept = getattr(base, ddim)
            if kept is not None and values.get(ddim, kept) == kept:
                if values.get(own, getattr(base, own)) == getattr(base, own):
                    values[own] = kept
                values[ddim] = None
    if values.get("image_mode") in IMAGE_MODE_CHANNELS and "image_channels" not in values:
        # The mode names the channels too; given both, validation checks that they agree.
        values["image_channels"] = IMAGE_MODE_CHANNELS[values["image_mode"]]
    cfg = dataclasses.replace(base, **values)
    return cfg.validate() if validate else cfg


def _one_of(errors: list[str], name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        errors.append(f"{name}: {value!r} is not one of {', '.join(allowed)}")


# Training-set sizes known before any data is read, so that an impossible batch is refused
# before a run is recorded (a folder's size is only known when the worker reads it).
TRAIN_SIZES: dict[str, int] = {"mnist": 60_000, "fashion": 60_000, "scurve": 20_000, "sines": 8_000}


POINT_MODELS = ("mlp", "mlp_embed")  # the networks for 2-D points


def _validate(c: RunConfig) -> list[str]:
    e: list[str] = []
    _one_of(e, "dataset", c.dataset, DATASETS)
    _one_of(e, "model", c.model, MODELS)
    _one_of(e, "schedule", c.schedule, SCHEDULES)
    _one_of(e, "objective", c.objective, OBJECTIVES)
    _one_of(e, "loss", c.loss, LOSSES)
    _one_of(e, "optimizer", c.optimizer, OPTIMIZERS)
    _one_of(e, "lr_decay", c.lr_decay, LR_DECAYS)
    _one_of(e, "sampler", c.sampler, SAMPLERS)
    _one_of(e, "cond", c.cond, CONDITIONS)
    _one_of(e, "t_sampling", c.t_sampling, T_SAMPLINGS)
    _one_of(e, "ddpm_variance", c.ddpm_variance, DDPM_VARIANCES)

    def in_range(name: str, lo: float, hi: float | None = None) -> None:
        v = getattr(c, name)
        if v is None:  # an optional setting left unset
            return
        if isinstance(v, float) and not math.isfinite(v):
            e.append(f"{name}: {v} is not a finite number")
        elif v < lo or (hi is not None and v > hi):
            rng = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            e.append(f"{name}: {v} is out of range; it must be {rng}")

    in_range("T", 1, 100_000)
    in_range("steps", 1)
    in_range("batch_size", 1)
    in_range("grad_accum", 1)
    in_range("channels", 1, 4096)
    in_range("num_res_blocks", 1, 16)
    in_range("patch", 1, 8)
    in_range("hidden", 2, 65536)
    in_range("depth", 1, 64)
    in_range("image_size", 4, 512)
    in_range("warmup", 0)
    in_range("min_snr_gamma", 0)
    in_range("offset_noise", 0, 1)
    in_range("grad_clip", 0)
    in_range("weight_decay", 0)
    in_range("dropout", 0, 0.99)
    in_range("ema_decay", 0, 0.99999)
    in_range("log_every", 1)
    in_range("sample_every", 0)
    in_range("sample_n", 1, 1024)
    in_range("checkpoint_every", 0)
    in_range("keep_checkpoints", 0)
    in_range("eval_every", 0)
    in_range("eval_n", 2, 100_000)
    in_range("eta", 0, ETA_MAX)
    in_range("eta_window", 0, 1)
    in_range("ddim_eta", 0, ETA_MAX)
    in_range("ddim_eta_window", 0, 1)
    if c.ddim_steps is not None and c.T >= 1 and not 1 <= c.ddim_steps <= c.T:
        e.append(f"ddim_steps: {c.ddim_steps} is out of range; it must be between 1 and T={c.T}")
    if c.sampler == "ddim":
        e.extend(
            f"{ddim}: this run's own sampler is ddim; set {own} (the ddim_ settings are for a run that samples with another)"
            for ddim, own in DDIM_OWN.items()
            if getattr(c, ddim) is not None
        )
    in_range("guidance", 0, GUIDANCE_MAX)
    in_range("cond_drop", 0, 1)
    in_range("num_classes", 2, 10_000)
    if c.cond == "class" and c.dataset == "scurve":
        e.append("cond: the scurve dataset has no classes; leave cond=none")
    if c.cond == "class" and c.dataset in ("mnist", "fashion") and c.num_classes != 10:
        e.append(f"num_classes: {c.dataset} has 10 classes; leave num_classes at 10")
    in_range("seed", 0, 2**63 - 1)
    if not (c.lr > 0 and c.lr < 1):
        e.append(f"lr: {c.lr} is out of range; it must be above 0 and below 1 (try 1e-3)")
    if c.T >= 1 and (c.sample_steps < 1 or c.sample_steps > c.T):
        e.append(f"sample_steps: {c.sample_steps} is out of range; it must be between 1 and T={c.T}")
    if c.grad_accum >= 1 and c.batch_size >= 1 and c.batch_size % c.grad_accum:
        e.append(f"batch_size: {c.batch_size} must divide evenly into grad_accum={c.grad_accum} micro-batches")
    if c.image_channels not in (1, 3):
        e.append(f"image_channels: {c.image_channels} is not 1 (gray) or 3 (RGB)")
    if not c.channel_mult or any(m < 1 for m in c.channel_mult):
        e.append(f"channel_mult: {c.channel_mult} must be one or more positive whole numbers, e.g. 1,2,2")
    if any(r < 1 for r in c.attn_resolutions):
        e.append(f"attn_resolutions: {c.attn_resolutions} must be feature-map sizes such as 7 or 14")
    if c.dataset in ("mnist", "fashion") and c.image_size != 28:
        e.append(f"image_size: {c.dataset} images are 28x28; leave image_size at 28")
    if c.dataset == "scurve" and c.model not in POINT_MODELS:
        e.append("model: the scurve dataset is 2-D points; use model=mlp or mlp_embed")
    if c.dataset not in ("scurve", *SEQUENCE_DATASETS) and c.model in POINT_MODELS:
        e.append(f"model: {c.model} is for 2-D points; use model=unet for {c.dataset} images")
    known = TRAIN_SIZES.get(c.dataset)
    if known is not None and c.grad_accum >= 1 and c.batch_size // c.grad_accum > known:
        e.append(f"batch_size: {c.batch_size} is larger than the {c.dataset} training set ({known:,} examples); lower batch_size")
    if c.eval_every and c.dataset == "folder":
        e.append("eval_every: folder runs have no judge to evaluate them; leave eval_every at 0")
    if c.dataset == "folder" and not c.data_dir:
        e.append("data_dir: dataset=folder needs data_dir=PATH, a folder of images")
    e.extend(_validate_sequences(c))
    if c.model == "unet" and c.channel_mult and c.image_size >= 4 and c.patch >= 1:
        size = c.image_size / c.patch
        levels = len(c.channel_mult) - 1
        if not size.is_integer():
            e.append(f"patch: image_size {c.image_size} is not divisible by patch {c.patch}")
        elif int(size) % (2**levels):
            e.append(
                f"channel_mult: {len(c.channel_mult)} levels halve a {int(size)}x{int(size)} map "
                f"{levels} times, which does not divide evenly; use fewer levels or another patch"
            )
    _validate_engine_options(c, e)
    return e


def _validate_sequences(c: RunConfig) -> list[str]:
    """The 1-D fields: sequence data goes with the 1-D U-Net and back, and the U-Net's levels
    must halve the length evenly (a remainder would misalign the skip connections)."""
    e: list[str] = []
    if c.is_sequence:
        if c.model != "unet1d":
            e.append(f"model: {c.dataset} is 1-D sequences; use model=unet1d")
        if c.cond == "class":
            e.append(f"cond: the {c.dataset} dataset has no classes; leave cond=none")
        if c.dataset == "seq" and not c.data_dir:
            e.append("data_dir: dataset=seq needs data_dir=PATH, a .npy file (N, C, L) or a folder of .npy/.csv sequences")
    elif c.model == "unet1d":
        e.append(f"model: unet1d is for 1-D sequences; use dataset=sines or dataset=seq (or model=unet for {c.dataset})")
    if not 4 <= c.seq_length <= 65_536:
        e.append(f"seq_length: {c.seq_length} is out of range; it must be between 4 and 65536")
    elif c.model == "unet1d" and c.channel_mult and c.seq_length % 2 ** (len(c.channel_mult) - 1):
        halvings = len(c.channel_mult) - 1
        e.append(
            f"seq_length {c.seq_length} cannot be halved {halvings} times (channel_mult has {len(c.channel_mult)} "
            f"levels); use a multiple of {2**halvings}"
        )
    if not 1 <= c.seq_channels <= 64:
        e.append(f"seq_channels: {c.seq_channels} is out of range; it must be between 1 and 64")
    return e


def _validate_engine_options(c: RunConfig, e: list[str]) -> None:
    """The reference image engine's options: U-Net features, folder-only data handling."""
    _one_of(e, "time_embedding", c.time_embedding, TIME_EMBEDDINGS)
    if c.model != "unet" and c.time_embedding != "sinusoidal":
        e.append(f"time_embedding: only the U-Net offers Fourier features; leave time_embedding=sinusoidal for model={c.model}")
    if c.model != "unet" and c.self_condition:
        e.append(f"self_condition: only the U-Net takes its own estimate back; leave self_condition off for model={c.model}")
    if c.model != "unet" and c.learned_variance:
        e.append(f"learned_variance: only the U-Net predicts a variance; leave learned_variance off for model={c.model}")
    if not (math.isfinite(c.vlb_weight) and 0 <= c.vlb_weight <= 1):
        e.append(f"vlb_weight: {c.vlb_weight} is out of range; it must be between 0 and 1 (improved-diffusion uses 0.001)")
    _one_of(e, "image_mode", c.image_mode, IMAGE_MODES)
    if c.image_mode != "auto" and c.dataset != "folder":
        e.append(f"image_mode: only folder images are read in a mode; leave image_mode=auto for {c.dataset}")
    elif IMAGE_MODE_CHANNELS.get(c.image_mode, c.image_channels) != c.image_channels:
        want = IMAGE_MODE_CHANNELS[c.image_mode]
        e.append(
            f"image_channels: {c.image_channels} disagrees with image_mode={c.image_mode}; set image_channels={want} or leave it out"
        )
    if c.hflip and c.dataset in ("mnist", "fashion"):
        e.append(f"hflip: a flipped 7 is not a 7 ({c.dataset} has a handedness); leave hflip off")
    elif c.hflip and not c.is_image:
        e.append(f"hflip: {c.dataset} holds no images; leave hflip off")


# ---- presets ---------------------------------------------------------------------------

# Each preset is a set of overrides on the RunConfig defaults. The defaults themselves are
# tuned for `quick`: the best MNIST digits a 2-core CPU can learn in about ten minutes.
PRESETS: dict[str, dict[str, typing.Any]] = {
    # The RunConfig defaults are the quick recipe, except six things measured with
    # bench/quality.py and bench/sampler_table.py (README's "Judging samples" gives the figures):
    # - it predicts v, not eps: x0 = sqrt(abar) x - sqrt(1 - abar) v stays well-conditioned at
    #   the last cosine step, where an eps model's x0 is its error times 1/sqrt(abar) and only
    #   clipping saves it;
    # - it draws training timesteps logit-normal: the ends of the chain teach little (the
    #   target is almost the image, or almost pure noise), and in a ten-minute budget the steps
    #   spent on them are better spent mid-chain, where the digit's shape is decided;
    # - it trains under bf16 autocast where the CPU has bf16 units (fp32 elsewhere): more
    #   steps in the budget, and better digits than fp32 gave on both seeds;
    # - it samples with more fresh noise than the reverse process's own (eta above 1): after
    #   ten CPU minutes, re-noising at each step mends strokes that a deterministic path keeps;
    # - that extra noise applies at t < W T alone (eta_window), eta 1 above, where a sample's
    #   layout is drawn: lower FID on every training measured, at the same network calls;
    # - its default sampler is DPM-Solver++'s SDE solver at 15 steps, eta 8, window 0.75: on
    #   average over the trainings README lists, those held out from the choice included, no
    #   worse in FID and more confident than DDIM at 50 steps with DDIM's own best (eta 1.8,
    #   window 0.7, kept as ddim_*: asking for DDIM draws it so), at 30% of the network calls.
    "quick": {
        "objective": "v",
        "t_sampling": "logit_normal",
        "cpu_bf16": True,
        "sampler": "dpmpp2m",
        "sample_steps": 15,
        "eta": 8.0,
        "eta_window": 0.75,
        "ddim_steps": 50,
        "ddim_eta": 1.8,
        "ddim_eta_window": 0.7,
    },
    # The quick recipe told which digit to draw: a label embedding beside the time embedding,
    # a tenth of the training labels dropped to the null label so one network also predicts
    # without one, and classifier-free guidance when sampling. It samples with DPM-Solver++'s
    # SDE solver at 20 steps and guidance 1.5, chosen from bench/sampler_table.py on its weights
    # (README gives the table): stronger guidance, or DDIM's re-noising, trades FID for accuracy
    # it no longer needs. Grids show two digits of each class. Its timesteps stay uniform: its
    # figures were measured so (and in fp32), before quick drew them logit-normal under bf16.
    "quick-cond": {
        "objective": "v",
        "t_sampling": "uniform",
        "cond": "class",
        "cond_drop": 0.1,
        "guidance": 1.5,
        "sample_n": 20,
        "sampler": "dpmpp2m",
        "sample_steps": 20,
        "eta": 1.0,
    },
    # The well-known MNIST DDPM recipe: a full-resolution U-Net, eps objective, L2 loss,
    # linear schedule with T=500, Adam at 5e-4, batch 64, 10 epochs. The GPU default.
    "classic": {
        "channels": 96,
        "channel_mult": (1, 2, 2),
        "num_res_blocks": 2,
        "attn_resolutions": (),
        "patch": 1,
        "T": 500,
        "schedule": "linear",
        "objective": "eps",
        "loss": "l2",
        "min_snr_gamma": 0.0,
        "optimizer": "adam",
        "lr": 5e-4,
        "batch_size": 64,
        "steps": 9375,  # 10 epochs of 60,000 images
        "warmup": 0,
        "lr_decay": "constant",
        "ema_decay": 0.999,
        "sample_every": 1000,
        "checkpoint_every": 2000,
    },
    "fashion": {
        "dataset": "fashion",
        "channels": 48,
        "steps": 4000,
        "sample_every": 1000,
        "checkpoint_every": 1000,
    },
    "scurve": {
        "dataset": "scurve",
        "model": "mlp",
        "T": 200,
        # Cosine, not linear: linear spends most of a short chain at high noise and leaves
        # few steps for the fine detail near the curve (mean distance 0.08 against 0.02).
        "schedule": "cosine",
        "objective": "eps",
        "min_snr_gamma": 0.0,
        "hidden": 128,
        "depth": 3,
        "steps": 3000,
        "batch_size": 256,
        "lr": 2e-3,
        "warmup": 50,
        "ema_decay": 0.99,
        # The curve lies in [-1, 1]^2, so clipping predicted x0 is sound, and DDIM needs it:
        # at the noisiest step 1/sqrt(abar) amplifies any eps error a hundredfold.
        "clip_x0": True,
        "sample_n": 512,
        "sample_every": 500,
        "sample_steps": 50,
        "log_every": 50,
        "checkpoint_every": 1000,
    },
    # The S-curve toy as it is usually written out, not tuned: T = 100 sigmoid-on-beta steps
    # (which leave abar_T near 0.78, so x_T is far from pure noise on this curve), an MLP of three
    # 128-unit layers with a learned step embedding added in each, antithetic timestep pairs,
    # Adam 1e-3 with no warm-up or decay, batch 128, clipping at 1, ancestral DDPM sampling with
    # the raw weights (no EMA) and no clipping of x0. README compares it with `scurve`.
    "scurve-seed": {
        "dataset": "scurve",
        "model": "mlp_embed",
        "hidden": 128,
        "depth": 3,
        "T": 100,
        "schedule": "sigmoid-beta",
        "objective": "eps",
        "loss": "l2",
        "min_snr_gamma": 0.0,
        "t_sampling": "antithetic",
        "ddpm_variance": "beta",
        "optimizer": "adam",
        "lr": 1e-3,
        "weight_decay": 0.0,
        "warmup": 0,
        "lr_decay": "constant",
        "grad_clip": 1.0,
        "batch_size": 128,
        "steps": 10000,
        "ema_decay": 0.0,
        "sampler": "ddpm",
        "sample_steps": 100,
        "clip_x0": False,
        "sample_n": 512,
        "sample_every": 2000,
        "log_every": 100,
        "checkpoint_every": 5000,
    },
    "folder": {
        "dataset": "folder",
        "image_size": 32,
        "image_channels": 3,
        "channels": 64,
        "channel_mult": (1, 2, 2),
        "patch": 1,
        "attn_resolutions": (8,),
        "steps": 10000,
        "batch_size": 64,
        "lr": 5e-4,
        "sample_every": 1000,
        "checkpoint_every": 2000,
    },
    # 1-D sequences: the built-in sines (2 channels x 128 steps) with the 1-D U-Net, a few
    # CPU minutes. data_dir=PATH with dataset=seq trains the same recipe on your own sequences.
    "sines": {
        "dataset": "sines",
        "model": "unet1d",
        "seq_length": 128,
        "seq_channels": 2,
        "channels": 16,
        "channel_mult": (1, 2, 2),
        "num_res_blocks": 2,
        "objective": "v",
        "steps": 2000,
        "batch_size": 64,
        "warmup": 100,
        "ema_decay": 0.995,
        "sample_n": 8,
        "sample_every": 500,
        "checkpoint_every": 1000,
        "eval_n": 500,
    },
    # Seconds, for tests and for checking an install.
    "smoke": {
        "channels": 8,
        "channel_mult": (1, 2),
        "num_res_blocks": 1,
        "T": 50,
        "steps": 20,
        "batch_size": 16,
        "warmup": 2,
        "log_every": 5,
        "sample_every": 10,
        "sample_n": 4,
        "sample_steps": 10,
        "checkpoint_every": 10,
        "ema_decay": 0.9,
    },
}

PRESET_HELP = {
    "quick": "MNIST, small patch-2 U-Net: recognisable digits on a 2-core CPU in about 10 minutes (CPU default)",
    "quick-cond": "MNIST digits you ask for (ddpm sample RUN --class 7): quick, class-conditional, classifier-free guidance",
    "classic": "MNIST, the well-known DDPM recipe: 96-wide U-Net, T=500 linear, Adam 5e-4, 10 epochs (GPU default)",
    "fashion": "Fashion-MNIST with the quick architecture, a little wider and longer",
    "scurve": "2-D S-curve toy with an MLP: trains in seconds, good for seeing the math work",
    "scurve-seed": "the S-curve toy as written out: T=100 sigmoid betas, step-embedding MLP, antithetic t, Adam 1e-3",
    "folder": "your own folder of images at 32x32 RGB (set data_dir=PATH)",
    "sines": "1-D sequences: random sines (2 channels x 128 steps) with a 1-D U-Net, a few CPU minutes",
    "smoke": "a tiny run that finishes in seconds, for tests and install checks",
}


def preset(name: str, overrides: dict[str, typing.Any] | None = None) -> RunConfig:
    """The named preset with optional overrides, validated."""
    if name not in PRESETS:
        raise ConfigError([f"preset: {name!r} is not one of {', '.join(PRESETS)}"])
    base = dataclasses.replace(RunConfig(), **PRESETS[name])
    return replace(base, overrides or {}, validate=True)


def check_split(cfg: RunConfig, world_size: int) -> None:
    """The global batch must split evenly into processes x micro-batches."""
    if world_size > 1 and cfg.batch_size % (cfg.grad_accum * world_size):
        raise ConfigError([
            f"batch_size: {cfg.batch_size} does not split into {world_size} processes x {cfg.grad_accum} "
            f"micro-batches; use a multiple of {world_size * cfg.grad_accum}"
        ])  # fmt: skip


def default_preset(device_type: str) -> str:
    """`classic` where there is a GPU to run it, `quick` on a CPU."""
    return "classic" if device_type == "cuda" else "quick"


def from_json(text: str) -> RunConfig:
    return RunConfig.from_dict(json.loads(text))


__all__ = [
    "ConfigError",
    "RunConfig",
    "PRESETS",
    "PRESET_HELP",
    "preset",
    "default_preset",
    "replace",
    "parse_value",
    "field_type",
    "from_json",
    "FIELDS",
]
