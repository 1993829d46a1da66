"""The CUDA path, proven without a GPU (as PyTorch's own tests do on CPU hosts).

- The meta device as a tripwire: model, diffusion and samplers run on tensors that hold no
  data, so a tensor made without the right ``device=`` fails (and NoHostSync flags the mixes
  meta lets through).
- FakeTensorMode's fake CUDA tensors under NoHostSync: the optimizer and EMA update never
  waits for the device.
- Faked CUDA decisions: torch.cuda answers as a 2-GPU host of capability 7.5 would.
- Checkpoints crossing between fused (GPU) and unfused (CPU) optimizers.
- CPU bf16 autocast standing in for the GPU's mixed precision.
"""

from __future__ import annotations

import types
import warnings

import pytest
import torch
import torch.cuda.random as cuda_random
from torch._subclasses.fake_tensor import FakeTensorMode

from core import devices
from core import train as train_module
from core.config import preset
from core.data import TensorDataset, load_dataset
from core.devices import DeviceError
from core.diffusion import Diffusion, sample_noise
from core.ema import EMA
from core.models import build_model, place_model
from core.samplers import sample
from core.train import Trainer, apply_update, optimizer_state_for, resolve_device
from tests.core.host_sync import HostSyncError, NoHostSync

META = torch.device("meta")


@pytest.fixture(scope="module")
def digits():
    full = load_dataset(preset("smoke"))
    return TensorDataset(full.data[:256].clone(), full.labels[:256].clone())


# ---- the meta device as a tripwire -------------------------------------------------------


@pytest.mark.parametrize("name,over", [("smoke", {"attn_resolutions": "7", "offset_noise": 0.1}), ("scurve", {})])
def test_model_diffusion_and_samplers_run_on_the_meta_device(name, over):
    cfg = preset(name, over)
    net = place_model(build_model(cfg), META)
    diff = Diffusion.from_schedule(cfg.schedule, cfg.T, META)
    shape = (4, *cfg.sample_shape)
    with NoHostSync():
        x0 = torch.randn(shape, device=META)
        t = torch.randint(0, cfg.T, (4,), device=META)
        eps = sample_noise(shape, generator=None, device=META, offset_noise=cfg.offset_noise)
        xt = diff.q_sample(x0, t, eps)
        for objective in ("eps", "x0", "v"):
            out = net(xt, t)
            losses = diff.training_losses(out, x0, t, eps, objective=objective, loss="huber", min_snr_gamma=5.0)
            losses.mean().backward()
            assert losses.device == META
        for sampler, steps, eta in (("ddim", 3, 1.8), ("ddim", 2, 0.0), ("ddpm", None, 1.0)):
            res = sample(net, diff, shape, sampler=sampler, steps=steps, eta=eta, objective="v", device=META,
                         noise=lambda: torch.randn(shape, device=META))  # fmt: skip
            assert res.x.device == META and res.x.shape == shape


def test_the_tripwire_catches_host_tensors_in_device_math():
    """It can fail: a CPU tensor of rank 1 or more in device math, a read of a device value."""
    x = torch.randn(4, 2, device=META)
    with pytest.raises(HostSyncError, match="mixes"), NoHostSync():
        x.gather(0, torch.zeros(4, 2, dtype=torch.long))  # meta alone lets this through
    with pytest.raises(HostSyncError, match="blocking copy"), NoHostSync():
        torch.ones(3).to(META)


# ---- no host synchronisation in an update ---------------------------------------------------


def _on_fake_cuda(real: torch.nn.Module) -> torch.nn.Module:
    """A module built outside the fake mode (built inside, .to() cannot swap its
    parameters), moved to fake CUDA inside it, with gradients."""
    model = real.to("cuda")
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    return model


@pytest.mark.parametrize("fused", [True, None])
def test_an_optimizer_and_ema_update_never_waits_for_the_gpu(fused):
    """Clipping, the optimizer step and the EMA, twice, on fake CUDA tensors: no .item(), no
    blocking copy. (AveragedModel, used before, copied its count to the device each time.)"""
    real = build_model(preset("smoke"))
    with warnings.catch_warnings(), FakeTensorMode(allow_non_fake_inputs=True):
        warnings.simplefilter("ignore")  # deepcopy of fake tensors warns about data_ptr
        model = _on_fake_cuda(real)
        ema = EMA(model)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused)
        with NoHostSync():
            for _ in range(2):
                gnorm = apply_update(model, opt, ema, lr=1e-3, grad_clip=1.0, ema_decay=0.9)
        assert gnorm.device.type == "cuda" and ema.updates == 2
        assert all(p.device.type == "cuda" for p in ema.module.parameters())


