"""What a training process costs the machine: memory and load, read once per log window.

The trainer merges :meth:`SystemReader.read` into each ``Metrics`` event, so these figures
become metric rows like the loss (``rss_mb``, ``cpu_util``, ``gpu_mem_peak_mb``,
``gpu_util``). Every reader works on the host and never waits for the GPU: process
figures come from the kernel (psutil, ``/proc``, ``os.times``), GPU memory from the CUDA
caching allocator's own counters, utilisation from the driver through NVML. The trainer reads
after the window's one synchronisation, outside the timed steps.

A reader that fails once (NVML missing, no permission, a MIG slice NVML will not report on)
is dropped for the rest of the run, silently: a figure about the machine must never fail or
slow the run it describes. :attr:`Readers.dropped` says why, for whoever asks.

Sizes are in MB of 2**20 bytes, as ``top`` and ``nvidia-smi`` count; utilisations are
percentages (``cpu_util`` of one core, so four busy threads read 400).

Torch is imported only inside :class:`CudaReader`, so the faces may import this module for
its names.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

RSS_MB = "rss_mb"  # the worker's resident memory now
RSS_PEAK_MB = "rss_peak_mb"  # only where the current figure cannot be read: its peak so far
CPU_UTIL = "cpu_util"  # the process's CPU time over wall time since the last read, in % of one core
GPU_MEM_PEAK_MB = "gpu_mem_peak_mb"  # the most the run's tensors held on its GPU during the window
GPU_UTIL = "gpu_util"  # % of the driver's last sample period with a kernel running on the GPU
NAMES = (RSS_MB, RSS_PEAK_MB, CPU_UTIL, GPU_MEM_PEAK_MB, GPU_UTIL)

MB = float(1 << 20)


class SystemReader(Protocol):
    """Anything that can say, cheaply and on the host, what the process costs right now."""

    def read(self) -> dict[str, float]: ...


class Readers:
    """Several readers as one. A reader that raises, or answers with something that is not
    a number, is dropped at once and for good (its reason kept in :attr:`dropped`): a
    failing figure would fail again at every window, and the run matters more than it."""

    def __init__(self, readers: Iterable[SystemReader] = ()):
        self.readers = list(readers)
        self.dropped: dict[str, str] = {}

    def read(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for reader in list(self.readers):
            try:
                figures = {str(k): float(v) for k, v in reader.read().items()}
            except Exception as e:
                self.readers.remove(reader)
                self.dropped[type(reader).__name__] = " ".join(str(e).split()) or type(e).__name__
                continue
            out.update({k: v for k, v in figures.items() if math.isfinite(v)})
        return out


class CpuReader:
    """The process's resident memory and CPU utilisation.

    Resident memory from psutil when it is installed (every platform), else ``VmRSS`` in
    ``/proc/self/status`` (Linux), else the peak from ``resource`` (recorded as
    ``rss_peak_mb``, not passed off as the current figure). CPU utilisation is the change in
    the process's user + system time (``os.times``, one system call) over the wall time since
    the previous read: what psutil's ``cpu_percent`` computes, without needing psutil.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._rss = self._rss_reader()
        self._cpu, self._wall = self._cpu_seconds(), clock()

    def _rss_reader(self) -> tuple[str, Callable[[], float]]:
        try:
            import psutil

            process = psutil.Process()
            return RSS_MB, lambda: process.memory_info().rss / MB
        except ImportError:
            pass
        if os.path.exists("/proc/self/status"):
            return RSS_MB, _proc_rss_mb
        import resource

        scale = 1.0 if os.uname().sysname == "Darwin" else 1024.0  # ru_maxrss: bytes on macOS, KiB elsewhere
        return RSS_PEAK_MB, lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / MB

    @staticmethod
    def _cpu_seconds() -> float:
        t = os.times()
        return t.user + t.system

    def read(self) -> dict[str, float]:
        name, rss = self._rss
        cpu, wall = self._cpu_seconds(), self.clock()
        figures = {name: rss()}
        if wall > self._wall:
            figures[CPU_UTIL] = 100.0 * (cpu - self._cpu) / (wall - self._wall)
        self._cpu, self._wall = cpu, wall
        return figures


def _proc_rss_mb() -> float:
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024 / MB  # kB
    raise OSError("no VmRSS line in /proc/self/status")


class CudaReader:
    """The run's GPU: the peak memory its tensors held, and the GPU's utilisation.

    The peak is the caching allocator's ``max_memory_allocated``, a counter on the host (no
    synchronisation), reset after each read so every log window records its own peak: the
    rows then show when memory grows (a sample grid, an evaluation, a leak), the run's peak
    is their maximum, and a resumed process (whose counters start at zero) continues the
    same curve rather than a new running maximum.

    Utilisation comes from NVML when ``pynvml`` (the ``nvidia-ml-py`` package, ``pip install
    .[gpu]``) imports. The GPU is found by its UUID, which NVML and CUDA agree on whatever
    ``CUDA_VISIBLE_DEVICES`` and ``CUDA_DEVICE_ORDER`` say (their indices do not). NVML
    failing drops utilisation alone; the memory figure stays.
    """

    def __init__(self, device: Any):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self._nvml: Any = None  # the device's NVML handle, once found
        self._nvml_off = False
        self.nvml_error: str | None = None

    def read(self) -> dict[str, float]:
        cuda = self.torch.cuda
        peak = cuda.max_memory_allocated(self.device)
        cuda.reset_peak_memory_stats(self.device)
        figures = {GPU_MEM_PEAK_MB: peak / MB}
        if not self._nvml_off:
            try:
                figures[GPU_UTIL] = float(self._utilisation())
            except Exception as e:  # no pynvml, no driver library, no permission, not supported
                self._nvml_off = True
                self.nvml_error = " ".join(str(e).split()) or type(e).__name__
        return figures

    def _utilisation(self) -> int:
        import pynvml

        if self._nvml is None:
            pynvml.nvmlInit()
            uuid = str(self.torch.cuda.get_device_properties(self.device).uuid)
            if not uuid.startswith(("GPU-", "MIG-")):
                uuid = "GPU-" + uuid  # torch prints the bare UUID, NVML names it GPU-...
            self._nvml = pynvml.nvmlDeviceGetHandleByUUID(uuid)
        return pynvml.nvmlDeviceGetUtilizationRates(self._nvml).gpu


def reader_for(device: Any) -> Readers:
    """The readers a run on ``device`` records: the process's always, the GPU's on CUDA."""
    readers: list[SystemReader] = [CpuReader()]
    if getattr(device, "type", str(device).split(":")[0]) == "cuda":
        readers.append(CudaReader(device))
    return Readers(readers)
