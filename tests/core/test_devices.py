"""Device requests resolved against what a host has: every refusal is one line."""

import pytest
import torch

from core import devices
from core.devices import Accelerators, DeviceError, parse, physical, resolve

CPU = Accelerators()
TWO_T4 = Accelerators(
    cuda=2, names=("Tesla T4", "Tesla T4"), capabilities=((7, 5), (7, 5)), memory=(16 << 30,) * 2, torch_cuda="12.4", driver=True
)
CPU_TORCH_ON_GPU_HOST = Accelerators(torch_cuda=None, driver=True, torch="2.14.1+cpu")
MAC = Accelerators(mps=True)


@pytest.mark.parametrize(
    "request_,acc,want",
    [
        ("auto", CPU, "cpu"),
        (None, CPU, "cpu"),
        ("auto", TWO_T4, "cuda:0"),
        ("auto", MAC, "mps"),
        ("cuda", TWO_T4, "cuda:0"),
        ("CUDA:1", TWO_T4, "cuda:1"),
        ("cpu", TWO_T4, "cpu"),
        ("mps", MAC, "mps"),
    ],
)
def test_requests_resolve_to_the_device_the_run_gets(request_, acc, want):
    assert resolve(request_, acc) == want


@pytest.mark.parametrize(
    "request_,acc,words",
    [
        ("cuda:2", TWO_T4, "this machine has 2 CUDA GPUs (cuda:0 to cuda:1)"),
        ("cuda", CPU, "no CUDA GPU; use --device cpu"),
        ("cuda:0", CPU_TORCH_ON_GPU_HOST, "CPU-only build"),
        ("mps", CPU, "MPS is not available"),
        ("gpu", CPU, "not one of auto, cpu, cuda, cuda:N or mps"),
        ("cuda:x", CPU, "not one of"),
        ("cpu:0", CPU, "not one of"),
        ("cuda:-1", TWO_T4, "not one of"),
    ],
)
def test_impossible_requests_are_refused_in_one_line(request_, acc, words):
    with pytest.raises(DeviceError) as err:
        resolve(request_, acc)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_parse_normalises():
    assert parse(" Cuda:3 ") == "cuda:3" and parse("") == "auto"


def test_a_pinned_worker_records_the_hosts_name_for_its_gpu():
    assert physical("cuda:0", {"CUDA_VISIBLE_DEVICES": "3"}) == "cuda:3"
    assert physical("cuda:1", {"CUDA_VISIBLE_DEVICES": "3,5"}) == "cuda:5"
    assert physical("cuda:0", {}) == "cuda:0"
    assert physical("cpu", {"CUDA_VISIBLE_DEVICES": "3"}) == "cpu"


def test_probe_round_trips_through_the_isolated_child():
    """The dashboard and the scheduler ask a child process; its answer is torch's own."""
    here = devices.probe()
    there = Accelerators.from_dict(here.to_dict())
    assert there == here
    devices._ISOLATED = None
    assert devices.probe_isolated() == here


