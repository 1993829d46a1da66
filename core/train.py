"""The training loop: optimisation, EMA, mixed precision, events, checkpoints, exact resume.

A :class:`Trainer` owns one run's model, EMA copy, optimizer and data. ``run()`` trains until
the configured number of steps, a stop request or a wall-clock budget, and reports what
happens as events (metrics, sample grids, checkpoints, the end) through a callback, which is
how the store, the CLI and the benchmark all observe training without the loop knowing them.

Exact resume: every random draw of a step (batch order, timesteps, noise) is a pure function
of (seed, step), and the checkpoint carries model, EMA, optimizer, step and the global RNG
states, so N steps in one go and N/2 + resume + N/2 give the same weights on the CPU.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel

from core.checkpoint import CheckpointError, SavedCheckpoint, load_checkpoint, save_checkpoint
from core.config import RunConfig
from core.data import BatchOrder, TensorDataset, check_fits, load_dataset, to_uint8
from core.diffusion import Diffusion, sample_noise
from core.errors import DDPMError
from core.models import build_model, count_parameters
from core.samplers import SampleResult, sample


class TrainingError(DDPMError):
    """Training cannot go on (diverged, device missing); the message says what to change."""


# ---- events ----------------------------------------------------------------------------


@dataclass
class Metrics:
    step: int
    values: dict[str, float]
    time: float = field(default_factory=time.time)


@dataclass
class Samples:
    """Images as uint8 (N, C, H, W), or 2-D points as float32 (N, 2)."""

    step: int
    data: np.ndarray
    sampler: str
    steps: int


@dataclass
class CheckpointSaved:
    step: int
    path: Path
    bytes: int
    sha256: str
    removed: list[Path] = field(default_factory=list)


@dataclass
class Evaluated:
    """Quality figures of ``n`` samples drawn at ``step`` (see core/evaluate.py)."""

    step: int
    n: int
    sampler: str
    steps: int
    eta: float
    seed: int
    figures: dict[str, float]
    floor: dict[str, float]
    seconds: float


@dataclass
class Finished:
    step: int
    reason: str  # completed | stopped | budget


Event = Metrics | Samples | CheckpointSaved | Evaluated | Finished


# ---- helpers ---------------------------------------------------------------------------


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA where there is none is an error."""
    if name in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError("CUDA is not available on this machine; use --device cpu (or auto)")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise TrainingError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def lr_factor(step: int, progress: float, warmup: int, decay: str) -> float:
    """Linear warm-up over ``warmup`` steps, then the decay evaluated at ``progress`` in [0, 1]."""
    w = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    p = min(max(progress, 0.0), 1.0)
    if decay == "linear":
        f = 1.0 - p
    elif decay == "cosine":
        f = 0.5 * (1.0 + math.cos(math.pi * p))
    else:
        f = 1.0
    return w * max(f, 0.01)


