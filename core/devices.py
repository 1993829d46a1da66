"""Devices: what a run asks for, what this host has, and the one place a request is resolved.

A request is ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``. :func:`resolve` turns it into
the device a run really gets (``auto`` picks CUDA, then Apple's MPS, then the CPU), or refuses
it in one line that says what this host has. Every face resolves through it: ``ddpm run``
before a run is recorded, the worker when it claims the run, the dashboard's new-run form.

What the host has is an :class:`Accelerators` record, probed with torch (:func:`probe`). The
processes that must not import torch (the dashboard, the scheduler) ask a short-lived
``python -m core.devices`` for the same record (:func:`probe_isolated`), so the answer is
always torch's own: an NVIDIA driver with a CPU-only torch build means no CUDA, and says so.

This module imports torch only inside the functions that need it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import DDPMError

if TYPE_CHECKING:
    import torch

DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d{1,3}))?$")
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
# bf16 tensor-core convolutions and matmuls start with Ampere (compute capability 8.0);
# below that cuDNN has no bf16 convolution engines, so autocast would fail or crawl.
BF16_MIN_CAPABILITY = (8, 0)


class DeviceError(DDPMError):
    """A device request this host cannot honour; the message says what it has."""


@dataclass(frozen=True)
class Accelerators:
    """What torch can use on this host (after ``CUDA_VISIBLE_DEVICES``)."""

    cuda: int = 0  # CUDA devices torch sees
    names: tuple[str, ...] = ()
    capabilities: tuple[tuple[int, int], ...] = ()
    memory: tuple[int, ...] = ()  # total bytes of each
    mps: bool = False
    torch_cuda: str | None = None  # torch.version.cuda; None for a CPU-only build
    driver: bool = False  # an NVIDIA driver is loaded on the host
    torch: str = ""
    error: str = ""  # why CUDA could not be initialised, when torch says so
    cpu_cores: int = field(default_factory=lambda: os.cpu_count() or 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Accelerators:
        d = dict(d)
        d["names"] = tuple(d.get("names", ()))
        d["capabilities"] = tuple(tuple(c) for c in d.get("capabilities", ()))
        d["memory"] = tuple(d.get("memory", ()))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    def summary(self) -> str:
        """One line about what this host offers a run."""
        if self.cuda:
            names = sorted(set(self.names))
            return f"{self.cuda} CUDA GPU{'s' if self.cuda != 1 else ''} ({', '.join(names)})"
        if self.mps:
            return "Apple MPS"
        if self.driver:
            return "CPU only: " + self.no_cuda_reason()
        return f"CPU only ({self.cpu_cores} cores)"

    def choices(self) -> list[str]:
        """The device requests this host can honour, for pickers."""
        out = ["auto", "cpu"]
        if self.cuda:
            out += ["cuda"] + [f"cuda:{i}" for i in range(self.cuda)]
        if self.mps:
            out.append("mps")
        return out

    def no_cuda_reason(self) -> str:
        """Why there is no CUDA here, in words a user can act on."""
        if self.driver and self.torch_cuda is None:
            return (
                f"an NVIDIA driver is present but this torch ({self.torch}) is a CPU-only build; "
                "install a CUDA build of torch (see pytorch.org) or use --device cpu"
            )
        if self.driver:
            detail = f" ({self.error})" if self.error else ""
            return f"an NVIDIA driver is present but CUDA cannot be used{detail}; check the driver and torch's CUDA version, or use --device cpu"
        return "this machine has no CUDA GPU; use --device cpu (or auto)"


def nvidia_driver_present() -> bool:
    path = Path("/proc/driver/nvidia/gpus")
    try:
        return path.is_dir() and any(path.iterdir())
    except OSError:
        return False


def probe() -> Accelerators:
    """Ask torch (imported here) what this process can use."""
    import torch

    cuda, error = 0, ""
    try:
        if torch.cuda.is_available():
            cuda = torch.cuda.device_count()
    except Exception as e:  # a broken driver raises instead of answering False
        error = " ".join(str(e).split())[:200]
    names, caps, mem = [], [], []
    for i in range(cuda):
        props = torch.cuda.get_device_properties(i)
        names.append(props.name)
        caps.append((props.major, props.minor))
        mem.append(int(props.total_memory))
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return Accelerators(
        cuda=cuda, names=tuple(names), capabilities=tuple(caps), memory=tuple(mem), mps=mps,
        torch_cuda=torch.version.cuda, driver=nvidia_driver_present(), torch=str(torch.__version__), error=error,
    )  # fmt: skip


_ISOLATED: Accelerators | None = None


def probe_isolated(timeout: float = 120.0) -> Accelerators:
    """:func:`probe` in a child process, for processes that keep torch out (the dashboard,
    the scheduler). The answer is cached for the life of this process."""
    global _ISOLATED
    if _ISOLATED is None:
        from core.processes import child_environment

        env = child_environment()
        try:
            out = subprocess.run(
                [sys.executable, "-m", "core.devices"], capture_output=True, text=True, timeout=timeout, env=env, check=True
            ).stdout
            _ISOLATED = Accelerators.from_dict(json.loads(out.strip().splitlines()[-1]))
        except (OSError, subprocess.SubprocessError, ValueError, IndexError) as e:
            raise DeviceError(
                f"could not ask torch which devices this machine has ({type(e).__name__}); is torch installed?"
            ) from None
    return _ISOLATED


def parse(request: str | None) -> str:
    """A request in its normal form (``auto`` for empty), or one line saying what is allowed."""
    text = (request or "auto").strip().lower()
    m = DEVICE_RE.match(text)
    if not m or (m.group(2) is not None and m.group(1) != "cuda"):
        raise DeviceError(f"device {request!r} is not one of {DEVICE_CHOICES}")
    return text


def resolve(request: str | None, acc: Accelerators) -> str:
    """The device a request gets on this host: ``cpu``, ``mps`` or ``cuda:N`` (``cuda`` is
    ``cuda:0``; ``auto`` is CUDA, then MPS, then the CPU). Refused in one line when absent."""
    text = parse(request)
    if text == "auto":
        return "cuda:0" if acc.cuda else ("mps" if acc.mps else "cpu")
    if text == "cpu":
        return "cpu"
    if text == "mps":
        if not acc.mps:
            raise DeviceError("Apple's MPS is not available on this machine; use --device cpu (or auto)")
        return "mps"
    index = int(text.split(":")[1]) if ":" in text else 0
    if not acc.cuda:
        raise DeviceError(f"--device {text}: {acc.no_cuda_reason()}")
    if index >= acc.cuda:
        have = "cuda:0" if acc.cuda == 1 else f"cuda:0 to cuda:{acc.cuda - 1}"
        raise DeviceError(f"--device {text}: this machine has {acc.cuda} CUDA GPU{'s' if acc.cuda != 1 else ''} ({have})")
    return f"cuda:{index}"


def resolve_here(request: str | None) -> str:
    """:func:`resolve` against this process's devices, probing torch only when the answer
    depends on them (``cpu`` needs no probe, and no torch)."""
    if parse(request) == "cpu":
        return "cpu"
    return resolve(request, probe())


def parse_gpus(text: str, acc: Accelerators) -> list[int]:
    """``0,1,3`` or ``all`` as GPU indices this host has, or one line saying what it has."""
    if not acc.cuda:
        reason = acc.no_cuda_reason().split(";")[0]
        raise DeviceError(f"--gpus {text}: {reason}; use --slots N for CPU slots or drop --gpus")
    if text.strip().lower() == "all":
        return list(range(acc.cuda))
    gpus = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise DeviceError(f"--gpus {text}: expected GPU indices such as 0,1,2,3 (or all)")
        gpus.append(int(part))
    if any(g >= acc.cuda for g in gpus):
        have = "GPU 0" if acc.cuda == 1 else f"GPUs 0 to {acc.cuda - 1}"
        raise DeviceError(f"--gpus {text}: this machine has {acc.cuda} CUDA GPU{'s' if acc.cuda != 1 else ''} ({have})")
    return list(dict.fromkeys(gpus))


@dataclass(frozen=True)
class Launch:
    """How one run's processes start: how many, on what, and what they may see."""

    nproc: int
    device: str  # the request every process resolves: "cuda" (its LOCAL_RANK'th visible GPU) or "cpu"
    env: dict[str, str]  # CUDA_VISIBLE_DEVICES for pinned GPUs; thread counts on the CPU


