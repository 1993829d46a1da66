"""The same 10-minute MNIST budget given to a well-known public DDPM package, judged alike.

    pip install --target /tmp/ddp --no-deps denoising-diffusion-pytorch einops ema-pytorch \\
        accelerate pytorch-fid scipy tqdm psutil pyyaml huggingface_hub safetensors
    PYTHONPATH=/tmp/ddp python bench/public_baseline.py --minutes 10 --n 1000 --out /tmp/ddp.npy

`denoising-diffusion-pytorch` (lucidrains) is installed only for this benchmark, never by the
project. Its own recipe, tuned reasonably for a CPU and ten minutes: its ``Unet`` at base width
16 with multipliers (1, 2, 4), ``GaussianDiffusion`` with its defaults (v objective, sigmoid
schedule, T=1000) plus min-SNR weighting, DDIM-50 sampling, Adam at 1e-3 (its 8e-5 default
learns nothing visible in ten CPU minutes), batch 64, EMA 0.995 from ``ema-pytorch`` as its
trainer uses, and a torch DataLoader with per-image ``ToTensor`` as its trainer feeds it. The
samples go through the same judge as ``bench/quality.py``. Width 32 (2.6M parameters) was
tried first: 21 images/s on the 2-core CPU, 101 steps in ten minutes, and sampling 1,000
digits would have taken over 20 minutes, so width 16 is the reasonable choice here.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.evaluate import evaluate
from core.sources import load_mnist


class Digits(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray):
        from torchvision.transforms import ToTensor

        self.images, self.tf = images, ToTensor()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.tf(self.images[i])  # (1, 28, 28) in [0, 1], as the package expects


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=50, help="DDIM steps")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from denoising_diffusion_pytorch import GaussianDiffusion, Unet
    from ema_pytorch import EMA

    unet = Unet(dim=args.dim, dim_mults=(1, 2, 4), channels=1, flash_attn=False)
    diffusion = GaussianDiffusion(unet, image_size=28, timesteps=1000, sampling_timesteps=args.steps, min_snr_loss_weight=True)
    ema = EMA(diffusion, beta=0.995, update_every=1, update_after_step=100)
    opt = torch.optim.Adam(diffusion.parameters(), lr=args.lr)
    params = sum(p.numel() for p in unet.parameters())
    loader = torch.utils.data.DataLoader(Digits(load_mnist("train")[0]), batch_size=args.batch, shuffle=True, drop_last=True)

    budget, steps, t0 = args.minutes * 60, 0, time.perf_counter()
    while time.perf_counter() - t0 < budget:
        for x in loader:
            loss = diffusion(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(diffusion.parameters(), 1.0)
            opt.step()
            ema.update()
            steps += 1
            if steps % 100 == 0:
                print(f"step {steps}  loss {loss.item():.4f}  {time.perf_counter() - t0:.0f}s", flush=True)
            if time.perf_counter() - t0 >= budget:
                break
    elapsed = time.perf_counter() - t0
    print(f"package     denoising-diffusion-pytorch Unet(dim={args.dim}, dim_mults=(1, 2, 4)), v objective, min-SNR")
    print(f"minutes     {elapsed / 60:.2f}")
    print(f"steps       {steps}")
    print(f"images      {steps * args.batch}")
    print(f"images/s    {steps * args.batch / elapsed:.1f}")
    print(f"params      {params}")

    t0 = time.perf_counter()
    ema.ema_model.eval()
    out = []
    with torch.inference_mode():
        torch.manual_seed(12345)
        for i in range(0, args.n, 250):
            out.append(ema.ema_model.sample(batch_size=min(250, args.n - i)))
    x = (torch.cat(out).clamp(0, 1) * 255).round().to(torch.uint8)[:, 0].numpy()
    print(f"sampling    {args.n} with ddim-{args.steps} in {time.perf_counter() - t0:.1f}s")
    if args.out:
        np.save(args.out, x)
    ev = evaluate(x, "mnist")
    for k, v in ev.figures.items():
        print(f"{k:<14} {v:10.4f}   floor {ev.floor[k]:10.4f}")
    print(f"class_counts {ev.class_counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
