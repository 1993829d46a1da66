import pytest
import torch

from core.config import preset
from core.data import TensorDataset, distance_to_s_curve, load_dataset
from core.train import (
    CheckpointSaved,
    Finished,
    Metrics,
    Samples,
    Trainer,
    TrainingError,
    ema_decay_at,
    generate,
    load_for_sampling,
    lr_factor,
    resolve_device,
)


@pytest.fixture(scope="module")
def digits():
    """The first 512 MNIST digits: enough for the loop, quick to move around."""
    full = load_dataset(preset("smoke"))
    return TensorDataset(full.data[:512].clone(), full.labels[:512].clone())


def smoke(**over):
    base = {"steps": 12, "log_every": 3, "sample_every": 0, "checkpoint_every": 0, "dropout": 0.1}
    base.update(over)
    return preset("smoke", base)


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_continues_exactly(tmp_path, digits):
    cfg = smoke()
    one = Trainer(cfg, device="cpu", run_dir=tmp_path / "one", dataset=digits)
    assert one.run() == "completed"

    first = Trainer(cfg, device="cpu", run_dir=tmp_path / "two", dataset=digits, should_stop=lambda: first.step >= 6)
    assert first.run() == "stopped"
    ckpt = tmp_path / "two" / "step-00000006.pt"
    assert ckpt.exists()
    torch.manual_seed(1234)  # whatever happened to the global RNG in between must not matter
    second = Trainer.resume(ckpt, device="cpu", run_dir=tmp_path / "two", dataset=digits)
    assert second.step == 6
    assert second.run() == "completed"

    assert states_equal(one.model.state_dict(), second.model.state_dict())
    assert states_equal(one.ema.state_dict(), second.ema.state_dict())
    opt_a, opt_b = one.opt.state_dict()["state"], second.opt.state_dict()["state"]
    assert all(states_equal(opt_a[k], opt_b[k]) for k in opt_a)


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


def test_time_budget_ends_training_with_the_schedule_decayed(digits):
    events = []
    cfg = smoke(steps=10**9, log_every=1)
    tr = Trainer(cfg, device="cpu", dataset=digits, on_event=events.append, time_budget_s=1.0)
    assert tr.run() == "budget"
    assert 1.0 <= tr.elapsed < 2.0
    lrs = [e.values["lr"] for e in events if isinstance(e, Metrics)]
    assert max(lrs) > 5 * lrs[-1], "the learning rate follows the budget's clock down"


def test_grad_accumulation_matches_the_full_batch(digits):
    a = Trainer(smoke(steps=3, dropout=0.0), device="cpu", dataset=digits)
    b = Trainer(smoke(steps=3, dropout=0.0, grad_accum=2), device="cpu", dataset=digits)
    a.run(), b.run()
    # same number of images per step, different grouping of the draws: both train, neither blows up
    assert a.step == b.step == 3
    assert all(torch.isfinite(p).all() for p in b.model.parameters())


def test_sampling_from_a_checkpoint_is_reproducible_and_uses_ema(tmp_path, digits):
    tr = Trainer(smoke(steps=6), device="cpu", run_dir=tmp_path, dataset=digits)
    tr.run()
    net, diff, cfg, step = load_for_sampling(tmp_path / "step-00000006.pt")
    assert step == 6 and cfg == tr.cfg
    x1 = generate(net, diff, cfg, 5, device=torch.device("cpu"), steps=5, seed=9).x
    x2 = generate(net, diff, cfg, 5, device=torch.device("cpu"), steps=5, seed=9).x
    direct = tr.sample(5, steps=5, seed=9).x
    assert torch.equal(x1, x2) and torch.allclose(x1, direct, atol=1e-6)


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
    with pytest.raises(TrainingError, match="--device cpu"):
        resolve_device("cuda")
    with pytest.raises(TrainingError, match="auto, cpu or cuda"):
        resolve_device("tpu")
    assert resolve_device("auto").type == "cpu"
