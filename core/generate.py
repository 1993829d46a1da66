"""Drawing samples from a trained network: in batches, in fp32, onto the host.

Every face that samples a run goes through :func:`generate` with a resolved
:class:`~core.sampling_spec.SamplingSpec`, so a grid in the dashboard, ``ddpm sample``, an
evaluation and the trainer's own grids are drawn the same way.

- Batches are bounded (``batch``) and each finished batch moves to the host at once, so
  ``--n 10000`` never holds more than one batch of samples on the device.
- Sampling runs in fp32 even for a run that trained under bf16 autocast: bf16 keeps about
  three significant digits at the network's output, which shifts quality figures between a
  GPU and a CPU; fp32 makes them comparable.
- Sample i of a draw depends only on (seed, i) (see :class:`~core.samplers.SampleNoise`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core import devices
from core.checkpoint import CheckpointError, load_checkpoint
from core.config import RunConfig
from core.data import to_uint8
from core.diffusion import Diffusion
from core.ema import ema_weights
from core.models import build_model, place_model
from core.samplers import SampleResult, sample
from core.sampling_spec import SamplingError, SamplingSpec, balanced_labels, resolve_for, sample_labels
from core.sequences import SeqScale


def generate(
    net: torch.nn.Module,
    diffusion: Diffusion,
    cfg: RunConfig,
    n: int,
    *,
    spec: SamplingSpec,
    device: torch.device,
    seed: int = 0,
    trajectory_frames: int = 0,
    batch: int = 256,
    labels: list[int] | torch.Tensor | None = None,
) -> SampleResult:
    """``n`` samples under ``spec``, reproducibly for ``seed``; the result is on the CPU. The
    trajectory (when asked for) is that of the first batch. A conditional run draws sample i
    of class ``labels[i]`` (default: every class in turn, :func:`balanced_labels`) under the
    spec's guidance."""
    if cfg.cond == "class" and labels is None:
        labels = balanced_labels(n, list(range(cfg.num_classes)))
    y_all = torch.as_tensor(labels, dtype=torch.long) if labels is not None else None
    if y_all is not None and (len(y_all) != n or int(y_all.min()) < 0 or int(y_all.max()) >= cfg.num_classes):
        raise SamplingError(f"classes: {n} labels from 0 to {cfg.num_classes - 1} are needed")
    was_training = net.training
    net.eval()
    parts: list[torch.Tensor] = []
    first: SampleResult | None = None
    try:
        for start in range(0, n, batch):
            m = min(batch, n - start)
            y = y_all[start : start + m].to(device) if y_all is not None else None
            res = sample(
                guided(net, y, spec.guidance, cfg.num_classes, split=cfg.data_channels if cfg.learned_variance else None),
                diffusion,
                (m, *cfg.sample_shape),
                sampler=spec.sampler,
                steps=spec.steps,
                eta=spec.eta,
                eta_window=spec.eta_window,
                objective=cfg.objective,
                seed=seed,
                start=start,
                device=device,
                clip_x0=cfg.clip_x0,
                trajectory_frames=trajectory_frames if start == 0 else 0,
                self_condition=cfg.self_condition,
                learned_variance=cfg.learned_variance,
                ddpm_variance=cfg.ddpm_variance,
            )
            parts.append(res.x.float().cpu())
            if first is None:
                first = res
    finally:
        net.train(was_training)
    assert first is not None, "n must be at least 1"
    first.x = torch.cat(parts) if len(parts) > 1 else parts[0]
    return first


def guided(net: torch.nn.Module, y: torch.Tensor | None, w: float | None, null: int, *, split: int | None = None):
    """The network as the samplers call it, ``model(x, t)``, steered by classifier-free
    guidance (Ho and Salimans 2022): ``out = u + w (c - u)`` of the unconditional (null label)
    and conditional predictions, both from one batch of twice the size.

    The outputs are combined in the objective's own space (eps, x0 or v). That is exactly
    guidance in eps space: given x_t, eps is an affine function of x0 and of v (eps = (x_t -
    sqrt(abar) x0) / sqrt(1 - abar); eps = sqrt(1 - abar) x_t + sqrt(abar) v), and an affine
    map carries u + w (c - u) to the same blend of its images. w = 0 is the unconditional
    prediction, w = 1 the conditional one (one pass each).

    Whatever follows (x, t) is passed on: a self-conditioned network's x0 estimate, given to
    both halves of the guided batch alike. With ``split`` (a learned variance's network: its
    first ``split`` channels are the prediction, the rest v) only the prediction is blended and
    v is the conditional one's, as GLIDE guides."""
    if y is None:
        return lambda x, t, *rest: net(x, t, None, *rest)
    if w is None or w == 1.0:
        return lambda x, t, *rest: net(x, t, y, *rest)
    null_y = torch.full_like(y, null)
    if w == 0.0:
        return lambda x, t, *rest: net(x, t, null_y, *rest)

    def model(x: torch.Tensor, t: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        out = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null_y]), *(torch.cat([r, r]) for r in rest))
        cond, uncond = out.chunk(2)
        if split is None:
            return uncond + w * (cond - uncond)
        blend = uncond[:, :split] + w * (cond[:, :split] - uncond[:, :split])
        return torch.cat([blend, cond[:, split:]], dim=1)

    return model


