import math

import pytest
import torch

from core.config import preset
from core.data import TensorDataset, distance_to_s_curve, load_dataset
from core.devices import DeviceError
from core.generate import generate, load_for_sampling
from core.sampling_spec import resolve_spec
from core.train import (
    CheckpointSaved,
    Finished,
    Metrics,
    Samples,
    Trainer,
    ema_decay_at,
    lr_factor,
    resolve_device,
    self_condition_coin,
)


@pytest.fixture(scope="module")
def digits():
    """The first 512 MNIST digits: enough for the loop, quick to move around."""
    full = load_dataset(preset("smoke"))
    return TensorDataset(full.data[:512].clone(), full.labels[:512].clone())


@pytest.fixture(scope="module")
def pictures():
    """64 random 8x8 RGB images, as a folder dataset holds them (none is its own mirror)."""
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randint(0, 256, (64, 3, 8, 8), generator=g, dtype=torch.uint8))


FOLDER = {"dataset": "folder", "data_dir": "/unused", "image_size": 8, "image_channels": 3}


def smoke(**over):
    base = {"steps": 12, "log_every": 3, "sample_every": 0, "checkpoint_every": 0, "dropout": 0.1}
    base.update(over)
    return preset("smoke", base)


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def assert_resumes_exactly(cfg, dataset, tmp_path) -> list[float]:
    """12 steps in one go and 6 + resume + 6 give the same weights, EMA and optimizer state;
    returns the uninterrupted run's logged losses."""
    events = []
    one = Trainer(cfg, device="cpu", run_dir=tmp_path / "one", dataset=dataset, on_event=events.append)
    assert one.run() == "completed"

    first = Trainer(cfg, device="cpu", run_dir=tmp_path / "two", dataset=dataset, should_stop=lambda: first.step >= 6)
    assert first.run() == "stopped"
    ckpt = tmp_path / "two" / "step-00000006.pt"
    assert ckpt.exists()
    torch.manual_seed(1234)  # whatever happened to the global RNG in between must not matter
    second = Trainer.resume(ckpt, device="cpu", run_dir=tmp_path / "two", dataset=dataset)
    assert second.step == 6
    assert second.run() == "completed"

    assert states_equal(one.model.state_dict(), second.model.state_dict())
    assert states_equal(one.ema.state_dict(), second.ema.state_dict())
    opt_a, opt_b = one.opt.state_dict()["state"], second.opt.state_dict()["state"]
    assert all(states_equal(opt_a[k], opt_b[k]) for k in opt_a)
    return [e.values["loss"] for e in events if isinstance(e, Metrics)]


def test_resume_continues_exactly(tmp_path, digits):
    assert_resumes_exactly(smoke(), digits, tmp_path)


@pytest.mark.parametrize(
    "over",
    [
        {"time_embedding": "random_fourier"},
        {"time_embedding": "learned_fourier"},
        {**FOLDER, "hflip": True},
        {"self_condition": True, "objective": "v"},
        {"self_condition": True, "objective": "x0", "cond": "class", "guidance": 2.0},
        {"learned_variance": True},
        {"learned_variance": True, "objective": "v", "self_condition": True, "cond": "class", "guidance": 2.0},
    ],
    ids=lambda over: ",".join(f"{k}={v}" for k, v in over.items() if k not in FOLDER),
)
def test_engine_options_train_and_resume_exactly(tmp_path, digits, pictures, over):
    """Each option of the reference image engine, switched on in a smoke run: finite losses,
    samples of the data's shape, and an exact resume."""
    cfg = smoke(**over)
    losses = assert_resumes_exactly(cfg, pictures if cfg.dataset == "folder" else digits, tmp_path)
    assert len(losses) == 4 and all(math.isfinite(v) and v > 0 for v in losses)
    net, diffusion, cfg_back, _ = load_for_sampling(tmp_path / "one" / "step-00000012.pt", torch.device("cpu"))
    assert cfg_back == cfg
    for sampler in ("ddpm", "ddim", "dpmpp2m"):
        spec = resolve_spec(cfg, sampler, None if sampler == "ddpm" else 4)
        x = generate(net, diffusion, cfg, 2, spec=spec, device=torch.device("cpu"), seed=1).x
        assert x.shape == (2, *cfg.sample_shape) and torch.isfinite(x).all()


def seed_smoke(**over):
    """scurve-seed at the size of smoke: its layers, schedule and antithetic timesteps, in a few steps."""
    base = {"steps": 12, "log_every": 3, "sample_every": 0, "checkpoint_every": 0, "batch_size": 15, "sample_n": 8}
    return preset("scurve-seed", {**base, **over})


