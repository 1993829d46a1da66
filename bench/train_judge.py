"""Train the judge classifier that scores generated digits, and ship its weights.

    python bench/train_judge.py [--epochs 4] [--seed 0]

Writes core/assets/judge/mnist.pt (weights, loadable with weights_only=True) and
core/assets/judge/mnist.json (test accuracy and how it was trained). Anyone can rerun it;
it takes a few minutes on a 2-core CPU. Training uses small random shifts so the judge does
not depend on digits being perfectly centred, as generated digits may not be.
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

from core.atomic import atomic_write_bytes  # noqa: E402
from core.checkpoint import save_checkpoint  # noqa: E402
from core.data import load_mnist  # noqa: E402
from core.evaluate import JUDGE_DIR, JudgeNet, predict  # noqa: E402


def shift(x: torch.Tensor, g: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random translation by up to max_shift pixels, zero fill."""
    n = x.shape[0]
    pad = F.pad(x, (max_shift,) * 4)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=g)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=g)
    rows = (dy[:, None] + torch.arange(28)[None]).clamp(max=pad.shape[2] - 1)
    cols = (dx[:, None] + torch.arange(28)[None]).clamp(max=pad.shape[3] - 1)
    return pad[torch.arange(n)[:, None, None], 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    xtr, ytr = load_mnist("train")
    xte, yte = load_mnist("test")
    xtr_t = torch.from_numpy(xtr.copy()).unsqueeze(1)
    ytr_t = torch.from_numpy(ytr.astype("int64"))
    net = JudgeNet()
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
            x = JudgeNet.prepare(shift(xtr_t[idx], g))
            loss = F.cross_entropy(net(x), ytr_t[idx], label_smoothing=0.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        net.eval()
        acc = float((predict(net, xte).argmax(1).numpy() == yte).mean())
        print(f"epoch {epoch + 1}/{args.epochs}  loss {loss.item():.4f}  test accuracy {acc:.4%}  {time.time() - t0:.0f}s", flush=True)

    JUDGE_DIR.mkdir(parents=True, exist_ok=True)
    saved = save_checkpoint(JUDGE_DIR / "mnist.pt", {"model": net.state_dict()})
    info = {
        "dataset": "mnist",
        "test_accuracy": acc,
        "test_images": int(len(yte)),
        "epochs": args.epochs,
        "seed": args.seed,
        "sha256": saved.sha256,
        "command": "python bench/train_judge.py " + " ".join(sys.argv[1:]),
    }
    atomic_write_bytes(JUDGE_DIR / "mnist.json", (json.dumps(info, indent=2) + "\n").encode())
    print(f"wrote {saved.path} ({saved.bytes / 1e6:.2f} MB); test accuracy {acc:.4%}")


if __name__ == "__main__":
    main()
