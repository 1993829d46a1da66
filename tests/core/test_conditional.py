"""Class-conditional training with classifier-free guidance: the label embedding, label
dropout, the null label, guidance's two ends, balanced labels, class accuracy, resume."""

from __future__ import annotations

import pytest
import torch

from core.config import ConfigError, preset
from core.data import TensorDataset, load_dataset
from core.diffusion import Diffusion
from core.generate import guided
from core.models import build_model
from core.sampling_spec import SamplingError, balanced_labels, per_row, resolve_spec, sample_labels
from core.train import Trainer

COND = {"cond": "class", "steps": 8, "log_every": 4, "sample_every": 0, "checkpoint_every": 4, "sample_n": 20, "dropout": 0.0}


@pytest.fixture(scope="module")
def digits():
    full = load_dataset(preset("smoke"))
    return TensorDataset(full.data[:512].clone(), full.labels[:512].clone())


def test_label_dropout_replaces_the_asked_share_with_the_null_label(digits, monkeypatch):
    seen = []
    cfg = preset("smoke", {**COND, "batch_size": 256, "cond_drop": 0.3})
    tr = Trainer(cfg, device="cpu", dataset=digits)
    forward = tr.net.forward
    monkeypatch.setattr(tr.net, "forward", lambda x, t, y=None: seen.append(y.clone()) or forward(x, t, y))
    for _ in range(4):
        tr.train_step()
    y = torch.cat(seen)
    null = (y == cfg.num_classes).float().mean().item()
    assert 0.25 < null < 0.35, null  # 1,024 draws around 0.3
    assert set(y[y != cfg.num_classes].tolist()) <= set(range(10))


def test_the_null_label_is_the_default_and_guidance_ends_are_the_two_predictions():
    torch.manual_seed(0)
    net = build_model(preset("smoke", {"cond": "class"})).eval()
    for p in net.parameters():  # past the zero-initialised layers, so the labels reach the output
        torch.nn.init.normal_(p, std=0.05)
    x, t = torch.randn(4, 1, 28, 28), torch.tensor([10, 20, 30, 40])
    y = torch.tensor([1, 2, 3, 4])
    with torch.no_grad():
        uncond, cond = net(x, t, torch.full_like(y, 10)), net(x, t, y)
        assert torch.equal(net(x, t), uncond)  # no labels: the null label
        assert not torch.allclose(uncond, cond)
        assert torch.allclose(guided(net, y, 0.0, 10)(x, t), uncond)
        assert torch.allclose(guided(net, y, 1.0, 10)(x, t), cond)
        w3 = guided(net, y, 3.0, 10)(x, t)
        assert torch.allclose(w3, uncond + 3 * (cond - uncond), atol=1e-5)


def test_guidance_in_v_space_is_guidance_in_eps_space():
    """Why the outputs can be blended in the objective's own space: eps is affine in v given x_t."""
    diff = Diffusion.from_schedule("cosine", 100)
    x, t = torch.randn(3, 1, 4, 4), torch.tensor([5, 50, 95])
    v_c, v_u = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    w = 2.5
    eps_of = lambda v: diff.predict_x0_eps(v, x, t, "v")[1]  # noqa: E731
    assert torch.allclose(eps_of(v_u + w * (v_c - v_u)), eps_of(v_u) + w * (eps_of(v_c) - eps_of(v_u)), atol=1e-5)


def test_balanced_labels_and_one_class_a_row():
    assert balanced_labels(20, list(range(10))) == [c for c in range(10) for _ in range(2)]
    assert balanced_labels(7, [3, 5]) == [3, 3, 3, 3, 5, 5, 5]
    assert per_row(balanced_labels(20, list(range(10)))) == 2 and per_row([1, 1, 2]) is None
    cfg = preset("smoke", {"cond": "class"}).to_dict()
    assert sample_labels(cfg, 4, [7]) == [7, 7, 7, 7]
    with pytest.raises(SamplingError, match="classes are 0 to 9"):
        sample_labels(cfg, 4, [12])
    with pytest.raises(SamplingError, match="unconditional"):
        sample_labels(preset("smoke").to_dict(), 4, [1])
    with pytest.raises(SamplingError, match="guidance: this run is unconditional"):
        resolve_spec(preset("smoke"), guidance=2.0)
    assert resolve_spec(preset("quick-cond")).label == "dpmpp2m-20 eta 1 w 1.5"  # the table's choice
    assert resolve_spec(preset("quick-cond"), guidance=0).label.endswith("w 0")