def test_scurve_seed_resumes_exactly_with_antithetic_timesteps(tmp_path):
    cfg = seed_smoke()  # an odd batch: seven pairs and one uniform timestep
    one = Trainer(cfg, device="cpu", run_dir=tmp_path / "one")
    assert one.run() == "completed"
    first = Trainer(cfg, device="cpu", run_dir=tmp_path / "two", should_stop=lambda: first.step >= 6)
    assert first.run() == "stopped"
    torch.manual_seed(99)
    second = Trainer.resume(tmp_path / "two" / "step-00000006.pt", device="cpu", run_dir=tmp_path / "two")
    assert second.step == 6 and second.run() == "completed"
    assert states_equal(one.model.state_dict(), second.model.state_dict())
    opt_a, opt_b = one.opt.state_dict()["state"], second.opt.state_dict()["state"]
    assert all(states_equal(opt_a[k], opt_b[k]) for k in opt_a)


def test_scurve_seed_trains_with_a_finite_loss_and_samples_points():
    seen = []
    tr = Trainer(seed_smoke(steps=6, log_every=2), device="cpu", on_event=seen.append)
    assert tr.run() == "completed"
    losses = [e.values["loss"] for e in seen if isinstance(e, Metrics)]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    grid = [e for e in seen if isinstance(e, Samples)][-1]
    assert grid.data.shape == (8, 2) and grid.sampler == "ddpm" and grid.steps == 100


def test_the_trainer_draws_antithetic_timesteps():
    tr = Trainer(seed_smoke(steps=2), device="cpu")
    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x, t, y=None):
            seen.append(t.clone())
            return self.net(x, t, y)

    tr.model = Recorder(tr.net)
    tr.run()
    assert len(seen) == 2 and seen[0].shape == (15,) and not torch.equal(seen[0], seen[1])
    for t in seen:
        assert (t[:14].view(7, 2).sum(1) == 99).all()


def test_events_tell_the_story_of_a_run(tmp_path, digits):
    events = []
    cfg = smoke(sample_every=6, checkpoint_every=4, keep_checkpoints=2)
    Trainer(cfg, device="cpu", run_dir=tmp_path, dataset=digits, on_event=events.append).run()
    metrics = [e for e in events if isinstance(e, Metrics)]
    assert [m.step for m in metrics] == [3, 6, 9, 12]
    assert all(set(m.values) >= {"loss", "lr", "grad_norm", "images_per_s", "elapsed_s"} for m in metrics)
    assert all(m.values["loss"] > 0 and m.values["images_per_s"] > 0 for m in metrics)
    samples = [e for e in events if isinstance(e, Samples)]
    assert [s.step for s in samples] == [6, 12]
    assert samples[-1].data.shape == (4, 1, 28, 28) and samples[-1].data.dtype.name == "uint8"
    ckpts = [e for e in events if isinstance(e, CheckpointSaved)]
    assert [c.step for c in ckpts] == [4, 8, 12]
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["step-00000008.pt", "step-00000012.pt"]
    assert [p.name for p in ckpts[-1].removed] == ["step-00000004.pt"]
    assert isinstance(events[-1], Finished) and events[-1].reason == "completed"


class FakeClock:
    """A clock that moves ``tick`` seconds each time it is read: the trainer reads it before
    and after each step, so a step takes one tick."""

    def __init__(self, tick: float):
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def test_time_budget_ends_training_with_the_schedule_decayed(digits):
    events = []
    cfg = smoke(steps=10**9, log_every=1, warmup=0)
    tr = Trainer(cfg, device="cpu", dataset=digits, on_event=events.append, time_budget_s=1.0, clock=FakeClock(0.125))
    assert tr.run() == "budget"
    assert tr.step == 8 and tr.elapsed == 1.0
    lrs = [e.values["lr"] for e in events if isinstance(e, Metrics)]
    assert lrs[0] == pytest.approx(cfg.lr) and lrs[-1] == pytest.approx(cfg.lr * lr_factor(7, 0.875, 0, "cosine"))
    assert lrs == sorted(lrs, reverse=True), "the learning rate follows the budget's clock down"
    assert [e.values["images_per_s"] for e in events if isinstance(e, Metrics)] == [cfg.batch_size / 0.125] * 8


