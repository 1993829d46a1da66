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

from core import devices, sysinfo
from core.checkpoint import CheckpointError, SavedCheckpoint, load_checkpoint, save_checkpoint
from core.config import ConfigError, RunConfig, check_split
from core.data import BatchOrder, HostBatches, TensorDataset, check_fits, fits_on_device, flip_some, load_dataset
from core.diffusion import Diffusion, sample_noise, sample_timesteps
from core.distributed import SINGLE, ProcessGroup, wrap
from core.ema import EMA
from core.errors import DDPMError
from core.generate import generate, to_numpy
from core.models import build_model, count_parameters, place_model
from core.samplers import SampleResult
from core.sampling_spec import SamplingSpec, resolve_spec, sample_labels


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
    """Images as uint8 (N, C, H, W), 2-D points as float32 (N, 2), or sequences as float32
    (N, C, L) in the data's own units."""

    step: int
    data: np.ndarray
    spec: SamplingSpec
    labels: list[int] | None = None  # each image's class, for a conditional run

    @property
    def sampler(self) -> str:
        return self.spec.sampler

    @property
    def steps(self) -> int:
        return self.spec.steps


@dataclass
class CheckpointSaved:
    step: int
    path: Path
    bytes: int
    sha256: str
    removed: list[Path] = field(default_factory=list)


@dataclass
class Evaluated:
    """Quality figures of ``n`` samples drawn at ``step`` under ``spec`` (see core/evaluate.py)."""

    step: int
    n: int
    spec: SamplingSpec
    seed: int
    figures: dict[str, float]
    floor: dict[str, float]
    seconds: float
    detail: dict = field(default_factory=dict)  # a conditional run's accuracy per class


@dataclass
class Finished:
    step: int
    reason: str  # completed | stopped | budget


Event = Metrics | Samples | CheckpointSaved | Evaluated | Finished


# ---- helpers ---------------------------------------------------------------------------


def resolve_device(name: str | None = "auto") -> torch.device:
    """The torch device a request gets here (see :func:`core.devices.resolve`, the one place
    requests are checked); a request this host cannot honour is a one-line error."""
    return torch.device(devices.resolve_here(name))


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


def self_condition_coin(seed: int, k: int) -> bool:
    """Whether micro-batch ``k`` of a self-conditioned run feeds the network its own estimate
    (probability one half, as Chen et al.): a pure function of (seed, k), so a resumed run
    decides as the uninterrupted one did and every rank alike; drawn on the host, since a
    draw on the device would make the host wait for it to choose the branch."""
    g = torch.Generator().manual_seed(_mix(seed, k) ^ 0x5E1F_C0)
    return bool(torch.rand((), generator=g) < 0.5)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def apply_update(
    model: torch.nn.Module, opt: torch.optim.Optimizer, ema: EMA | None, *, lr: float, grad_clip: float, ema_decay: float
) -> torch.Tensor:
    """The second half of a training step, after the gradients: clip, set the learning rate,
    step the optimizer, move the EMA. Every number in it is a Python float or a device
    tensor, so nothing here waits for the device (tests run it under a host-sync tripwire);
    returns the gradient norm as a device tensor."""
    params = [p for p in model.parameters()]
    if grad_clip > 0:
        gnorm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    else:
        gnorm = torch.zeros((), device=params[0].device)
    for group in opt.param_groups:
        group["lr"] = lr
    opt.step()
    if ema is not None:
        ema.update(getattr(model, "module", model), ema_decay)
    return gnorm


IMPLEMENTATION_KEYS = ("fused", "foreach", "capturable")


