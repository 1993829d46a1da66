"""Speed figures for the engine on this machine.

    python bench/speed.py [--seconds 30] [--device auto|cpu|cuda|cuda:N]

Prints:

1. training throughput (images/s) of the `quick` preset through the real Trainer (on-device
   dataset, batches by index gather, EMA included);
2. the same `quick` network fed by a torch DataLoader with per-image transforms (ToTensor,
   Normalize on PIL images), which isolates what the data path costs;
3. a conventional full-resolution U-Net with about the same parameter count fed the same way:
   the setup the quick preset replaces;
4. the time to sample 64 digits with DDIM-50 using the quick network;
5. the `smoke` preset end to end (data, model, 20 steps, checkpoint, samples).

Throughput depends on the weights only through the arithmetic, so untrained weights are used.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import preset
from core.diffusion import Diffusion
from core.errors import DDPMError
from core.generate import generate
from core.models import build_model, count_parameters, place_model
from core.models.unet import UNet
from core.sampling_spec import resolve_spec
from core.sources import load_mnist
from core.train import Trainer, resolve_device


def trainer_throughput(seconds: float, device: torch.device) -> tuple[float, int]:
    cfg = preset("quick", {"steps": 10**9, "sample_every": 0, "checkpoint_every": 0})
    tr = Trainer(cfg, device=device)
    return images_per_second(tr, seconds), tr.n_params


def images_per_second(tr: Trainer, seconds: float) -> float:
    """A Trainer's optimiser steps for ``seconds`` after three warm-up steps, in images/s."""
    for _ in range(3):
        tr.train_step()
    sync(tr.device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        tr.train_step()
        n += 1
    sync(tr.device)
    return n * tr.cfg.batch_size / (time.perf_counter() - t0)


def dataloader_throughput(model: torch.nn.Module, seconds: float, workers: int, device: torch.device, batch: int = 128) -> float:
    """The textbook pipeline: torchvision-style dataset of PIL images, per-image transforms,
    each batch copied to the device the Trainer ran on (so the ratio compares like with like)."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    x, _ = load_mnist("train")

    class Digits(Dataset):
        tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])

        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return self.tf(Image.fromarray(x[i], mode="L"))

    cuda = device.type == "cuda"
    loader = DataLoader(Digits(), batch_size=batch, shuffle=True, num_workers=workers, drop_last=True, pin_memory=cuda)
    model = place_model(model, device)
    diff = Diffusion.from_schedule("cosine", 1000, device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=cuda or None)
    n, t0, started = 0, 0.0, False
    for i, x0 in enumerate(loader):
        if i == 3:
            sync(device)
            t0, started = time.perf_counter(), True
        x0 = x0.to(device, non_blocking=True)
        t = torch.randint(0, 1000, (x0.shape[0],), device=device)
        eps = torch.randn_like(x0)
        loss = diff.training_losses(model(diff.q_sample(x0, t, eps), t), x0, t, eps, objective="eps", loss="l2").mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if started:
            n += 1
            if time.perf_counter() - t0 > seconds:
                break
    sync(device)
    return n * batch / (time.perf_counter() - t0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def conventional_unet(target_params: int) -> UNet:
    """A full-resolution (patch 1) U-Net, (1, 2, 2) levels, width chosen to match the params."""
    best = None
    for c in range(8, 97, 4):
        net = UNet(channels=c, channel_mult=(1, 2, 2), num_res_blocks=2, patch=1)
        gap = abs(count_parameters(net) - target_params)
        if best is None or gap < best[0]:
            best = (gap, net)
    return best[1]


def main() -> None:
    ap = argparse.ArgumentParser(description="Speed figures for the engine.")
    ap.add_argument("--seconds", type=float, default=30.0, help="how long to time each training setup")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (as ddpm run takes)")
    args = ap.parse_args()
    try:
        dev = resolve_device(args.device)
    except DDPMError as e:
        ap.error(str(e))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {dev}")

    ours, n_params = trainer_throughput(args.seconds, dev)
    print(f"1. quick preset, Trainer (on-device gathers, EMA):   {ours:7.1f} images/s   {n_params:,} params")

    torch.manual_seed(0)
    quick_net = build_model(preset("quick"))
    dl = max(dataloader_throughput(quick_net, args.seconds, w, dev) for w in (0, 2))
    print(f"2. quick network, DataLoader + per-image transforms: {dl:7.1f} images/s   (x{ours / dl:.2f} for the Trainer)")

    conv = conventional_unet(n_params)
    conv_dl = dataloader_throughput(conv, args.seconds, 0, dev)
    print(
        f"3. full-resolution U-Net of {count_parameters(conv):,} params, DataLoader: {conv_dl:7.1f} images/s   "
        f"(x{ours / conv_dl:.2f} for quick)"
    )

    cfg = preset("quick")
    net = place_model(build_model(cfg), dev).eval()
    diff = Diffusion.from_schedule(cfg.schedule, cfg.T, dev)
    generate(net, diff, cfg, 8, spec=resolve_spec(cfg, steps=5), device=dev, seed=0)  # warm-up
    t0 = time.perf_counter()
    spec = resolve_spec(cfg, steps=50)
    generate(net, diff, cfg, 64, spec=spec, device=dev, seed=0)
    print(f"4. sampling 64 digits with {spec.label} (quick):    {time.perf_counter() - t0:7.2f} s")

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tr = Trainer(preset("smoke"), device=dev, run_dir=d)
        tr.run()
        tr.sample(16)
    print(f"5. smoke preset: load, train {tr.step} steps, checkpoint, sample: {time.perf_counter() - t0:7.2f} s")


if __name__ == "__main__":
    main()