def ema_decay_at(updates: int, decay: float) -> float:
    """EMA decay with warm-up: early on the average follows the weights closely, so the EMA
    model is useful from the first hundred steps rather than dragging its initialisation."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


def _mix(seed: int, k: int) -> int:
    return (seed * 6364136223846793005 + k * 1442695040888963407 + 1) % (2**63)


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ---- the trainer -----------------------------------------------------------------------


class Trainer:
    def __init__(
        self,
        cfg: RunConfig,
        *,
        device: str | torch.device = "auto",
        run_dir: Path | str | None = None,
        on_event: Callable[[Event], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        time_budget_s: float | None = None,
        dataset: TensorDataset | None = None,
    ):
        self.cfg = cfg.validate()
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.on_event = on_event or (lambda e: None)
        self.should_stop = should_stop
        self.time_budget_s = time_budget_s

        data = dataset if dataset is not None else load_dataset(cfg)
        check_fits(cfg, len(data))
        self.data = data.to(self.device)
        self.micro_batch = cfg.batch_size // cfg.grad_accum
        self.order = BatchOrder(len(self.data), self.micro_batch, cfg.seed)

        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg).to(self.device)
        self.n_params = count_parameters(self.model)
        self._ema_now = cfg.ema_decay
        self.ema = AveragedModel(self.model, multi_avg_fn=lambda e, p, n: torch._foreach_lerp_(e, p, 1.0 - self._ema_now))
        self.ema.module.eval()
        self.ema.requires_grad_(False)
        opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        fused = self.device.type == "cuda"
        self.opt = opt_cls(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)
        self.diffusion = Diffusion.from_schedule(cfg.schedule, cfg.T, self.device)
        self._gen = torch.Generator(device=self.device)
        self.step = 0
        self.elapsed = 0.0  # seconds spent in training steps, across resumes

    # ---- state -------------------------------------------------------------------------

    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "config": self.cfg.to_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            "n_params": self.n_params,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.opt.state_dict(),
            "rng": rng,
            "torch_version": str(torch.__version__),
        }

    def load_state(self, state: dict) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.ema.load_state_dict(state["ema"])
            self.opt.load_state_dict(state["optimizer"])
            self.step = int(state["step"])
            self.elapsed = float(state.get("elapsed", 0.0))
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"checkpoint does not match this run's model: {str(e).splitlines()[0][:200]}") from None
        rng = state.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng["cuda"])

    @classmethod
    def resume(cls, path: Path | str, *, steps: int | None = None, **kwargs) -> Trainer:
        """A trainer restored from a checkpoint; ``steps`` may extend the run's total."""
        state = load_checkpoint(path)
        cfg = RunConfig.from_dict(state["config"])
        if steps is not None:
            cfg = RunConfig.from_dict({**cfg.to_dict(), "steps": steps})
        trainer = cls(cfg, **kwargs)
        trainer.load_state(state)
        return trainer

    def save(self) -> CheckpointSaved:
        if self.run_dir is None:
            raise TrainingError("this trainer has no run folder to save checkpoints in")
        path = self.run_dir / f"step-{self.step:08d}.pt"
        try:
            saved: SavedCheckpoint = save_checkpoint(path, self.state_dict())
        except OSError as e:  # a full disk, a read-only folder, a file size limit
            kept = sorted(self.run_dir.glob("step-*.pt")) if self.run_dir.is_dir() else []
            raise TrainingError(
                f"could not write checkpoint {path}: {e.strerror or e}; "
                + (f"the previous checkpoint ({kept[-1].name}) is kept" if kept else "no earlier checkpoint exists")
                + "; free space or fix the folder, then resume the run"
            ) from e
        removed = []
        keep = self.cfg.keep_checkpoints
        if keep > 0:
            old = sorted(p for p in self.run_dir.glob("step-*.pt") if p != saved.path)
            removed = old[: max(0, len(old) - (keep - 1))]
        event = CheckpointSaved(self.step, saved.path, saved.bytes, saved.sha256, removed)
        # Observers (the store) record the new file and forget the old ones first; only then
        # are the old files deleted, so a record never points at a file that is gone.
        self.on_event(event)
        for p in removed:
            p.unlink(missing_ok=True)
        return event

    # ---- one optimisation step ---------------------------------------------------------

    def progress(self) -> float:
        p = self.step / self.cfg.steps
        if self.time_budget_s:
            p = max(p, self.elapsed / self.time_budget_s)
        return p

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, dev = self.cfg, self.device
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=dev)
        for m in range(cfg.grad_accum):
            k = self.step * cfg.grad_accum + m
            x0 = self.data.gather(self.order.indices(k).to(dev, non_blocking=True))
            self._gen.manual_seed(_mix(cfg.seed, k))
            t = torch.randint(0, cfg.T, (x0.shape[0],), generator=self._gen, device=dev)
            eps = sample_noise(x0.shape, generator=self._gen, device=dev, offset_noise=cfg.offset_noise)
            xt = self.diffusion.q_sample(x0, t, eps)
            with _autocast(dev, cfg.amp):
                out = self.model(xt, t)
            losses = self.diffusion.training_losses(
                out, x0, t, eps, objective=cfg.objective, loss=cfg.loss, min_snr_gamma=cfg.min_snr_gamma
            )
            loss = losses.mean() / cfg.grad_accum
            loss.backward()
            total += loss.detach()
        if cfg.grad_clip > 0:
            gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        else:
            gnorm = torch.zeros((), device=dev)
        lr = cfg.lr * lr_factor(self.step, self.progress(), cfg.warmup, cfg.lr_decay)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.step()
        self._ema_now = ema_decay_at(self.step, cfg.ema_decay)
        self.ema.update_parameters(self.model)
        self.step += 1
        self.lr = lr
        return total, gnorm

    # ---- the loop ----------------------------------------------------------------------

    def run(self) -> str:
        """Train until done, stopped or out of budget; returns the reason."""
        cfg = self.cfg
        win_loss = torch.zeros((), device=self.device)
        win_gn = torch.zeros((), device=self.device)
        win_steps, win_time = 0, 0.0
        reason = "completed"
        while self.step < cfg.steps:
            if self.should_stop is not None and self.should_stop():
                reason = "stopped"
                break
            if self.time_budget_s is not None and self.elapsed >= self.time_budget_s:
                reason = "budget"
                break
            t0 = time.perf_counter()
            loss, gn = self.train_step()
            win_loss += loss
            win_gn += gn
            win_steps += 1
            log_now = self.step % cfg.log_every == 0 or self.step == cfg.steps
            if log_now and self.device.type == "cuda":
                torch.cuda.synchronize()  # so the window's time includes its queued kernels
            dt = time.perf_counter() - t0
            win_time += dt
            self.elapsed += dt
            if log_now:
                self._emit_metrics(win_loss, win_gn, win_steps, win_time)
                win_loss.zero_(), win_gn.zero_()
                win_steps, win_time = 0, 0.0
            if self.step < cfg.steps:
                if cfg.sample_every and self.step % cfg.sample_every == 0:
                    self.emit_samples()
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    self.evaluate()
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.run_dir is not None:
                    self.save()
        if win_steps:
            self._emit_metrics(win_loss, win_gn, win_steps, win_time)
        if self.run_dir is not None:
            self.save()
        if reason != "stopped" and self.step > 0:
            self.emit_samples()
            if cfg.eval_every:
                self.evaluate()
        self.on_event(Finished(self.step, reason))
        return reason

    def _emit_metrics(self, loss_sum: torch.Tensor, gn_sum: torch.Tensor, n: int, seconds: float) -> None:
        loss = float(loss_sum) / n  # the one host sync per log window
        if not math.isfinite(loss):
            raise TrainingError(
                f"the loss became {loss} at step {self.step}; lower lr (now {self.cfg.lr:g}) or keep grad_clip on"
            )
        values = {
            "loss": loss,
            "lr": float(self.lr),
            "grad_norm": float(gn_sum) / n,
            "images_per_s": n * self.cfg.batch_size / seconds if seconds > 0 else 0.0,
            "elapsed_s": self.elapsed,
        }
        self.on_event(Metrics(self.step, values))

    # ---- sampling ----------------------------------------------------------------------

    def sample(
        self,
        n: int,
        *,
        sampler: str | None = None,
        steps: int | None = None,
        eta: float | None = None,
        seed: int | None = None,
        trajectory_frames: int = 0,
        use_ema: bool = True,
    ) -> SampleResult:
        cfg = self.cfg
        net = self.ema.module if use_ema else self.model
        return generate(
            net,
            self.diffusion,
            cfg,
            n,
            device=self.device,
            sampler=sampler or cfg.sampler,
            steps=steps if steps is not None else (cfg.sample_steps if (sampler or cfg.sampler) == "ddim" else None),
            eta=eta,
            seed=cfg.seed + 1 if seed is None else seed,
            trajectory_frames=trajectory_frames,
        )

    def emit_samples(self) -> Samples:
        res = self.sample(self.cfg.sample_n)
        steps = self.cfg.sample_steps if self.cfg.sampler == "ddim" else self.cfg.T
        event = Samples(self.step, to_numpy(res.x, self.cfg), self.cfg.sampler, steps)
        self.on_event(event)
        return event

    def evaluate(
        self,
        n: int | None = None,
        *,
        sampler: str | None = None,
        steps: int | None = None,
        eta: float | None = None,
        seed: int = 0,
    ) -> Evaluated:
        """Sample ``n`` (default ``eval_n``) with the EMA weights and judge them, floor
        included. The same seed at every step, so figures differ only by the model."""
        from core.evaluate import check_memory, evaluate

        cfg = self.cfg
        n = n or cfg.eval_n
        sampler = sampler or cfg.sampler
        steps = (steps or cfg.sample_steps) if sampler == "ddim" else cfg.T
        eta = cfg.eta if eta is None else eta
        check_memory(n, cfg.sample_shape)
        t0 = time.perf_counter()
        res = self.sample(n, sampler=sampler, steps=steps if sampler == "ddim" else None, eta=eta, seed=seed)
        ev = evaluate(to_numpy(res.x, cfg), cfg.dataset, device=self.device, seed=seed)
        event = Evaluated(self.step, n, sampler, steps, eta, seed, ev.figures, ev.floor, time.perf_counter() - t0)
        self.on_event(event)
        return event