def test_conditional_settings_are_checked():
    with pytest.raises(ConfigError, match="scurve dataset has no classes"):
        preset("scurve", {"cond": "class"})
    with pytest.raises(ConfigError, match="cond: 'digit' is not one of none, class"):
        preset("smoke", {"cond": "digit"})
    with pytest.raises(ConfigError, match="cond_drop"):
        preset("smoke", {"cond": "class", "cond_drop": "1.5"})


def test_a_conditional_run_resumes_exactly_and_draws_a_grid_a_class_a_row(tmp_path, digits):
    events = []
    one = Trainer(preset("smoke", COND), device="cpu", run_dir=tmp_path / "one", dataset=digits, on_event=events.append)
    one.run()
    first = Trainer(
        preset("smoke", COND), device="cpu", run_dir=tmp_path / "two", dataset=digits, should_stop=lambda: first.step >= 4
    )
    first.run()
    second = Trainer.resume(tmp_path / "two" / "step-00000004.pt", device="cpu", run_dir=tmp_path / "two", dataset=digits)
    second.run()
    assert all(torch.equal(a, b) for a, b in zip(one.net.state_dict().values(), second.net.state_dict().values()))
    grid = [e for e in events if type(e).__name__ == "Samples"][-1]
    assert grid.labels == balanced_labels(20, list(range(10))) and grid.data.shape[0] == 20 and grid.spec.guidance == 1.0


def test_class_accuracy_of_real_labelled_digits_is_near_the_judges_accuracy():
    from core.evaluate import evaluate
    from core.sources import load_mnist

    x, y = load_mnist("test")
    ev = evaluate(x[:1000, None], "mnist", floor=False, labels=[int(v) for v in y[:1000]])
    assert ev.figures["class_accuracy"] > 0.97 and ev.figures["class_accuracy_min"] > 0.9
    assert set(ev.detail["class_accuracy"]) == {str(c) for c in range(10)}
    wrong = evaluate(x[:1000, None], "mnist", floor=False, labels=[(int(v) + 1) % 10 for v in y[:1000]])
    assert wrong.figures["class_accuracy"] < 0.02  # asked for the wrong class: read as the right one


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmpp2m"])
@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
def test_guidance_works_with_every_sampler_and_objective(sampler, objective):
    from core.generate import generate

    cfg = preset("smoke", {"cond": "class", "objective": objective, "sampler": sampler, "T": 20, "sample_steps": 4})
    net = build_model(cfg).eval()
    diff = Diffusion.from_schedule(cfg.schedule, cfg.T)
    spec = resolve_spec(cfg, guidance=3.0)
    res = generate(net, diff, cfg, 6, spec=spec, device=torch.device("cpu"), labels=[0, 0, 5, 5, 9, 9])
    assert res.x.shape == (6, 1, 28, 28) and torch.isfinite(res.x).all()


def test_guidance_gives_a_self_conditioned_estimate_to_both_halves():
    calls = []

    def net(x, t, y, x_self):
        calls.append((y.clone(), x_self.clone()))
        return x + x_self + y.view(-1, 1, 1, 1).float()

    x, t, y = torch.randn(2, 1, 2, 2), torch.tensor([4, 9]), torch.tensor([1, 3])
    est = torch.randn(2, 1, 2, 2)
    out = guided(net, y, 3.0, 10)(x, t, est)
    ((ys, x_self),) = calls
    assert ys.tolist() == [1, 3, 10, 10] and torch.equal(x_self, torch.cat([est, est]))
    cond, uncond = x + est + y.view(-1, 1, 1, 1), x + est + 10
    assert torch.allclose(out, uncond + 3 * (cond - uncond))
    for w in (0.0, 1.0):  # one pass each, the estimate passed on
        calls.clear()
        guided(net, y, w, 10)(x, t, est)
        assert torch.equal(calls[0][1], est)


def test_guidance_blends_the_prediction_and_keeps_the_conditional_variance():
    """A learned-variance network's output is the prediction then v: guidance blends the first
    ``split`` channels and takes v from the conditional half, as GLIDE does."""

    def net(x, t, y):
        pred = x + y.view(-1, 1, 1, 1).float()
        return torch.cat([pred, -pred], dim=1)

    x, t, y = torch.zeros(2, 1, 2, 2), torch.tensor([4, 9]), torch.tensor([1, 3])
    out = guided(net, y, 3.0, 10, split=1)(x, t)
    cond, uncond = y.view(-1, 1, 1, 1).float().expand(2, 1, 2, 2), torch.full((2, 1, 2, 2), 10.0)
    assert torch.allclose(out[:, :1], uncond + 3 * (cond - uncond))
    assert torch.allclose(out[:, 1:], -cond)