def test_grad_accumulation_gives_the_full_batch_gradient(digits):
    """Two micro-batches of 8 give the mean gradient of their 16 images, which is what one
    batch of 16 gives: the per-micro-batch loss is divided by grad_accum."""
    cfg = smoke(steps=1, dropout=0.0, grad_clip=0.0, batch_size=16)
    one = Trainer(cfg, device="cpu", dataset=digits)
    two = Trainer(smoke(steps=1, dropout=0.0, grad_clip=0.0, batch_size=16, grad_accum=2), device="cpu", dataset=digits)
    # The same 16 images, timesteps and noise for both: feed accumulation its halves.
    x0 = one.data.gather(torch.arange(16))
    g = torch.Generator().manual_seed(5)
    t = torch.randint(0, cfg.T, (16,), generator=g)
    eps = torch.randn(x0.shape, generator=g)

    def grads(tr, parts):
        tr.opt.zero_grad()
        for idx in parts:
            out = tr.model(tr.diffusion.q_sample(x0[idx], t[idx], eps[idx]), t[idx])
            loss = tr.diffusion.training_losses(out, x0[idx], t[idx], eps[idx], objective=cfg.objective, loss=cfg.loss,
                                                min_snr_gamma=cfg.min_snr_gamma).mean() / tr.cfg.grad_accum  # fmt: skip
            loss.backward()
        return [p.grad.clone() for p in tr.model.parameters()]

    full = grads(one, [slice(0, 16)])
    accumulated = grads(two, [slice(0, 8), slice(8, 16)])
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(full, accumulated))
    # and the trainer's own step does exactly this division
    one.train_step(), two.train_step()
    assert all(torch.isfinite(p).all() for p in two.model.parameters())


def test_sampling_from_a_checkpoint_is_reproducible_and_uses_ema(tmp_path, digits):
    tr = Trainer(smoke(steps=6), device="cpu", run_dir=tmp_path, dataset=digits)
    tr.run()
    cpu = torch.device("cpu")
    net, diff, cfg, step = load_for_sampling(tmp_path / "step-00000006.pt", cpu)
    assert step == 6 and cfg == tr.cfg
    spec = resolve_spec(cfg, steps=5)
    x1 = generate(net, diff, cfg, 5, spec=spec, device=cpu, seed=9).x
    x2 = generate(net, diff, cfg, 5, spec=spec, device=cpu, seed=9, batch=2).x  # batches do not change a sample
    direct = tr.sample(5, spec, seed=9).x
    assert torch.allclose(x1, x2, atol=1e-5) and torch.allclose(x1, direct, atol=1e-6)
    assert x1.device.type == "cpu" and x1.dtype == torch.float32


def test_scurve_learns_the_curve_in_seconds():
    cfg = preset("scurve", {"steps": 1500, "sample_every": 0, "checkpoint_every": 0})
    tr = Trainer(cfg, device="cpu")
    tr.run()
    pts = tr.sample(1000, seed=0).x
    learned = distance_to_s_curve(pts).mean().item()
    noise = distance_to_s_curve(torch.randn(1000, 2) * 0.6).mean().item()
    assert learned < 0.06 and learned < noise / 4, (learned, noise)


