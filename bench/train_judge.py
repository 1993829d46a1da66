"""Train a judge classifier that scores generated images, and ship its weights.

    python bench/train_judge.py [--dataset mnist|fashion] [--epochs 4] [--seed 0]

Writes core/assets/judge/DATASET.pt (weights, loadable with weights_only=True) and
core/assets/judge/DATASET.json (test accuracy and how it was trained). Anyone can rerun it;
it takes a few minutes on a 2-core CPU. Training uses small random shifts so the judge does
not depend on digits being perfectly centred, as generated digits may not be.

Outlier exposure (Hendrycks et al., 2019): each batch also holds images that are not digits
(uniform and blurred noise, flat grey, scattered dots), trained towards a uniform prediction.
A plain classifier calls almost any noise a confident digit (97.7% of uniform noise images
had max softmax > 0.9 before this); the judge's "confident" share should mean a legible digit.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.atomic import atomic_write_bytes
from core.checkpoint import save_checkpoint
from core.evaluate import JUDGE_DIR, JUDGED, JudgeNet, load_split, predict


def shift(x: torch.Tensor, g: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random translation by up to max_shift pixels, zero fill."""
    n = x.shape[0]
    pad = F.pad(x, (max_shift,) * 4)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=g)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=g)
    rows = (dy[:, None] + torch.arange(28)[None]).clamp(max=pad.shape[2] - 1)
    cols = (dx[:, None] + torch.arange(28)[None]).clamp(max=pad.shape[3] - 1)
    return pad[torch.arange(n)[:, None, None], 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def outliers(n: int, g: torch.Generator) -> torch.Tensor:
    """n uint8 (N, 1, 28, 28) images that are no digit (nor garment): four kinds of noise."""
    kind = torch.randint(0, 4, (n, 1, 1, 1), generator=g)
    uniform = torch.randint(0, 256, (n, 1, 28, 28), generator=g).float()
    blurred = F.avg_pool2d(torch.rand(n, 1, 28, 28, generator=g) * 255, 5, stride=1, padding=2) * 2.5
    flat = torch.randint(0, 256, (n, 1, 1, 1), generator=g).float().expand(n, 1, 28, 28)
    dots = (torch.rand(n, 1, 28, 28, generator=g) < 0.08).float() * 255
    x = torch.where(kind == 0, uniform, torch.where(kind == 1, blurred, torch.where(kind == 2, flat, dots)))
    return x.clamp(0, 255).to(torch.uint8)


def noise_confident(net: JudgeNet, n: int = 2000, seed: int = 123) -> float:
    """Share of fresh outlier images the judge is confident about (it should be near 0)."""
    probs = predict(net, outliers(n, torch.Generator().manual_seed(seed)))
    return float((probs.max(1).values > 0.9).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=JUDGED, default="mnist")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--outlier-weight", type=float, default=0.5, help="weight of the uniform-prediction loss on outliers")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    xtr, ytr = load_split(args.dataset, "train")
    xte, yte = load_split(args.dataset, "test")
    xtr_t = torch.from_numpy(xtr.copy()).unsqueeze(1)
    ytr_t = torch.from_numpy(ytr.astype("int64"))
    net = JudgeNet(dataset=args.dataset)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * (len(xtr_t) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps)
    t0 = time.time()
    step = 0
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(len(xtr_t), generator=g)
        for i in range(0, len(perm) - args.batch + 1, args.batch):
            idx = perm[i : i + args.batch]
            x = net.prepare(shift(xtr_t[idx], g))
            loss = F.cross_entropy(net(x), ytr_t[idx])
            if args.outlier_weight > 0:
                out = net(net.prepare(outliers(args.batch // 4, g)))
                loss = loss - args.outlier_weight * F.log_softmax(out, dim=1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        net.eval()
        acc = float((predict(net, xte).argmax(1).numpy() == yte).mean())
        noise = noise_confident(net)
        print(
            f"epoch {epoch + 1}/{args.epochs}  loss {loss.item():.4f}  test accuracy {acc:.4%}  "
            f"confident on noise {noise:.1%}  {time.time() - t0:.0f}s",
            flush=True,
        )

    JUDGE_DIR.mkdir(parents=True, exist_ok=True)
    saved = save_checkpoint(JUDGE_DIR / f"{args.dataset}.pt", {"model": net.state_dict()})
    info = {
        "dataset": args.dataset,
        "test_accuracy": acc,
        "test_images": int(len(yte)),
        "confident_on_noise": noise,
        "outlier_weight": args.outlier_weight,
        "epochs": args.epochs,
        "seed": args.seed,
        "sha256": saved.sha256,
        "command": "python bench/train_judge.py " + " ".join(sys.argv[1:]),
    }
    atomic_write_bytes(JUDGE_DIR / f"{args.dataset}.json", (json.dumps(info, indent=2) + "\n").encode())
    print(f"wrote {saved.path} ({saved.bytes / 1e6:.2f} MB); test accuracy {acc:.4%}")


if __name__ == "__main__":
    main()
