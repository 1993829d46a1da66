"""Train a preset for a wall-clock budget, sample with the EMA weights, score the samples.

    python bench/quality.py --preset quick --minutes 10 --n 1000 --sampler ddim --steps 50 --out FILE.npy

Training stops at the budget (the learning-rate schedule runs on the budget's clock, so it
decays to its floor exactly when time is up). The samples go to FILE.npy as uint8 (N, 28, 28)
for MNIST-like data, (N, C, H, W) for colour folders, float32 (N, 2) for the S-curve. The
script prints minutes, steps, images seen, images/s and the parameter count, then, for MNIST,
the judge's confident share and class entropy (see core/evaluate.py).

Extra flags (later issues extend, never break, the ones above): --set key=value (any config
field), --device, --seed, --threads, --checkpoint FILE.pt; --sampler dpmpp2m (quick's own:
--sampler dpmpp2m --steps 15 draws as its grids do); --eta-window W (an eta above 1 only at
t < W * T; default the preset's for the sampler); for a
class-conditional preset (quick-cond), --guidance W and --labels-out LABELS.npy (the class each
sample was asked for: int64, the --out order; classes balanced and in order), and the judge's
class accuracy is printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.atomic import atomic_write_bytes
from core.checkpoint import save_checkpoint
from core.choices import SAMPLERS  # noqa: E402
from core.config import ConfigError, preset
from core.generate import to_numpy
from core.sampling_spec import SamplingError, resolve_spec, sample_labels
from core.sources import DataError
from core.train import Metrics, Trainer, TrainingError


def parse_sets(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError([f"--set {item!r}: expected key=value, e.g. --set lr=1e-3"])
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train a preset for a time budget, then sample and score it.")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget in wall-clock minutes")
    ap.add_argument("--n", type=int, default=1000, help="how many samples to draw")
    ap.add_argument("--sampler", choices=list(SAMPLERS), default="ddim")
    ap.add_argument("--steps", type=int, default=50, help="sampler steps (ddim, dpmpp2m)")
    ap.add_argument("--eta", type=float, default=None, help="the sampler's noise (default: the preset's for that sampler)")
    ap.add_argument(
        "--eta-window", type=float, default=None, help="an eta above 1 only at t < W*T (default: the preset's for that sampler)"
    )
    ap.add_argument("--out", type=Path, required=True, help="FILE.npy for the samples")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=None, help="training seed (default: the preset's)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines while training")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: torch's choice)")
    ap.add_argument("--checkpoint", type=Path, default=None, help="also save the trained state to this .pt file")
    ap.add_argument("--guidance", type=float, default=None, help="a conditional preset's guidance (default: the preset's)")
    ap.add_argument("--labels-out", type=Path, default=None, help="LABELS.npy: each sample's class (conditional presets)")
    args = ap.parse_args(argv)

    if args.out.suffix != ".npy":
        ap.error("--out must name a .npy file")
    if not args.out.parent.exists():
        ap.error(f"--out: folder {args.out.parent} does not exist")
    if args.labels_out is not None and args.labels_out.suffix != ".npy":
        ap.error("--labels-out must name a .npy file")
    try:
        overrides = parse_sets(args.sets)
        if args.seed is not None:
            overrides["seed"] = args.seed
        # The budget, not the step count, ends training: make the step count unreachable.
        overrides.setdefault("steps", 10**9)
        overrides.setdefault("sample_every", 0)
        overrides.setdefault("checkpoint_every", 0)
        cfg = preset(args.preset, overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    budget = args.minutes * 60.0
    last = {"t": 0.0}

    def on_event(ev) -> None:
        if isinstance(ev, Metrics) and not args.quiet and time.time() - last["t"] > 30:
            last["t"] = time.time()
            v = ev.values
            print(
                f"  step {ev.step:6d}  loss {v['loss']:.4f}  lr {v['lr']:.2e}  {v['images_per_s']:.0f} img/s  "
                f"{v['elapsed_s'] / 60:.1f}/{args.minutes:g} min",
                flush=True,
            )

    try:
        trainer = Trainer(cfg, device=args.device, on_event=on_event, time_budget_s=budget)
        trainer.run()
    except (ConfigError, DataError, TrainingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    if args.checkpoint is not None:
        save_checkpoint(args.checkpoint, trainer.state_dict())
    minutes = trainer.elapsed / 60
    images = trainer.step * cfg.batch_size
    print(f"preset      {args.preset}  device {trainer.device}")
    print(f"parameters  {trainer.n_params:,}")
    print(f"minutes     {minutes:.2f}")
    print(f"steps       {trainer.step}")
    print(f"images      {images:,}")
    print(f"images/s    {images / max(trainer.elapsed, 1e-9):.1f}")

    try:
        steps = args.steps if args.sampler != "ddpm" else None
        spec = resolve_spec(
            cfg, sampler=args.sampler, steps=steps, eta=args.eta, guidance=args.guidance, eta_window=args.eta_window
        )
        labels = sample_labels(cfg, args.n, None)
    except SamplingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    res = trainer.sample(args.n, spec, seed=12345, labels=labels)
    t_sample = time.perf_counter() - t0
    arr = to_numpy(res.x, cfg)
    if cfg.is_image and arr.shape[1] == 1:
        arr = arr[:, 0]
    buf = _npy_bytes(arr)
    atomic_write_bytes(args.out, buf)
    print(f"sampling    {args.n} with {spec.label} in {t_sample:.1f}s")
    print(f"wrote       {args.out} {arr.dtype} {tuple(arr.shape)}")
    if args.labels_out is not None and labels is not None:
        atomic_write_bytes(args.labels_out, _npy_bytes(np.asarray(labels, dtype=np.int64)))
        print(f"wrote       {args.labels_out} int64 ({len(labels)},)")

    if cfg.dataset in ("mnist", "fashion", "scurve"):
        from core.evaluate import evaluate

        t0 = time.perf_counter()
        ev = evaluate(arr, cfg.dataset, device=trainer.device, labels=labels)
        print(f"judged      {ev.n} samples against the {cfg.dataset} test split in {time.perf_counter() - t0:.1f}s"
              f"  (floor: {ev.n} real training examples)")  # fmt: skip
        for k, v in ev.figures.items():
            label = {
                "confident": "confident (judge max softmax > 0.9)",
                "class_entropy": "class_entropy (1 = all classes equally)",
            }
            print(f"{label.get(k, k):<40} {_fmt(k, v):>10}   floor {_fmt(k, ev.floor[k]):>10}")
        if ev.class_counts:
            print(f"class_counts {ev.class_counts}")
        if ev.detail.get("class_accuracy"):
            print("class_accuracy_by_class " + " ".join(f"{k}:{v:.1%}" for k, v in ev.detail["class_accuracy"].items()))
    return 0


def _fmt(name: str, v: float) -> str:
    return (
        f"{v:.1%}"
        if name in ("confident", "class_accuracy", "class_accuracy_min")
        else f"{v:.4f}"
        if name in ("kid", "kid_std", "class_entropy", "swd", "curve_distance")
        else f"{v:.2f}"
    )


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    b = io.BytesIO()
    np.save(b, arr)
    return b.getvalue()


if __name__ == "__main__":
    sys.exit(main())
