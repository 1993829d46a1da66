"""Quality against network calls for each sampler, on one trained checkpoint.

    python bench/sampler_table.py --checkpoint FILE.pt [--n 1000] [--steps 5,10,15,20,50]
                                  [--samplers ddim,dpmpp2m,dpmpp2m:1,ddim:1.8:0.7] [--eta RUN|X] [--guidance W]
                                  [--seed 0 | --seeds 0,1,12345]

FILE.pt is a checkpoint (``bench/quality.py --checkpoint FILE.pt`` writes one; so does every
run, in its runs folder). For each sampler and step count it draws ``--n`` samples with the EMA
weights (the same seed, so the same starting noise) and prints FID, KID, confident share, class
entropy (and class accuracy for a conditional run) from the shipped judge, with the seconds the
draw took. DDIM uses the run's own eta unless ``--eta`` gives one; a sampler written
``name:eta`` takes that eta (``dpmpp2m:1`` is DPM-Solver++'s SDE solver; plain ``dpmpp2m`` its
ODE solver), and one written ``name:eta:window`` that eta window too (``ddim:1.8:0.7``: eta 1.8
at t < 0.7 T, eta 1 above; ``ddim:1.8:1`` no window, whatever the run's own). This is the table
the presets' default sampler and steps are chosen from.

``--seeds`` draws each row once per sampling seed and adds a mean row: on 1,000 samples the
FID of one draw moves by several points with the seed alone, more than most differences
between neighbouring rows, so a choice between samplers wants the mean of a few draws.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.errors import DDPMError  # noqa: E402
from core.evaluate import evaluate  # noqa: E402
from core.generate import generate, load_for_sampling, to_numpy  # noqa: E402
from core.sampling_spec import SamplingSpec, resolve_spec, sample_labels  # noqa: E402
from core.train import resolve_device  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--steps", default="5,10,15,20,50")
    ap.add_argument("--samplers", default="ddim,dpmpp2m", help="comma list of SAMPLER, SAMPLER:ETA or SAMPLER:ETA:WINDOW")
    ap.add_argument("--eta", default="run", help="DDIM's eta: 'run' for the run's own, or a number")
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", default=None, help="comma list of sampling seeds: one row each, then their mean")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    try:
        net, diffusion, cfg, step = load_for_sampling(args.checkpoint, dev)
        specs = plan(cfg, args.samplers, args.steps, args.eta, args.guidance)
        labels = sample_labels(cfg, args.n, None)
        seeds = numbers(args.seeds or str(args.seed), int, "--seeds")
    except DDPMError as e:
        ap.error(str(e))
    shown = ",".join(map(str, seeds))
    print(f"checkpoint {args.checkpoint} (step {step:,}), {args.n} samples per row, seed {shown}, device {dev}")
    head = f"{'sampler':<34} {'seed':>6} {'seconds':>8} {'FID':>8} {'KID':>8} {'confident':>10} {'entropy':>8}"
    print(head + (f" {'class acc':>10} {'worst':>6}" if labels else ""))
    for spec in specs:
        rows = []
        for seed in seeds:
            t0 = time.perf_counter()
            res = generate(net, diffusion, cfg, args.n, spec=spec, device=dev, seed=seed, labels=labels)
            seconds = time.perf_counter() - t0
            f = evaluate(to_numpy(res.x, cfg), cfg.dataset, device=dev, floor=False, seed=seed, labels=labels).figures
            rows.append({"seconds": seconds, **f})
            print(row(spec.label, str(seed), rows[-1], labels), flush=True)
        if len(rows) > 1:
            mean = {k: sum(r[k] for r in rows) / len(rows) for k, v in rows[0].items() if isinstance(v, (int, float))}
            print(row(spec.label, "mean", mean, labels), flush=True)


def numbers(text: str, kind: type, what: str) -> list:
    """A comma list of numbers, or an error that names the flag and the list."""
    try:
        return [kind(v) for v in text.split(",")]
    except ValueError:
        noun = "whole numbers" if kind is int else "numbers"
        raise DDPMError(f"{what} {text!r}: expected {noun} separated by commas") from None


def number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DDPMError(f"{what} {text!r} is not a number") from None


def plan(cfg, samplers: str, steps: str, eta: str, guidance: float | None) -> list[SamplingSpec]:
    """Every row's spec, resolved against the run before the first draw, so that a typo in the
    last entry is a one-line error now rather than a traceback after minutes of sampling."""
    specs = []
    for entry in samplers.split(","):
        sampler, _, rest = entry.partition(":")
        own_eta, _, own_window = rest.partition(":")
        e = number(own_eta, f"--samplers entry {entry!r}: eta") if own_eta else None
        w = number(own_window, f"--samplers entry {entry!r}: window") if own_window else None
        if e is None and eta != "run" and sampler == "ddim":
            e = number(eta, "--eta")
        for n in numbers(steps, int, "--steps"):
            specs.append(resolve_spec(cfg, sampler, n, e, guidance, w))
    return specs


def row(label: str, seed: str, f: dict, labels) -> str:
    line = (f"{label:<34} {seed:>6} {f['seconds']:8.1f} {f['fid']:8.2f} {f['kid']:8.4f} {f['confident']:10.1%} "
            f"{f['class_entropy']:8.4f}")  # fmt: skip
    return line + (f" {f['class_accuracy']:10.1%} {f['class_accuracy_min']:6.0%}" if labels else "")


if __name__ == "__main__":
    main()