def optimizer_state_for(opt: torch.optim.Optimizer, saved: dict) -> dict:
    """A saved optimizer state made ready to load into ``opt`` on its own device.

    ``load_state_dict`` keeps only the params of the new optimizer's groups and takes every
    other key from the saved ones, ``fused`` included: a CPU run resumed on a GPU would stay
    unfused, a GPU run resumed on the CPU would ask for fused kernels. And it places each
    ``step`` counter by the saved flags: on the parameter's device when fused or capturable,
    else where it was. So the saved groups get this optimizer's flags, and for an unfused
    optimizer every ``step`` goes to the CPU as float32 (a ``step`` on the device would cost
    a host sync per parameter per step); a fused one gets them moved by ``load_state_dict``.
    """
    groups = [
        {**g, **{k: own[k] for k in IMPLEMENTATION_KEYS if k in own}} for own, g in zip(opt.param_groups, saved["param_groups"])
    ]
    state = {k: dict(v) for k, v in saved["state"].items()}
    for own, group in zip(opt.param_groups, groups):
        if own.get("fused") or own.get("capturable"):
            continue
        for pid in group["params"]:
            st = state.get(pid)
            if st is not None and torch.is_tensor(st.get("step")):
                st["step"] = st["step"].to("cpu", torch.float32)
    return {**saved, "param_groups": groups, "state": state}


# ---- the trainer -----------------------------------------------------------------------