def test_lr_and_ema_schedules():
    assert lr_factor(0, 0.0, 10, "constant") == pytest.approx(0.1)
    assert lr_factor(9, 0.0, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(50, 0.5, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(50, 0.5, 10, "linear") == pytest.approx(0.5)
    assert lr_factor(99, 1.0, 10, "cosine") == pytest.approx(0.01)  # a floor, never zero
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert ema_decay_at(10**6, 0.999) == 0.999


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_it_is_a_clear_error():
    with pytest.raises(DeviceError, match="--device cpu"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="auto, cpu, cuda, cuda:N or mps"):
        resolve_device("tpu")
    assert resolve_device("auto").type == "cpu"


def test_a_dataset_kept_on_the_host_trains_the_same_weights(digits):
    """The path for datasets too large for the device (staged host batches) computes exactly
    what the on-device gather does."""
    on_device = Trainer(smoke(steps=4), device="cpu", dataset=digits, data_placement="device")
    on_device.run()  # each trainer seeds the global generator (dropout) as it is built: one at a time
    on_host = Trainer(smoke(steps=4), device="cpu", dataset=digits, data_placement="host")
    on_host.run()
    assert on_host.host_batches is not None and on_device.host_batches is None
    assert states_equal(on_device.model.state_dict(), on_host.model.state_dict())


def test_ema_matches_averaged_model_and_loads_its_checkpoints():
    """The on-device EMA computes what torch's AveragedModel with the same lerp did, step
    for step, and reads the state dicts that AveragedModel wrote into older checkpoints."""
    from torch.optim.swa_utils import AveragedModel

    from core.ema import EMA

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.GroupNorm(2, 4))
    decay = [0.0]
    old = AveragedModel(model, multi_avg_fn=lambda e, p, n: torch._foreach_lerp_(e, p, 1.0 - decay[0]))
    new = EMA(model)
    for step in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        decay[0] = ema_decay_at(step, 0.9)
        old.update_parameters(model)
        new.update(model, decay[0])
    assert states_equal(old.state_dict(), new.state_dict())
    again = EMA(model)
    again.load_state_dict(old.state_dict())
    assert again.updates == 5 and states_equal(again.state_dict(), new.state_dict())


def test_hflip_mirrors_a_random_half_and_leaves_the_other_draws_alone(pictures):
    """The network sees, for each image, the image or its mirror (both happen), under the
    same timesteps and noise as a run without flips: x_t differs by sqrt(abar) (x0' - x0)."""
    seen = {}

    def record(name):
        def hook(module, args):
            seen[name] = (args[0].detach().clone(), args[1].clone())

        return hook

    cfg = smoke(**FOLDER, steps=1, batch_size=32)
    plain = Trainer(cfg, device="cpu", dataset=pictures)
    plain.net.register_forward_pre_hook(record("plain"))
    plain.train_step()
    flipped = Trainer(smoke(**FOLDER, steps=1, batch_size=32, hflip=True), device="cpu", dataset=pictures)
    flipped.net.register_forward_pre_hook(record("flipped"))
    flipped.train_step()
    (xt, t), (xt_f, t_f) = seen["plain"], seen["flipped"]
    assert torch.equal(t, t_f)
    x0 = plain.batch(0)[0]
    a = plain.diffusion.sqrt_alphas_cumprod[t].view(-1, 1, 1, 1)
    x0_f = x0 + (xt_f - xt) / a  # what the flipped run trained on
    same = (x0_f - x0).flatten(1).abs().amax(1) < 1e-3
    mirror = (x0_f - x0.flip(-1)).flatten(1).abs().amax(1) < 1e-3
    clear = a.flatten() > 0.05  # at the noisiest steps x_t says too little about x0 to tell
    assert torch.all((same ^ mirror)[clear]) and 8 < int(mirror.sum()) < 24


def test_self_condition_coin_is_half_the_batches_and_a_function_of_seed_and_step():
    coins = [self_condition_coin(0, k) for k in range(400)]
    assert 170 < sum(coins) < 230
    assert coins == [self_condition_coin(0, k) for k in range(400)]
    assert coins != [self_condition_coin(1, k) for k in range(400)]


@pytest.mark.parametrize("coin", [True, False])
def test_the_self_conditioning_pass_gets_no_gradient(digits, monkeypatch, coin):
    """On a batch that self-conditions, a first pass without gradient gives the estimate that
    the second (trained) pass sees, detached; on the others the estimate is zeros."""
    import core.train

    monkeypatch.setattr(core.train, "self_condition_coin", lambda seed, k: coin)
    cfg = smoke(self_condition=True, objective="v", steps=1)
    tr = Trainer(cfg, device="cpu", dataset=digits)
    calls = []
    tr.net.register_forward_pre_hook(lambda m, args: calls.append((torch.is_grad_enabled(), args[3])))
    tr.train_step()
    if not coin:
        ((grad, est),) = calls
        assert grad and not est.any()
        return
    (grad1, est1), (grad2, est2) = calls
    assert not grad1 and not est1.any()  # the first pass: no graph, zeros beside x_t
    assert grad2 and not est2.requires_grad and est2.grad_fn is None  # the trained pass: a constant
    assert est2.abs().max() > 0 and est2.abs().max() <= 1  # the estimate, clipped as sampling clips it
    assert all(p.grad is not None for p in tr.net.parameters())


def test_a_learned_variance_trains_on_the_hybrid_loss(digits, monkeypatch):
    """The step's loss is L_simple + vlb_weight * L_vlb, both from the one output."""
    import core.diffusion

    seen = {}
    vlb = core.diffusion.Diffusion.vlb_loss

    def spy(self, *args):
        seen["vlb"] = vlb(self, *args)
        return seen["vlb"]

    monkeypatch.setattr(core.diffusion.Diffusion, "vlb_loss", spy)
    cfg = smoke(learned_variance=True, vlb_weight=0.5, steps=1, grad_accum=1)
    tr = Trainer(cfg, device="cpu", dataset=digits)
    outs = []
    tr.net.register_forward_hook(lambda m, args, out: outs.append((args, out.detach())))
    loss, _ = tr.train_step()
    (xt, t, _y), out = outs[0]
    simple = tr.diffusion.training_losses(out[:, :1], tr.batch(0)[0], t, tr.diffusion.eps_from_x0(xt, t, tr.batch(0)[0]),
                                          objective="eps", loss="l2", min_snr_gamma=cfg.min_snr_gamma)  # fmt: skip
    assert seen["vlb"].shape == (cfg.batch_size,) and torch.isfinite(seen["vlb"]).all()
    assert loss.item() == pytest.approx((simple + 0.5 * seen["vlb"]).mean().item(), rel=1e-4)
