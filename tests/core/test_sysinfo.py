"""Memory and load as metric rows (core/sysinfo.py): the process's figures checked against the
kernel's own, the GPU's where one is, failing readers dropped
while training goes on, and the rows a real worker writes to a real SQLite file."""

from __future__ import annotations

import mmap
import os
import sys

import pytest
import torch

from core import sysinfo
from core.config import preset
from core.data import TensorDataset, load_dataset
from core.store import Store
from core.sysinfo import CpuReader, CudaReader, Readers, reader_for
from core.train import Metrics, Trainer
from core.worker import train_run

psutil = pytest.importorskip("psutil")  # a dependency: the comparisons below read it directly


def statm_rss_mb() -> float:
    """The kernel's count of this process's resident pages, read apart from the reader's way."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / sysinfo.MB


def close(a: float, b: float) -> bool:
    """Two readings of a live process's memory a moment apart: within 5% or 8 MB."""
    return abs(a - b) <= max(8.0, 0.05 * max(a, b))


@pytest.fixture(scope="module")
def digits():
    full = load_dataset(preset("smoke"))
    return TensorDataset(full.data[:256].clone(), full.labels[:256].clone())


def smoke(**over):
    return preset("smoke", {"steps": 12, "log_every": 3, "sample_every": 0, "checkpoint_every": 0, **over})


# ---- the process ---------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="compares with Linux's /proc")
def test_the_cpu_reader_reads_this_processes_resident_memory_and_sees_it_grow():
    reader = CpuReader()
    before = reader.read()[sysinfo.RSS_MB]
    assert close(before, statm_rss_mb()) and close(before, psutil.Process().memory_info().rss / sysinfo.MB)
    # Fresh pages from the kernel, each written once so it is resident: a malloc'd block could
    # reuse pages this long-lived test process already holds (the suite once saw RSS not move).
    block = mmap.mmap(-1, 64 << 20)
    for offset in range(0, len(block), mmap.PAGESIZE):
        block[offset] = 1
    grown = reader.read()[sysinfo.RSS_MB]
    assert grown - before >= 56 and close(grown, statm_rss_mb())
    block.close()


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="the fallback reads Linux's /proc")
def test_without_psutil_resident_memory_comes_from_proc(monkeypatch):
    expected = psutil.Process().memory_info().rss / sysinfo.MB  # psutil reads itself from sys.modules: ask it first
    monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil now raises ImportError
    assert close(CpuReader().read()[sysinfo.RSS_MB], expected)


def test_without_psutil_or_proc_the_peak_is_recorded_under_its_own_name(monkeypatch):
    now = psutil.Process().memory_info().rss / sysinfo.MB
    monkeypatch.setitem(sys.modules, "psutil", None)
    real_exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: False if str(p).startswith("/proc") else real_exists(p))
    figures = CpuReader().read()
    assert sysinfo.RSS_MB not in figures  # a peak is not passed off as the current figure
    assert now - 8 <= figures[sysinfo.RSS_PEAK_MB] < 1 << 20


def test_cpu_utilisation_is_cpu_time_over_the_readers_clock():
    ticks = iter([100.0, 104.0])
    cpu0 = sum(os.times()[:2])
    reader = CpuReader(clock=lambda: next(ticks))
    x = 0
    while sum(os.times()[:2]) - cpu0 < 0.05:  # burn some CPU time
        x += 1
    util = reader.read()[sysinfo.CPU_UTIL]
    spent = sum(os.times()[:2]) - cpu0
    assert 0 < util <= 100 * spent / 4.0 + 1e-9  # what the process spent, over 4 s of its clock