def plan_launch(request: str, acc: Accelerators, *, nproc: int | None = None, gpus: str | None = None) -> Launch:
    """The processes of one run: ``--nproc N`` (and ``--gpus LIST``, which implies N and pins
    those GPUs), checked against this host, one line per refusal."""
    if nproc is not None and nproc < 1:
        raise DeviceError(f"--nproc {nproc}: a run needs at least 1 process")
    if gpus is not None:
        ids = parse_gpus(gpus, acc)
        if nproc is not None and nproc != len(ids):
            raise DeviceError(f"--nproc {nproc} with --gpus {gpus}: one process per GPU, so --nproc {len(ids)} (or leave it out)")
        if parse(request) not in ("auto", "cuda"):
            raise DeviceError(f"--gpus {gpus} with --device {request}: --gpus trains on those GPUs; drop --device")
        if len(ids) == 1:
            return Launch(1, f"cuda:{ids[0]}", {})
        return Launch(len(ids), "cuda", {"CUDA_VISIBLE_DEVICES": ",".join(map(str, ids))})
    n = nproc or 1
    resolved = resolve(request, acc)
    if n == 1:
        return Launch(1, request, {})
    if resolved == "mps":
        raise DeviceError("--nproc: several processes need CUDA GPUs or the CPU, not MPS")
    if resolved == "cpu":
        if n > acc.cpu_cores:
            raise DeviceError(
                f"--nproc {n} is more than this machine's {acc.cpu_cores} CPU cores; use --nproc {acc.cpu_cores} or fewer"
            )
        threads = str(max(1, acc.cpu_cores // n))
        return Launch(n, "cpu", {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": threads, "DDPM_THREADS": threads})
    first = int(resolved.split(":")[1])
    if first + n > acc.cuda:
        raise DeviceError(
            f"--nproc {n}: this machine has {acc.cuda} CUDA GPU{'s' if acc.cuda != 1 else ''}; use --gpus to choose them"
        )
    return Launch(n, "cuda", {"CUDA_VISIBLE_DEVICES": ",".join(str(first + i) for i in range(n))})


def plan_here(request: str, *, nproc: int | None = None, gpus: str | None = None) -> Launch:
    """:func:`plan_launch` against this process's devices, probing torch only when the answer
    depends on them (one process on the CPU needs no probe)."""
    if (nproc or 1) == 1 and gpus is None:
        resolve_here(request)  # refused here when this host lacks it
        return Launch(1, request, {})
    return plan_launch(request, probe(), nproc=nproc, gpus=gpus)


def device_type(device: str) -> str:
    return device.split(":")[0]


def physical(device: str, environ: dict[str, str] | None = None) -> str:
    """The host's name for a device this process sees: under ``CUDA_VISIBLE_DEVICES=3,5``
    the process's ``cuda:1`` is the host's ``cuda:5``, which is what a run records."""
    if not device.startswith("cuda"):
        return device
    visible = (environ if environ is not None else os.environ).get("CUDA_VISIBLE_DEVICES")
    index = int(device.split(":")[1]) if ":" in device else 0
    if visible is None or not visible.strip():
        return f"cuda:{index}"
    ids = [v.strip() for v in visible.split(",") if v.strip()]
    if index < len(ids) and ids[index].isdigit():
        return f"cuda:{ids[index]}"
    return f"cuda:{index}"


def bf16_supported(capability: tuple[int, int]) -> bool:
    return tuple(capability) >= BF16_MIN_CAPABILITY


def cpu_has_bf16_units(flags: str | None = None) -> bool:
    """Whether the CPU computes in bf16 natively (the ``avx512_bf16`` or ``amx_bf16`` flags of
    Linux ``/proc/cpuinfo``). Elsewhere torch emulates bf16 in fp32 and autocast only slows a
    run down, so anything not known to have the units counts as without them."""
    if flags is None:
        flags = cpuinfo("flags") or ""
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def cpuinfo(key: str) -> str | None:
    """The first ``key`` of Linux ``/proc/cpuinfo`` (``model name``, ``flags``), or None where
    there is no such file or line."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith(key)), None)


def autocast_dtype(device: torch.device, amp: bool, *, cpu_bf16: bool = False) -> torch.dtype | None:
    """The autocast dtype for training on ``device``, or None for fp32.

    bf16 on CUDA devices of compute capability 8.0 or newer only. Below that (T4, RTX 20xx)
    cuDNN has no bf16 convolutions, and fp16 would need a gradient scaler: fp32 there. On the
    CPU, bf16 only where the run asks for it (``cpu_bf16``) and the CPU has bf16 units.
    """
    import torch

    if device.type == "cpu":
        return torch.bfloat16 if cpu_bf16 and cpu_has_bf16_units() else None
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if bf16_supported(torch.cuda.get_device_capability(device)) else None


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``; ``platform`` elsewhere)."""
    model = cpuinfo("model name")
    if model:
        return model
    import platform

    return platform.processor() or platform.machine()


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ddpm-tui")
    except PackageNotFoundError:
        return "unknown"


def environment(device: str, acc: Accelerators, *, precision: str, data: str, environ: dict[str, str] | None = None) -> dict:
    """What a run records about where it trains, at claim time (``ddpm show`` prints it):
    the host's name for its device, that device's model, host, versions, precision."""
    import platform
    import socket

    environ = os.environ if environ is None else environ
    env: dict[str, Any] = {
        "device": physical(device, environ),
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "cpu_cores": acc.cpu_cores,
        "python": platform.python_version(),
        "torch": acc.torch,
        "ddpm_tui": package_version(),
        "precision": precision,
        "data": data,  # where the training set lives: "device" or "host" (too large for the device)
    }
    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        env["gpu"] = acc.names[index] if index < len(acc.names) else ""
        env["gpu_memory"] = acc.memory[index] if index < len(acc.memory) else None
        env["capability"] = ".".join(map(str, acc.capabilities[index])) if index < len(acc.capabilities) else ""
        env["cuda"] = acc.torch_cuda
        if environ.get("CUDA_VISIBLE_DEVICES") is not None:
            env["cuda_visible_devices"] = environ["CUDA_VISIBLE_DEVICES"]
    return env


def main() -> None:
    """``python -m core.devices``: the probe as one line of JSON (for :func:`probe_isolated`)."""
    print(json.dumps(probe().to_dict()))


if __name__ == "__main__":
    main()