def test_the_update_tripwire_catches_averaged_models_copy():
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    real = build_model(preset("smoke"))
    with warnings.catch_warnings(), FakeTensorMode(allow_non_fake_inputs=True):
        warnings.simplefilter("ignore")
        model = _on_fake_cuda(real)
        averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9))
        averaged.update_parameters(model)
        with pytest.raises(HostSyncError, match="blocking copy cpu -> cuda"), NoHostSync():
            averaged.update_parameters(model)


# ---- decisions under a faked CUDA -------------------------------------------------------------


class CudaTouched(AssertionError):
    pass


@pytest.fixture
def two_t4(monkeypatch):
    """torch.cuda answers as a host with two Tesla T4s (capability 7.5) would, and any use of
    CUDA's random generators fails the test."""
    props = types.SimpleNamespace(name="Tesla T4", major=7, minor=5, total_memory=15 << 30)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: props)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (14 << 30, 15 << 30))
    # Every optimizer step asks the accelerator whether a CUDA graph is being captured (torch's
    # own check, which needs a driver): answer for it.
    monkeypatch.setattr(torch.accelerator, "current_accelerator", lambda check_available=False: None)
    monkeypatch.setattr(torch.cuda, "_queued_calls", [])
    monkeypatch.setattr(torch.cuda, "_lazy_seed_tracker", torch._utils._LazySeedTracker())
    touched: list[str] = []

    def forbid(name):
        def boom(*a, **k):
            touched.append(name)
            raise CudaTouched(f"torch.cuda.{name} was called")

        return boom

    for name in ("manual_seed", "manual_seed_all", "seed", "seed_all", "get_rng_state", "get_rng_state_all",
                 "set_rng_state", "set_rng_state_all", "initial_seed"):  # fmt: skip
        monkeypatch.setattr(torch.cuda, name, forbid(name))
        monkeypatch.setattr(cuda_random, name, forbid(name))
    yield touched
    assert not torch.cuda.is_initialized()


def test_a_device_beyond_the_gpu_count_is_refused_in_one_line(two_t4):
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(DeviceError) as err:
        resolve_device("cuda:2")
    assert str(err.value) == "--device cuda:2: this machine has 2 CUDA GPUs (cuda:0 to cuda:1)"
    with pytest.raises(DeviceError, match="not one of"):
        resolve_device("cuda:two")


def test_bf16_is_not_chosen_below_ampere(two_t4):
    assert devices.autocast_dtype(torch.device("cuda:0"), amp=True) is None
    assert devices.probe().capabilities == ((7, 5), (7, 5))


def test_a_cpu_run_on_a_gpu_host_never_touches_cudas_generators(two_t4, tmp_path, digits):
    """Training, checkpointing, resuming, sampling and judging a CPU run: the CUDA RNG
    state is neither seeded, saved nor restored (saving it initialised CUDA on a GPU host),
    and evaluation seeds only the CPU generator it uses."""
    cfg = preset("smoke", {"steps": 4, "log_every": 2, "sample_every": 2, "checkpoint_every": 2, "eval_every": 4, "eval_n": 20})
    tr = Trainer(cfg, device="cpu", run_dir=tmp_path, dataset=digits)
    assert tr.run() == "completed"
    again = Trainer.resume(tmp_path / "step-00000002.pt", device="cpu", run_dir=tmp_path / "again", dataset=digits)
    again.run()
    again.sample(2)
    assert "cuda" not in tr.state_dict()["rng"]
    assert two_t4 == []


# ---- checkpoints across fused and unfused optimizers --------------------------------------------


def _trained(tmp_path, digits, fused, monkeypatch):
    monkeypatch.setattr(train_module.Trainer, "_fused_for", staticmethod(lambda device: fused))
    tr = Trainer(
        preset("smoke", {"steps": 3, "sample_every": 0, "checkpoint_every": 0}), device="cpu", run_dir=tmp_path, dataset=digits
    )
    tr.run()
    return tr