# ---- the GPU (where there is one) ---------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="reads a real GPU's counters")
def test_the_cuda_reader_records_each_windows_own_peak_in_mb():
    device = torch.device("cuda", torch.cuda.current_device())
    reader = CudaReader(device)
    reader.read()  # whatever came before
    block = torch.empty(256 << 20, dtype=torch.uint8, device=device)  # 256 MB held
    first = reader.read()
    del block
    torch.cuda.empty_cache()
    second = reader.read()
    assert first[sysinfo.GPU_MEM_PEAK_MB] >= 256 and second[sysinfo.GPU_MEM_PEAK_MB] < first[sysinfo.GPU_MEM_PEAK_MB] - 200
    try:
        import pynvml  # noqa: F401
    except ImportError:
        assert sysinfo.GPU_UTIL not in first and "pynvml" in (reader.nvml_error or "")
    else:
        assert reader.nvml_error is not None or 0 <= first[sysinfo.GPU_UTIL] <= 100


def test_the_readers_for_a_device():
    assert [type(r) for r in reader_for(torch.device("cpu")).readers] == [CpuReader]
    assert [type(r) for r in reader_for(torch.device("cuda:2")).readers] == [CpuReader, CudaReader]
    assert reader_for(torch.device("cuda:2")).readers[1].device == torch.device("cuda:2")


# ---- failing readers, in training --------------------------------------------------------------


class Flaky:
    """Answers once, then fails as a lost permission would."""

    def __init__(self):
        self.calls = 0

    def read(self) -> dict[str, float]:
        self.calls += 1
        if self.calls > 1:
            raise PermissionError("no permission to read the counters")
        return {"flaky": 1.0}


def test_a_reader_that_raises_drops_out_and_the_others_go_on():
    flaky = Flaky()
    readers = Readers([flaky, CpuReader()])
    assert set(readers.read()) >= {"flaky", sysinfo.RSS_MB}
    assert sysinfo.RSS_MB in readers.read() and "flaky" not in readers.read()
    assert flaky.calls == 2 and readers.dropped == {"Flaky": "no permission to read the counters"}


def test_a_reader_answering_nonsense_drops_out_and_nonfinite_figures_are_left_out():
    class Words:
        def read(self):
            return {"x": "many"}

    class Nan:
        def read(self):
            return {"nan": float("nan"), "ok": 2}

    readers = Readers([Words(), Nan()])
    assert readers.read() == {"ok": 2.0} and list(readers.dropped) == ["Words"]


def test_training_goes_on_past_a_failing_reader(digits):
    flaky, events = Flaky(), []
    tr = Trainer(smoke(), device="cpu", dataset=digits, on_event=events.append, system=flaky)
    assert tr.run() == "completed"
    metrics = [e for e in events if isinstance(e, Metrics)]
    assert [m.step for m in metrics] == [3, 6, 9, 12] and flaky.calls == 2
    assert "flaky" in metrics[0].values and all("flaky" not in m.values for m in metrics[1:])
    assert all(isinstance(v, float) for m in metrics for v in m.values.values())


def test_a_trainer_records_its_processes_memory_and_load_by_default(digits):
    events = []
    Trainer(smoke(), device="cpu", dataset=digits, on_event=events.append).run()
    metrics = [e for e in events if isinstance(e, Metrics)]
    assert all({sysinfo.RSS_MB, sysinfo.CPU_UTIL} <= set(m.values) for m in metrics)
    assert not any(sysinfo.GPU_MEM_PEAK_MB in m.values for m in metrics)  # a CPU run has no GPU figures


def test_a_workers_metric_rows_carry_its_resident_memory_at_every_log_step(tmp_path):
    db = tmp_path / "e.db"
    with Store(db) as store:
        rid = store.create_run(smoke().to_dict(), preset="smoke", device="cpu").id
    assert train_run(db, rid) == "completed"
    total_mb = psutil.virtual_memory().total / sysinfo.MB
    with Store(db) as store:
        loss_steps, _ = store.series(rid, "loss")
        steps, rss = store.series(rid, sysinfo.RSS_MB)
        assert steps == loss_steps == [3, 6, 9, 12]
        assert all(50 < v < total_mb for v in rss)  # a process that imported torch, on this machine
        assert store.series(rid, sysinfo.CPU_UTIL)[0] == steps
        latest = store.latest_values(rid, sysinfo.NAMES)
        assert set(latest) == {sysinfo.RSS_MB, sysinfo.CPU_UTIL} and latest[sysinfo.RSS_MB] == rss[-1]