class Trainer:
    """One run's training state and loop. ``clock`` times the steps (tests pass a fake one);
    ``data_placement`` is ``auto`` (the device when the dataset fits, see
    :func:`core.data.fits_on_device`), ``device`` or ``host``; ``system`` reads the
    process's memory and load into every log window (default: what
    :func:`core.sysinfo.reader_for` picks for the device; ``sysinfo.Readers()`` reads none)."""

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
        clock: Callable[[], float] = time.perf_counter,
        data_placement: str = "auto",
        group: ProcessGroup = SINGLE,
        system: sysinfo.SystemReader | None = None,
    ):
        self.cfg = cfg.validate()
        self.group = group
        check_split(cfg, group.world_size)
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.on_event = on_event or (lambda e: None)
        self.should_stop = should_stop
        self.time_budget_s = time_budget_s
        self.clock = clock
        # One that raises is dropped, never fails the run (sysinfo.Readers).
        self.system = sysinfo.Readers([system]) if system is not None else sysinfo.reader_for(self.device)

        data = dataset if dataset is not None else load_dataset(cfg)
        check_fits(cfg, len(data))
        self.scale = data.scale  # a sequence run's training range: samples go back to the data's units
        self.micro_batch = cfg.batch_size // cfg.grad_accum  # the global micro-batch
        self.local_batch = self.micro_batch // group.world_size  # this rank's slice of it
        self.data_placement = self._placement(data, data_placement)
        if self.data_placement == "device":
            self.data = data.to(self.device)
            self.host_batches = None
        else:
            self.data = data
            self.host_batches = HostBatches(data, self.local_batch, self.device)
        order_device = self.device if self.data_placement == "device" else torch.device("cpu")
        self.order = BatchOrder(len(self.data), self.micro_batch, cfg.seed, order_device)
        self.labels = None  # a conditional run's labels, on the device (they are small)
        if cfg.cond == "class":
            if data.labels is None:
                raise ConfigError([f"cond: the {cfg.dataset} data has no labels to condition on; leave cond=none"])
            if int(data.labels.max()) >= cfg.num_classes:
                raise ConfigError([f"num_classes: the data has {int(data.labels.max()) + 1} classes; set num_classes to that"])
            self.labels = data.labels.to(self.device)

        # Seed the generators this run uses and no others (torch.manual_seed would reseed
        # every GPU's too): the CPU's draws the initial weights, the run's GPU's its dropout.
        torch.random.default_generator.manual_seed(cfg.seed)
        if self.device.type == "cuda":
            with torch.cuda.device(self.device):
                torch.cuda.manual_seed(cfg.seed)
        self.autocast_dtype = devices.autocast_dtype(self.device, cfg.amp, cpu_bf16=cfg.cpu_bf16)
        self.net = place_model(build_model(cfg), self.device, self.autocast_dtype)  # the network itself, as checkpoints hold it
        self.model = wrap(self.net, group, self.device)  # what trains: DDP around it on several processes
        self.n_params = count_parameters(self.net)
        self.ema = EMA(self.net) if group.is_main else None  # rank 0 alone samples and checkpoints
        opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        self.fused = self._fused_for(self.device)
        self.opt = opt_cls(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=self.fused)
        self.diffusion = Diffusion.from_schedule(cfg.schedule, cfg.T, self.device)
        self._gen = torch.Generator(device=self.device)
        self.step = 0
        self.lr = cfg.lr
        self.elapsed = 0.0  # seconds spent in training steps, across resumes

    @staticmethod
    def _fused_for(device: torch.device) -> bool | None:
        """Fused optimizer kernels on CUDA (one launch for every parameter); torch's default
        elsewhere."""
        return True if device.type == "cuda" else None

    def _placement(self, data: TensorDataset, asked: str) -> str:
        if asked in ("device", "host"):
            return asked
        if self.device.type != "cuda":
            return "device"
        free, _total = torch.cuda.mem_get_info(self.device)
        return "device" if fits_on_device(data.nbytes, free) else "host"

    @property
    def precision(self) -> str:
        """``bf16`` (autocast) or ``fp32``: what the run's env records."""
        return "bf16" if self.autocast_dtype == torch.bfloat16 else "fp32"

    # ---- state -------------------------------------------------------------------------

    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":  # only a run on CUDA touches CUDA's generators
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "config": self.cfg.to_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            "world_size": self.group.world_size,
            "n_params": self.n_params,
            "model": self.net.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.opt.state_dict(),
            "rng": rng,
            "data_scale": self.scale.as_dict() if self.scale is not None else None,
            "torch_version": str(torch.__version__),
        }

    def load_state(self, state: dict) -> None:
        try:
            self.net.load_state_dict(state["model"])
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
            self.opt.load_state_dict(optimizer_state_for(self.opt, state["optimizer"]))
            self.step = int(state["step"])
            self.elapsed = float(state.get("elapsed", 0.0))
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"checkpoint does not match this run's model: {str(e).splitlines()[0][:200]}") from None
        rng = state.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        cuda_state = rng.get("cuda")
        if cuda_state is not None and self.device.type == "cuda":
            if isinstance(cuda_state, (list, tuple)):  # older checkpoints saved every GPU's state
                index = self.device.index or 0
                cuda_state = cuda_state[index] if index < len(cuda_state) else None
            if cuda_state is not None:
                torch.cuda.set_rng_state(cuda_state, self.device)

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

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This rank's slice of micro-batch k (an index gather on the device, or a staged copy
        from the host when the dataset does not fit there) and its labels (conditional runs)."""
        lo = self.group.rank * self.local_batch
        idx = self.order.indices(k)[lo : lo + self.local_batch]
        labels = self.labels.index_select(0, idx.to(self.labels.device)) if self.labels is not None else None
        if self.host_batches is not None:
            return self.host_batches.gather(idx), labels
        return self.data.gather(idx), labels

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step. Returns the loss and gradient norm as device tensors: nothing
        here waits for the device (the loop reads them once per log window)."""
        cfg, dev = self.cfg, self.device
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=dev)
        lo, hi = self.group.rank * self.local_batch, (self.group.rank + 1) * self.local_batch
        for m in range(cfg.grad_accum):
            k = self.step * cfg.grad_accum + m
            x0, y = self.batch(k)
            # The whole micro-batch's timesteps and noise, drawn alike on every rank; each
            # trains on its slice, so the global batch does not depend on the world size.
            self._gen.manual_seed(_mix(cfg.seed, k))
            t = sample_timesteps(self.micro_batch, cfg.T, cfg.t_sampling, generator=self._gen, device=dev)[lo:hi]
            shape = (self.micro_batch, *x0.shape[1:])
            eps = sample_noise(shape, generator=self._gen, device=dev, offset_noise=cfg.offset_noise)[lo:hi]
            if y is not None:  # classifier-free guidance trains the null label on a share of the batch
                drop = torch.rand(self.micro_batch, generator=self._gen, device=dev)[lo:hi] < cfg.cond_drop
                y = torch.where(drop, torch.full_like(y, cfg.num_classes), y)
            if cfg.hflip:  # drawn after the step's other draws, which stay those of a run without flips
                flip = torch.rand(self.micro_batch, generator=self._gen, device=dev)[lo:hi] < 0.5
                x0 = flip_some(x0, flip)
            xt = self.diffusion.q_sample(x0, t, eps)
            last = m == cfg.grad_accum - 1
            # DDP averages gradients once, on the last micro-batch's backward.
            with (
                _autocast(dev, self.autocast_dtype),
                self.model.no_sync() if self.group.distributed and not last else contextlib.nullcontext(),
            ):
                if cfg.self_condition:
                    out = self.model(xt, t, y, self._self_estimate(xt, t, y, k))
                else:
                    out = self.model(xt, t, y)
                if cfg.learned_variance:
                    out, v = out.chunk(2, dim=1)
                losses = self.diffusion.training_losses(
                    out, x0, t, eps, objective=cfg.objective, loss=cfg.loss, min_snr_gamma=cfg.min_snr_gamma
                )
                if cfg.learned_variance:  # the hybrid loss, improved-diffusion's L_simple + lambda L_vlb
                    losses = losses + cfg.vlb_weight * self.diffusion.vlb_loss(out, v, x0, xt, t, cfg.objective)
                loss = losses.mean() / cfg.grad_accum
                loss.backward()
            total += loss.detach()
        lr = cfg.lr * lr_factor(self.step, self.progress(), cfg.warmup, cfg.lr_decay)
        gnorm = apply_update(
            self.model, self.opt, self.ema, lr=lr, grad_clip=cfg.grad_clip, ema_decay=ema_decay_at(self.step, cfg.ema_decay)
        )
        self.step += 1
        self.lr = lr
        return total, gnorm

    def _self_estimate(self, xt: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None, k: int) -> torch.Tensor:
        """What a self-conditioned network sees beside x_t (Chen et al. 2022): on half of the
        micro-batches (:func:`self_condition_coin`) its own x0 estimate from a first pass
        without gradient (from whatever the objective predicts, clipped as sampling clips
        it), detached, so no gradient flows through it; zeros on the rest, as at the first
        sampling step."""
        cfg = self.cfg
        zeros = torch.zeros_like(xt)
        if not self_condition_coin(cfg.seed, k):
            return zeros
        with torch.no_grad():
            out = self.net(xt, t, y, zeros)[:, : xt.shape[1]]  # the prediction, without a learned variance
            x0, _ = self.diffusion.predict_x0_eps(out.float(), xt, t, cfg.objective)
        return (x0.clamp(-1.0, 1.0) if cfg.clip_x0 else x0).detach()

    # ---- the loop ----------------------------------------------------------------------

    def run(self) -> str:
        """Train until done, stopped or out of budget; returns the reason."""
        cfg = self.cfg
        win_loss = torch.zeros((), device=self.device)
        win_gn = torch.zeros((), device=self.device)
        win_steps, win_time = 0, 0.0
        reason = "completed"
        main, distributed = self.group.is_main, self.group.distributed
        while self.step < cfg.steps:
            if not distributed:  # several processes agree on stopping at log windows instead
                stop = self._wants_stop()
                if stop:
                    reason = stop
                    break
            t0 = self.clock()
            loss, gn = self.train_step()
            win_loss += loss
            win_gn += gn
            win_steps += 1
            log_now = self.step % cfg.log_every == 0 or self.step == cfg.steps
            if log_now and self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # so the window's time includes its queued kernels
            dt = self.clock() - t0
            win_time += dt
            self.elapsed += dt
            stop = None
            if log_now:
                stop = self._emit_metrics(win_loss, win_gn, win_steps, win_time, self._wants_stop() if distributed else None)
                win_loss.zero_(), win_gn.zero_()
                win_steps, win_time = 0, 0.0
            if self.step < cfg.steps and main:
                if cfg.sample_every and self.step % cfg.sample_every == 0:
                    self.emit_samples()
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    self.evaluate()
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.run_dir is not None:
                    self.save()
            if stop and self.step < cfg.steps:
                reason = stop
                break
        if win_steps:
            self._emit_metrics(win_loss, win_gn, win_steps, win_time, None)
        if main and self.run_dir is not None:
            self.save()
        if main and reason != "stopped" and self.step > 0:
            self.emit_samples()
            if cfg.eval_every:
                self.evaluate()
        if main:
            self.on_event(Finished(self.step, reason))
        return reason

    def _wants_stop(self) -> str | None:
        """This process's reason to stop now (a stop request, the time budget), or None."""
        if self.should_stop is not None and self.should_stop():
            return "stopped"
        if self.time_budget_s is not None and self.elapsed >= self.time_budget_s:
            return "budget"
        return None

    def _emit_metrics(self, loss_sum: torch.Tensor, gn_sum: torch.Tensor, n: int, seconds: float, stop: str | None) -> str | None:
        """Report a log window; on several processes, the ranks agree here on its loss (the
        global batch's) and on stopping, and only rank 0 reports. Returns the agreed reason to
        stop, if any."""
        if self.group.distributed:
            loss_sum, any_stop = self.group.window(loss_sum, stop is not None)
            stop = (stop or "stopped") if any_stop else None
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
        if self.group.is_main:
            # Host-side counters, after the window's sync and outside its time: the main
            # process's own figures (each peer of a multi-process run costs about the same).
            values.update(self.system.read())
            self.on_event(Metrics(self.step, values))
        return stop

    # ---- sampling ----------------------------------------------------------------------

    def sample(
        self,
        n: int,
        spec: SamplingSpec | None = None,
        *,
        seed: int | None = None,
        trajectory_frames: int = 0,
        use_ema: bool = True,
        labels: list[int] | None = None,
    ) -> SampleResult:
        """``n`` samples under ``spec`` (default: the run's own, see resolve_spec); a
        conditional run draws ``labels`` (default every class in turn)."""
        cfg = self.cfg
        net = self.ema.module if use_ema else self.net
        return generate(
            net, self.diffusion, cfg, n, spec=spec or resolve_spec(cfg), device=self.device,
            seed=cfg.seed + 1 if seed is None else seed, trajectory_frames=trajectory_frames, labels=labels,
        )  # fmt: skip

    def emit_samples(self) -> Samples:
        """The run's grid of ``sample_n``; a conditional run's has one class per row."""
        spec = resolve_spec(self.cfg)
        labels = sample_labels(self.cfg, self.cfg.sample_n, None)
        res = self.sample(self.cfg.sample_n, spec, labels=labels)
        event = Samples(self.step, to_numpy(res.x, self.cfg, self.scale), spec, labels)
        self.on_event(event)
        return event

    def evaluate(self, n: int | None = None, spec: SamplingSpec | None = None, *, seed: int = 0) -> Evaluated:
        """Sample ``n`` (default ``eval_n``) with the EMA weights under ``spec`` (default the
        run's own) and judge them, floor included. The same seed at every step, so figures
        differ only by the model."""
        from core.evaluate import check_memory, evaluate

        cfg = self.cfg
        n = n or cfg.eval_n
        spec = spec or resolve_spec(cfg)
        check_memory(n, cfg.sample_shape)
        t0 = time.perf_counter()
        labels = sample_labels(cfg, n, None)  # a conditional run is judged on every class alike
        res = self.sample(n, spec, seed=seed, labels=labels)
        ev = evaluate(to_numpy(res.x, cfg, self.scale), cfg.dataset, device=self.device, seed=seed, labels=labels, config=cfg)
        event = Evaluated(self.step, n, spec, seed, ev.figures, ev.floor, time.perf_counter() - t0, ev.detail)
        self.on_event(event)
        return event
