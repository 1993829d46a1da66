"""The dashboard's way to draw samples: in a short-lived child process, never in its own.

Torch in the UI process would cost about 1 GB of memory and seconds of import, and a sampling
thread holding the GIL makes the interface stutter. So the sample and explore screens run
:mod:`core.sample_job` as a child, wait for it from a Textual thread worker, and read the
``.npz`` it leaves with numpy. When the worker is cancelled (the screen is dismissed, a new
draw replaces the old one, the app quits) the child is killed and reaped at once, so no
sampler outlives its screen; the job also ends itself if the dashboard dies.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.processes import child_environment
from core.sampling_spec import SamplingSpec

POLL_S = 0.05  # how often the waiting thread looks at its worker's cancel flag


class SampleFailed(Exception):
    """The child could not draw the samples; ``str()`` is one line for the screen."""


@dataclass
class Sampled:
    """What a screen shows of a draw (:class:`core.generate.Drawn`, without torch's types)."""

    data: np.ndarray  # uint8 (N, C, H, W) images or float32 (N, 2) points
    frames: list[np.ndarray]  # the denoising of the first batch, oldest first
    timesteps: list[int]
    step: int  # the checkpoint's training step
    label: str  # the spec's, e.g. ``ddim-50 eta 0``
    device: str
    seconds: float  # the sampling itself, without starting the process and loading
    labels: list[int] | None = None  # each sample's class, in order (a conditional run)
    start: np.ndarray | None = None  # x_T, the noise the frames start from (a draw with frames)


def share_of_cores(db_path: Path | str) -> int:
    """The CPU threads a sampling process should take beside this host's training workers:
    as core.worker.CpuShare explains, OpenMP threads that outnumber the cores wait on each
    other. Counted from the store, without torch."""
    from core.store import Store

    try:
        with Store(db_path, readonly=True, create=False) as store:
            live = store.live_workers_here()
    except Exception:
        live = 0
    return max(1, (os.cpu_count() or 1) // (1 + live))


class SampleJob:
    """One draw in a child process. :meth:`run` blocks (call it from a thread worker);
    ``proc`` is the child once started. A conditional run's ``classes`` (default every class)
    and the spec's guidance (None: the run's own) go to the child as they are."""

    def __init__(
        self, checkpoint: Path | str, n: int, spec: SamplingSpec, *,
        seed: int = 0, frames: int = 0, threads: int = 1, device: str = "auto", classes: list[int] | None = None,
    ) -> None:  # fmt: skip
        self.args = [
            "--checkpoint", str(checkpoint), "--n", str(n), "--sampler", spec.sampler, "--steps", str(spec.steps),
            "--eta", repr(float(spec.eta)), "--eta-window", repr(float(spec.eta_window)), "--seed", str(seed),
            "--device", device, "--frames", str(frames), "--threads", str(threads), "--parent", str(os.getpid()),
        ]  # fmt: skip
        if spec.guidance is not None:
            self.args += ["--guidance", repr(float(spec.guidance))]
        for c in classes or []:
            self.args += ["--class", str(int(c))]
        self.proc: subprocess.Popen | None = None

    def run(self, cancelled: Callable[[], bool]) -> Sampled | None:
        """Start the child and wait for it, looking at ``cancelled`` (the worker's flag) every
        POLL_S; None when cancelled, after the child is killed and reaped. Any failure raises
        :class:`SampleFailed` with one line: the child's ``error:`` line, or a short generic
        message."""
        try:
            return self._run(cancelled)
        except SampleFailed:
            raise
        except Exception as e:  # the process could not start, or left no readable file: say so in one line
            raise SampleFailed(f"{type(e).__name__}: {' '.join(str(e).split())}") from e

    def _run(self, cancelled: Callable[[], bool]) -> Sampled | None:
        folder = Path(tempfile.mkdtemp(prefix="ddpm-sample-"))
        out = folder / "samples.npz"
        env = child_environment()
        try:
            with open(folder / "stderr", "w+b") as err:  # a file, not a pipe: a chatty child cannot block on it
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "core.sample_job", *self.args, "--out", str(out)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env, close_fds=True,
                )  # fmt: skip
                while True:
                    try:
                        rc = self.proc.wait(timeout=POLL_S)
                        break
                    except subprocess.TimeoutExpired:
                        if cancelled():
                            return None
                if rc != 0:
                    err.seek(0)
                    raise SampleFailed(failure_line(rc, err.read().decode(errors="replace")))
            return read_samples(out)
        finally:
            self.kill()
            shutil.rmtree(folder, ignore_errors=True)

    def kill(self) -> None:
        """Kill the child if it still runs, and reap it (no zombie either)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def failure_line(returncode: int, stderr: str) -> str:
    """One line for a failed child: its own ``error:`` line, else what ended it."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error: "):
            return line.removeprefix("error: ")
    if returncode < 0:
        try:
            return f"the sampling process was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"the sampling process was killed by signal {-returncode}"
    return f"the sampling process failed (exit status {returncode})" + (f": {lines[-1][:200]}" if lines else "")


def read_samples(path: Path) -> Sampled:
    """The ``.npz`` a :mod:`core.sample_job` wrote (one without ``labels``, from an older
    job, reads as an unconditional draw)."""
    with np.load(path, allow_pickle=False) as z:
        labels = [int(c) for c in z["labels"]] if "labels" in z.files else []
        start = z["start"] if "start" in z.files and z["start"].size else None
        return Sampled(
            data=z["data"], frames=list(z["frames"]), timesteps=[int(t) for t in z["timesteps"]], step=int(z["step"]),
            label=str(z["label"]), device=str(z["device"]), seconds=float(z["seconds"]), labels=labels or None,
            start=start,
        )  # fmt: skip
