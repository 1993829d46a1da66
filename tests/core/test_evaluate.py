"""The judges and the quality figures: real data scores at the floor, noise and collapse do not."""

import numpy as np
import pytest
import torch

from core.config import preset
from core.evaluate import (
    EvalError,
    check_memory,
    evaluate,
    judge_info,
    load_judge,
    load_split,
    point_figures,
    predict,
    sliced_wasserstein,
)
from core.sources import FASHION_SYSTEM_DIR
from core.train import Evaluated, Trainer


@pytest.mark.parametrize("dataset", ["mnist", "fashion"])
def test_judge_reads_the_test_split_at_its_recorded_accuracy(dataset):
    if dataset == "fashion" and not (FASHION_SYSTEM_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST is not on this machine (Debian package dataset-fashion-mnist)")
    info = judge_info(dataset)
    x, y = load_split(dataset, "test")
    acc = float((predict(load_judge(dataset), x).argmax(1).numpy() == y).mean())
    assert acc == pytest.approx(info["test_accuracy"], abs=5e-4)
    assert acc >= (0.99 if dataset == "mnist" else 0.90)


@pytest.fixture(scope="module")
def test_digits():
    x, y = load_split("mnist", "test")
    idx = np.random.default_rng(1).permutation(len(x))[:1000]
    return x[idx], y[idx]


def test_real_digits_score_near_the_floor_and_noise_far_worse(test_digits):
    real = evaluate(test_digits[0], "mnist")
    assert set(real.figures) == {"fid", "kid", "kid_std", "confident", "class_entropy"}
    assert real.figures.keys() == real.floor.keys() and real.n == 1000
    assert real.figures["fid"] < 2 * real.floor["fid"] + 5
    assert abs(real.figures["kid"] - real.floor["kid"]) < 4 * (real.figures["kid_std"] + real.floor["kid_std"])
    assert real.figures["confident"] > 0.95 and real.figures["class_entropy"] > 0.99

    noise = np.random.default_rng(0).integers(0, 256, (1000, 28, 28), dtype=np.uint8)
    bad = evaluate(noise, "mnist", floor=False)
    assert bad.figures["fid"] > 20 * real.floor["fid"]
    assert bad.figures["kid"] > 20 * max(real.figures["kid_std"], 1.0)
    assert bad.figures["confident"] < 0.2, "the judge must not call noise a confident digit"


def test_a_model_that_draws_one_digit_has_low_class_entropy(test_digits):
    x, y = test_digits
    ones = x[y == 1]
    ev = evaluate(ones, "mnist", floor=False)
    assert ev.figures["class_entropy"] < 0.1 and ev.figures["confident"] > 0.9
    assert ev.class_counts[1] == max(ev.class_counts)
    two = evaluate(x[(y == 1) | (y == 7)], "mnist", floor=False)
    assert 0.2 < two.figures["class_entropy"] < 0.35  # about log(2)/log(10) = 0.30


def test_figures_are_repeatable(test_digits):
    a = evaluate(test_digits[0][:300], "mnist", floor=False, seed=4)
    b = evaluate(test_digits[0][:300], "mnist", floor=False, seed=4)
    assert a.figures == b.figures


def test_s_curve_figures():
    from core.data import make_s_curve

    on = point_figures(make_s_curve(2000, seed=5).numpy())
    off = point_figures(np.random.default_rng(0).normal(0, 0.6, (2000, 2)).astype(np.float32))
    assert on["curve_distance"] < 0.03 and on["swd"] < 0.05
    assert off["curve_distance"] > 5 * on["curve_distance"] and off["swd"] > 3 * on["swd"]
    a = torch.randn(500, 2)
    assert sliced_wasserstein(a, a) == 0.0 and sliced_wasserstein(a, a + 1.0) > 0.5


def test_bad_inputs_are_refused():
    with pytest.raises(EvalError, match="no judge"):
        evaluate(np.zeros((4, 3, 32, 32), np.uint8), "folder")
    with pytest.raises(EvalError, match=r"\(N, 1, 28, 28\)"):
        evaluate(np.zeros((4, 3, 32, 32), np.uint8), "mnist")
    with pytest.raises(EvalError, match="GiB is available; use --n"):
        check_memory(10**10, (1, 28, 28))
    check_memory(1000, (1, 28, 28))


def test_evaluation_during_training_leaves_the_weights_untouched():
    """Judging samples mid-run must not disturb training's random stream (dropout draws from
    it): a run with eval_every ends with the same weights as one without."""
    from core.data import TensorDataset, load_dataset

    full = load_dataset(preset("smoke"))
    data = TensorDataset(full.data[:256].clone(), full.labels[:256].clone())
    cfg = dict(steps=6, log_every=3, sample_every=0, checkpoint_every=0, dropout=0.1, eval_n=20, sample_steps=3)
    plain = Trainer(preset("smoke", cfg), device="cpu", dataset=data)
    plain.run()
    events = []
    judged = Trainer(preset("smoke", {**cfg, "eval_every": 3}), device="cpu", dataset=data, on_event=events.append)
    judged.run()
    evals = [e for e in events if isinstance(e, Evaluated)]
    assert [e.step for e in evals] == [3, 6] and all(e.n == 20 and e.spec.steps == 3 for e in evals)
    assert set(evals[0].figures) >= {"fid", "confident"} and evals[0].floor
    sa, sb = plain.model.state_dict(), judged.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_class_entropy_of_one_class_reads_zero_not_minus_zero():
    import math

    from core.evaluate import class_entropy

    one = class_entropy([0, 0, 7, 0, 0, 0, 0, 0, 0, 0])
    assert one == 0.0 and math.copysign(1.0, one) == 1.0  # `ddpm eval` printed -0.0000
    assert class_entropy([1] * 10) == pytest.approx(1.0)