def to_numpy(x: torch.Tensor, cfg: RunConfig, scale: SeqScale | None = None) -> np.ndarray:
    """Samples as the store keeps them: uint8 images, float32 points, or float32 sequences in
    the data's own units (``scale``, the training range a checkpoint records; none: as drawn)."""
    if cfg.is_image:
        return to_uint8(x.cpu()).numpy()
    if cfg.is_sequence and scale is not None:
        return scale.to_original(x.float().cpu().numpy())
    return x.float().cpu().numpy()


def checkpoint_scale(state: dict) -> SeqScale | None:
    """The training range a sequence run's checkpoint records (None for other runs)."""
    d = state.get("data_scale")
    return SeqScale.from_dict(d) if d else None


def load_for_sampling(path: Path | str, device: torch.device, use_ema: bool = True):
    """(network, diffusion, config, step) from a checkpoint, on ``device``, ready to sample."""
    return _load(path, device, use_ema)[:4]


def _load(path: Path | str, device: torch.device, use_ema: bool = True):
    """:func:`load_for_sampling` and the checkpoint's sequence scale."""
    state = load_checkpoint(path)
    try:
        cfg = RunConfig.from_dict(state["config"])
        net = build_model(cfg)
        net.load_state_dict(ema_weights(state["ema"]) if use_ema else state["model"])
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} does not hold a usable model: {str(e).splitlines()[0][:200]}") from None
    net = place_model(net, device).eval()
    return net, Diffusion.from_schedule(cfg.schedule, cfg.T, device), cfg, int(state["step"]), checkpoint_scale(state)


@dataclass
class Drawn:
    """Samples drawn from a checkpoint, as the faces show and save them."""

    data: np.ndarray  # uint8 (N, C, H, W) images, float32 (N, 2) points or (N, C, L) sequences in the data's units
    frames: list[np.ndarray]  # the denoising of the first batch, x_t as stored data, oldest first
    timesteps: list[int]
    cfg: RunConfig
    step: int  # the checkpoint's training step
    spec: SamplingSpec
    seed: int
    device: str
    seconds: float
    labels: list[int] | None = None  # each sample's class (a conditional run)
    start: np.ndarray | None = None  # x_T of the first batch, as frames are, when a trajectory was asked for


def draw(
    path: Path | str,
    n: int,
    spec: SamplingSpec,
    *,
    seed: int = 0,
    device: str | torch.device = "auto",
    trajectory_frames: int = 0,
    classes: list[int] | None = None,
) -> Drawn:
    """``n`` samples from a checkpoint's EMA weights under ``spec``: what ``ddpm sample``,
    ``ddpm eval`` and the dashboard's sample and explore screens (through
    :mod:`core.sample_job`) all do. ``spec`` is checked against the checkpoint's own run (a
    :class:`~core.sampling_spec.SamplingError` if that run cannot honour it), since the
    sample job gets it from the command line."""
    dev = device if isinstance(device, torch.device) else torch.device(devices.resolve_here(device))
    net, diffusion, cfg, step, scale = _load(path, dev)
    spec = resolve_for(cfg, spec)
    labels = sample_labels(cfg, n, classes)
    t0 = time.perf_counter()
    res = generate(net, diffusion, cfg, n, spec=spec, device=dev, seed=seed, trajectory_frames=trajectory_frames, labels=labels)
    seconds = time.perf_counter() - t0

    def stored(x: torch.Tensor) -> np.ndarray:
        return to_numpy(x.clamp(-1, 1) if cfg.is_image else x, cfg, scale)

    frames = [stored(x) for x in res.xt]
    start = stored(res.start) if res.start is not None else None
    return Drawn(
        to_numpy(res.x, cfg, scale), frames, list(res.timesteps), cfg, step, spec, seed, str(dev), seconds, labels, start
    )