def generate(
    net: torch.nn.Module,
    diffusion: Diffusion,
    cfg: RunConfig,
    n: int,
    *,
    device: torch.device,
    sampler: str = "ddim",
    steps: int | None = 50,
    eta: float | None = None,
    seed: int = 0,
    trajectory_frames: int = 0,
    batch: int = 256,
) -> SampleResult:
    """Sample ``n`` examples in batches (bounded memory), reproducibly for a seed. ``eta``
    defaults to the run's own, so every face samples a run the way it was tuned to be."""
    eta = cfg.eta if eta is None else eta
    was_training = net.training
    net.eval()

    def model_fn(x, t):
        with _autocast(device, cfg.amp):
            return net(x, t)

    parts: list[SampleResult] = []
    try:
        for i, start in enumerate(range(0, n, batch)):
            m = min(batch, n - start)
            parts.append(
                sample(
                    model_fn,
                    diffusion,
                    (m, *cfg.sample_shape),
                    sampler=sampler,
                    steps=steps,
                    eta=eta,
                    objective=cfg.objective,
                    seed=seed + i,
                    device=device,
                    clip_x0=cfg.clip_x0,
                    trajectory_frames=trajectory_frames if i == 0 else 0,
                )
            )
    finally:
        net.train(was_training)
    first = parts[0]
    first.x = torch.cat([p.x for p in parts]).cpu() if len(parts) > 1 else first.x.cpu()
    return first


def to_numpy(x: torch.Tensor, cfg: RunConfig) -> np.ndarray:
    """Samples as the store keeps them: uint8 images or float32 points."""
    if cfg.is_image:
        return to_uint8(x.cpu()).numpy()
    return x.float().cpu().numpy()


def load_for_sampling(path: Path | str, device: str | torch.device = "cpu", use_ema: bool = True):
    """(network, diffusion, config, step) from a checkpoint, ready to sample."""
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    state = load_checkpoint(path)
    try:
        cfg = RunConfig.from_dict(state["config"])
        net = build_model(cfg)
        if use_ema:
            ema = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
            net.load_state_dict(ema)
        else:
            net.load_state_dict(state["model"])
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} does not hold a usable model: {str(e).splitlines()[0][:200]}") from None
    net.to(dev).eval()
    return net, Diffusion.from_schedule(cfg.schedule, cfg.T, dev), cfg, int(state["step"])