def test_bf16_only_from_ampere_on(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert devices.autocast_dtype(torch.device("cuda:0"), amp=True) is None
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert devices.autocast_dtype(torch.device("cuda:0"), amp=True) == torch.bfloat16
    assert devices.autocast_dtype(torch.device("cuda:0"), amp=False) is None
    assert devices.autocast_dtype(torch.device("cpu"), amp=True) is None


def test_cpu_bf16_only_where_asked_and_the_cpu_has_bf16_units(monkeypatch):
    assert devices.cpu_has_bf16_units("fpu sse avx2 avx512f avx512_bf16 avx512_vnni")
    assert devices.cpu_has_bf16_units("fpu amx_bf16 amx_tile")
    assert not devices.cpu_has_bf16_units("fpu sse avx2 avx512f avx512_vnni")  # AVX-512 alone emulates bf16
    assert not devices.cpu_has_bf16_units("")
    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_has_bf16_units", lambda flags=None: True)
    assert devices.autocast_dtype(cpu, amp=True, cpu_bf16=True) == torch.bfloat16
    assert devices.autocast_dtype(cpu, amp=True, cpu_bf16=False) is None  # never unasked
    monkeypatch.setattr(devices, "cpu_has_bf16_units", lambda flags=None: False)
    assert devices.autocast_dtype(cpu, amp=True, cpu_bf16=True) is None  # emulated bf16 is slower: fp32


def test_a_cpu_run_that_asks_for_bf16_trains_under_it_where_the_units_are(monkeypatch):
    from core.config import preset
    from core.train import Trainer

    monkeypatch.setattr(devices, "cpu_has_bf16_units", lambda flags=None: True)
    tr = Trainer(preset("smoke", {"cpu_bf16": True, "steps": 2}), device="cpu")
    assert tr.precision == "bf16"
    tr.run()
    assert tr.step == 2
    monkeypatch.setattr(devices, "cpu_has_bf16_units", lambda flags=None: False)
    assert Trainer(preset("smoke", {"cpu_bf16": True}), device="cpu").precision == "fp32"


def test_the_cpu_network_layout_follows_the_precision_it_trains_in(monkeypatch):
    """fp32 CPU training keeps channels-last weights (oneDNN's convolutions skip conversions);
    under CPU bf16 the network stays NCHW, where each fp32 GroupNorm between bf16 convolutions
    would otherwise convert the layout (bench/layout.py measures both)."""
    from core.config import preset
    from core.train import Trainer

    def conv_weights(tr):
        return [m.weight for m in tr.net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]

    monkeypatch.setattr(devices, "cpu_has_bf16_units", lambda flags=None: True)
    bf16 = Trainer(preset("smoke", {"cpu_bf16": True, "steps": 2}), device="cpu")
    fp32 = Trainer(preset("smoke", {"cpu_bf16": False, "steps": 2}), device="cpu")
    assert bf16.precision == "bf16" and fp32.precision == "fp32"
    assert conv_weights(bf16) and all(w.is_contiguous() for w in conv_weights(bf16))
    assert all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in conv_weights(fp32))
    # The layout changes the arithmetic's order, never the weights: both start alike.
    assert all(torch.equal(a, b) for a, b in zip(bf16.net.state_dict().values(), fp32.net.state_dict().values()))
    bf16.run()
    assert bf16.step == 2 and all(w.is_contiguous() for w in conv_weights(bf16))


def test_environment_names_the_device_as_the_host_does():
    env = devices.environment("cuda:0", TWO_T4, precision="fp32", data="device", environ={"CUDA_VISIBLE_DEVICES": "1"})
    assert env["device"] == "cuda:1" and env["gpu"] == "Tesla T4" and env["capability"] == "7.5"
    assert env["precision"] == "fp32" and env["cuda_visible_devices"] == "1" and env["cuda"] == "12.4"
    cpu = devices.environment("cpu", CPU, precision="fp32", data="device", environ={})
    assert cpu["device"] == "cpu" and "gpu" not in cpu and cpu["cpu"] and cpu["python"] and cpu["host"]


def test_a_run_on_several_processes_is_planned_against_the_host():
    from core.devices import plan_launch

    four = Accelerators(cuda=4, names=("A100",) * 4, capabilities=((8, 0),) * 4, memory=(40 << 30,) * 4, torch_cuda="12.4")
    assert plan_launch("auto", four, gpus="1,3") == devices.Launch(2, "cuda", {"CUDA_VISIBLE_DEVICES": "1,3"})
    assert plan_launch("auto", four, gpus="2") == devices.Launch(1, "cuda:2", {})  # one GPU: no launcher needed
    assert plan_launch("cuda", four, nproc=3).env == {"CUDA_VISIBLE_DEVICES": "0,1,2"}
    assert plan_launch("cuda:2", four, nproc=2).env == {"CUDA_VISIBLE_DEVICES": "2,3"}
    cpu = plan_launch("cpu", Accelerators(cpu_cores=8), nproc=4)
    assert cpu.nproc == 4 and cpu.env == {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "2", "DDPM_THREADS": "2"}
    for kw, acc, words in (
        ({"nproc": 3, "gpus": "0,1"}, four, "--nproc 3 with --gpus 0,1: one process per GPU, so --nproc 2"),
        ({"gpus": "0,4"}, four, "this machine has 4 CUDA GPUs (GPUs 0 to 3)"),
        ({"gpus": "0"}, CPU, "no CUDA GPU"),
        ({"gpus": "0"}, CPU_TORCH_ON_GPU_HOST, "CPU-only build"),
        ({"nproc": 3}, Accelerators(cpu_cores=2), "--nproc 3 is more than this machine's 2 CPU cores"),
        ({"nproc": 0}, CPU, "at least 1 process"),
        ({"nproc": 5}, four, "this machine has 4 CUDA GPUs"),
    ):
        with pytest.raises(DeviceError) as err:
            plan_launch("auto", acc, **kw)
        assert words in str(err.value) and "\n" not in str(err.value), str(err.value)