@pytest.mark.parametrize("saved_fused,resumed_fused", [(True, None), (None, True)])
def test_a_checkpoint_resumes_with_the_resuming_devices_optimizer(saved_fused, resumed_fused, tmp_path, digits, monkeypatch):
    """A GPU run (fused AdamW) resumed on the CPU runs unfused, and a CPU run resumed on a
    GPU runs fused: the saved flag no longer wins. The step counters sit where the resuming
    optimizer wants them, and the EMA weights are the saved ones."""
    saved = _trained(tmp_path / "a", digits, saved_fused, monkeypatch)
    assert saved.opt.param_groups[0]["fused"] is saved_fused
    monkeypatch.setattr(train_module.Trainer, "_fused_for", staticmethod(lambda device: resumed_fused))
    resumed = Trainer.resume(tmp_path / "a" / "step-00000003.pt", steps=5, device="cpu", run_dir=tmp_path / "b", dataset=digits)
    group = resumed.opt.param_groups[0]
    assert group["fused"] is resumed_fused and group["foreach"] is None
    for p in resumed.model.parameters():
        step = resumed.opt.state[p]["step"]
        assert step.dtype == torch.float32 and step.device == p.device and float(step) == 3.0
    for (k, a), (_, b) in zip(saved.ema.state_dict().items(), resumed.ema.state_dict().items()):
        assert torch.equal(a, b), k
    assert resumed.run() == "completed" and float(resumed.opt.state[next(resumed.model.parameters())]["step"]) == 5.0


@pytest.mark.parametrize(
    "saved_device,saved_kw,device,kw,want",
    [("cpu", {}, "cuda", {"fused": True}, (True, "cuda")), ("cuda", {"fused": True}, "cuda", {}, (None, "cpu")),
     ("cuda", {"fused": True}, "cpu", {}, (None, "cpu"))],
)  # fmt: skip
def test_step_counters_land_where_the_resuming_optimizer_wants_them(saved_device, saved_kw, device, kw, want):
    """On fake CUDA tensors: a fused optimizer's counters on the GPU, an unfused one's on the
    host (a counter on the GPU would cost a host sync per parameter per step)."""
    with FakeTensorMode(allow_non_fake_inputs=True):
        first = torch.nn.Linear(3, 2, device=saved_device)
        opt = torch.optim.AdamW(first.parameters(), **saved_kw)
        for p in first.parameters():
            p.grad = torch.ones_like(p)
        opt.step()
        sd = opt.state_dict()
        saved = {"state": {k: {n: (torch.tensor(1.0) if n == "step" else v.to("cpu")) for n, v in st.items()} for k, st in sd["state"].items()},
                 "param_groups": [dict(g) for g in sd["param_groups"]]}  # fmt: skip
        second = torch.nn.Linear(3, 2, device=device)
        opt2 = torch.optim.AdamW(second.parameters(), **kw)
        opt2.load_state_dict(optimizer_state_for(opt2, saved))
        for p in second.parameters():
            p.grad = torch.ones_like(p)
        with NoHostSync(check_mix=False):
            opt2.step()
        step = opt2.state[second.weight]["step"]
        assert (opt2.param_groups[0]["fused"], step.device.type) == want and step.dtype == torch.float32


# ---- bf16 autocast, standing in on the CPU ------------------------------------------------------


@pytest.mark.parametrize("name", ["smoke", "scurve"])
def test_training_under_bf16_autocast_gives_finite_losses_and_fp32_samples(name, monkeypatch, digits):
    monkeypatch.setattr(devices, "autocast_dtype", lambda device, amp, **_: torch.bfloat16 if amp else None)
    cfg = preset(name, {"steps": 6, "log_every": 3, "sample_every": 0, "checkpoint_every": 0, "sample_steps": 5})
    losses = []
    tr = Trainer(cfg, device="cpu", dataset=digits if name == "smoke" else None,
                 on_event=lambda e: losses.append(e.values["loss"]) if hasattr(e, "values") else None)  # fmt: skip
    assert tr.precision == "bf16"
    tr.run()
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    x = tr.sample(4).x
    assert x.dtype == torch.float32 and torch.isfinite(x).all()
