"""The run queue's scheduler: keeps every GPU (or CPU share) of a host busy with queued runs.

    python -m core.scheduler --db PATH [--gpus 0,1,2,3] [--per-gpu K] [--slots N] [--retries N] [--drain]

A scheduler owns slots: ``--per-gpu`` slots on each listed GPU (``cuda:1/0``), or ``--slots`` CPU
slots that split the cores (``cpu/0``). It takes waiting runs in the queue's order (highest
priority first, then oldest; one write transaction each, so two schedulers never take the same
run), starts each in a detached worker pinned to its slot, and fills a slot again as soon as its
run ends. A GPU slot's worker sees only its GPU (``CUDA_VISIBLE_DEVICES``); a CPU slot's worker
gets its share of the cores (``OMP_NUM_THREADS`` and ``DDPM_THREADS``) and no GPU.

It holds no state that a restart cannot rebuild from the database: workers run in their own
sessions and outlive it; a new scheduler adopts the live ones into their slots, gives back
runs a dead scheduler took but never started, and re-queues crashed runs that still have
retries. One scheduler per database per host: a lock file beside the database, released by
the kernel when its holder dies, however it dies.

The scheduler imports no torch (its resident memory stays small); the database is its only
channel to workers and to the faces (``ddpm queue``, the dashboard's Queue screen).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import DDPMError
from core.store import FINAL, Store, hostname, pid_alive

POLL_S = 0.5  # how often slots are checked: a freed slot takes its next run within a second


class SchedulerError(DDPMError):
    """A scheduler cannot start as asked; the message says why."""


@dataclass
class Slot:
    name: str  # "cuda:1/0": GPU 1's first slot; "cpu/2": the third CPU slot
    device: str  # "cuda:1" or "cpu"
    threads: int | None = None  # a CPU slot's cores
    run: int | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)  # our child; None for an adopted worker
    pid: int | None = None

    @property
    def free(self) -> bool:
        return self.run is None

    def as_dict(self) -> dict:
        return {"slot": self.name, "device": self.device, "threads": self.threads}


def plan_slots(
    *, gpus: list[int] | None = None, per_gpu: int = 1, slots: int | None = None, cores: int | None = None
) -> list[Slot]:
    """The slots of a scheduler: ``per_gpu`` on each GPU, or ``slots`` CPU slots each with an
    equal share of the cores (at least one)."""
    if gpus:
        return [Slot(f"cuda:{g}/{k}", f"cuda:{g}") for g in gpus for k in range(per_gpu)]
    n = max(1, slots or 1)
    share = max(1, (cores or os.cpu_count() or 1) // n)
    return [Slot(f"cpu/{k}", "cpu", threads=share) for k in range(n)]


def default_slots(acc) -> list[Slot]:
    """What a scheduler fills when nobody says: one slot on every GPU torch sees, else one CPU
    slot per 2 cores (a training process keeps two cores busy). ``acc`` is a
    :class:`core.devices.Accelerators`, asked of a child process by the faces that start
    schedulers (``ddpm queue start``, ``ddpm sweep --start``, the dashboard's Queue screen)."""
    if acc.cuda:
        return plan_slots(gpus=list(range(acc.cuda)))
    return plan_slots(slots=max(1, acc.cpu_cores // 2), cores=acc.cpu_cores)


def accepts(slot: Slot, request: str) -> bool:
    """Whether a run that asked for ``request`` may train in ``slot``: ``auto`` anywhere,
    ``cuda`` on any GPU slot, ``cuda:N`` only on GPU N's slots, ``cpu`` only on CPU slots."""
    request = (request or "auto").strip().lower()
    if request == "auto":
        return True
    if request == "cuda":
        return slot.device.startswith("cuda")
    return request == slot.device


def worker_launch(db_path: Path | str, run_id: int, slot: Slot) -> tuple[list[str], dict[str, str]]:
    """The command and the environment additions for a slot's worker: a GPU slot's worker
    sees only its GPU, as its ``cuda:0`` (it records the host's name, ``cuda:N``); a CPU slot's
    worker sees no GPU and uses its share of the cores."""
    from core.worker import worker_command

    if slot.device.startswith("cuda"):
        gpu = slot.device.split(":")[1]
        return worker_command(db_path, run_id, "cuda:0"), {"CUDA_VISIBLE_DEVICES": gpu}
    threads = str(slot.threads or 1)
    env = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": threads, "DDPM_THREADS": threads}
    return worker_command(db_path, run_id, "cpu"), env


def lock_path(store: Store) -> Path:
    return store.runs_root / f"scheduler-{hostname()}.lock"


def holder(path: Path) -> int | None:
    """The pid written in a scheduler's lock file, if it is alive."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and pid_alive(int(text)) else None


class Scheduler:
    """Fills ``slots`` from the queue of the database at ``db_path`` until stopped (or, with
    ``drain``, until nothing waits and nothing runs)."""

    def __init__(
        self,
        db_path: Path | str,
        slots: list[Slot],
        *,
        retries: int = 0,
        drain: bool = False,
        poll_s: float = POLL_S,
        log: Callable[[str], None] = print,
    ):
        self.db_path = Path(db_path)
        self.slots = slots
        self.retries = retries
        self.drain = drain
        self.poll_s = poll_s
        self.log = log
        self.store = Store(self.db_path, create=False)
        self.id: int | None = None
        self.interrupted = threading.Event()
        self._lock_file = None
        self._stop_sent = False

    # ---- one per host ----------------------------------------------------------------

    def acquire(self) -> None:
        """Take this host's scheduler lock for the database, or say who holds it."""
        path = lock_path(self.store)
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a+")  # held for the scheduler's whole life
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            pid = holder(path)
            who = f" (pid {pid})" if pid else ""
            raise SchedulerError(
                f"a scheduler already runs for {self.db_path} on this host{who}; `ddpm queue` shows it, `ddpm queue stop` stops it"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._lock_file = f

    # ---- the loop --------------------------------------------------------------------

    def run(self) -> int:
        """Schedule until stopped, interrupted or drained; returns how many runs it started."""
        self.acquire()
        self.id = self.store.register_scheduler([s.as_dict() for s in self.slots], self.retries)
        started = 0
        try:
            self.adopt()
            while not self.interrupted.is_set():
                stopping = self.store.scheduler_beat(self.id)
                if stopping >= 2 and not self._stop_sent:
                    self._stop_running()
                self.reap()
                if not stopping:
                    started += self.fill()
                if self._done(stopping):
                    break
                self.interrupted.wait(self.poll_s)
        finally:
            self.store.end_scheduler(self.id)
            self.store.close()
            if self._lock_file is not None:
                self._lock_file.close()
        return started

    def _done(self, stopping: int) -> bool:
        busy = any(not s.free for s in self.slots)
        if stopping:
            return not busy
        if self.drain:
            return not busy and not any(any(accepts(s, r.device_request) for s in self.slots) for r in self.store.waiting())
        return False

    def adopt(self) -> None:
        """Rebuild the slots from the database after a restart: live workers of queue runs on
        this host keep (or take) a slot on their device; runs taken by dead schedulers and
        never started go back to the queue; crashed queue runs with retries left are re-queued."""
        live = {r["id"] for r in self.store.live_schedulers()}
        for rid in self.store.release_orphans(live):
            self.log(f"run {rid}: taken by a scheduler that is gone, back in the queue")
        for run in self.store.list_runs():
            if not run.in_queue or run.host not in (None, self.store._here):
                continue
            if run.has_worker and run.host == self.store._here:
                slot = self._slot_for(run.slot, run.device)
                if slot is not None:
                    slot.run, slot.pid, slot.proc = run.id, run.pid, None
                    self.store.adopt(run.id, self.id, slot.name)
                    self.log(f"run {run.id} ({run.name}): adopted in {slot.name} (pid {run.pid})")
            elif run.status == "crashed" and run.scheduler is not None:
                self._retry(run)

    def _slot_for(self, name: str | None, device: str | None) -> Slot | None:
        for s in self.slots:
            if s.free and s.name == name:
                return s
        for s in self.slots:
            if s.free and device and s.device == device.split("/")[0]:
                return s
        return next((s for s in self.slots if s.free), None)

    def fill(self) -> int:
        """Give every free slot the next run it accepts; returns how many it started."""
        started = 0
        for slot in self.slots:
            if not slot.free:
                continue
            run = self.store.take_next(self.id, slot.name, lambda request, slot=slot: accepts(slot, request))
            if run is None:
                continue
            if self._launch(slot, run.id):
                started += 1
                self.log(f"run {run.id} ({run.name}) -> {slot.name} (pid {slot.pid})")
        return started

    def _launch(self, slot: Slot, run_id: int) -> bool:
        from core.worker import spawn_worker

        cmd, env = worker_launch(self.db_path, run_id, slot)
        device = cmd[cmd.index("--device") + 1]
        try:
            proc = spawn_worker(self.db_path, run_id, device=device, env=env)
        except (OSError, DDPMError) as e:
            self.log(f"run {run_id}: could not start its worker ({e}); back in the queue")
            self.store.release(run_id, self.id)
            return False
        slot.run, slot.proc, slot.pid = run_id, proc, proc.pid
        return True

    def reap(self) -> None:
        """Free the slots whose runs ended; re-queue crashed runs that have retries left."""
        for slot in self.slots:
            if slot.free:
                continue
            exited = slot.proc.poll() is not None if slot.proc is not None else not pid_alive(slot.pid)
            try:
                run = self.store.get_run(slot.run)
            except DDPMError:  # deleted under us
                run = None
            if run is None:
                if exited:
                    self._free(slot)
                continue
            if run.has_worker and run.pid != slot.pid:
                # Another worker holds the run (one spawned by a scheduler that died before it
                # recorded the pid, say); it trains, so the slot stays busy with it.
                slot.pid, slot.proc = run.pid, None
                continue
            if not exited:
                continue
            if run.status == "crashed":
                self._retry(run)
            elif run.status in FINAL:
                self.log(f"run {run.id} ({run.name}) {run.status} at step {run.step:,}; {slot.name} is free")
            self._free(slot)

    def _retry(self, run) -> None:
        allowed = run.retries if run.retries is not None else self.retries
        if run.attempts < allowed and self.store.requeue_crashed(run.id):
            self.log(
                f"run {run.id} ({run.name}) crashed at step {run.step:,}; re-queued (attempt {run.attempts + 1} of {allowed})"
            )
        else:
            self.log(f"run {run.id} ({run.name}) crashed at step {run.step:,}; no retries left (`ddpm resume {run.id}`)")

    def _free(self, slot: Slot) -> None:
        slot.run, slot.proc, slot.pid = None, None, None

    def _stop_running(self) -> None:
        """``ddpm queue stop --now``: every running run checkpoints and stops."""
        self._stop_sent = True
        for slot in self.slots:
            if slot.run is not None:
                try:
                    self.store.request_stop(slot.run)
                except DDPMError:
                    pass


# ---- what the faces show ---------------------------------------------------------------------


@dataclass
class QueueState:
    """The queue as ``ddpm queue`` and the Queue screen show it."""

    schedulers: list[dict]  # live schedulers' rows (id, host, pid, slots, stopping, ...)
    slots: list[tuple[dict, object]]  # (slot dict with "scheduler", the Run in it or None)
    waiting: list  # Runs in the order they will be taken
    unattended: list  # queue runs whose worker lives on but whose scheduler is gone


def queue_state(store: Store) -> QueueState:
    schedulers = store.live_schedulers()
    live_ids = {s["id"] for s in schedulers}
    active = [r for r in store.list_runs() if r.in_queue and (r.has_worker or (r.status == "queued" and r.scheduler))]
    slots = []
    for sched in schedulers:
        for slot in sched["slots"]:
            run = next((r for r in active if r.scheduler == sched["id"] and r.slot == slot["slot"]), None)
            slots.append(({**slot, "scheduler": sched["id"], "host": sched["host"]}, run))
    unattended = [r for r in active if r.scheduler not in live_ids and r.has_worker]
    return QueueState(schedulers, slots, store.waiting(), unattended)


# ---- the process -------------------------------------------------------------------------


def command(db_path: Path | str, slots: list[Slot], retries: int, drain: bool) -> list[str]:
    """The command line of a scheduler process for these slots (``ddpm queue start --detach``)."""
    cmd = [sys.executable, "-m", "core.scheduler", "--db", str(Path(db_path).resolve()), "--retries", str(retries)]
    gpus = sorted({int(s.device.split(":")[1]) for s in slots if s.device.startswith("cuda")})
    if gpus:
        per_gpu = sum(1 for s in slots if s.device == f"cuda:{gpus[0]}")
        cmd += ["--gpus", ",".join(map(str, gpus)), "--per-gpu", str(per_gpu)]
    else:
        cmd += ["--slots", str(len(slots))]
    return cmd + (["--drain"] if drain else [])


def spawn(db_path: Path | str, slots: list[Slot], retries: int = 0, drain: bool = False) -> subprocess.Popen:
    """Start a scheduler in its own session (it outlives the terminal), logging beside the
    database's runs. A long-lived parent (the dashboard) collects it when it exits
    (:func:`core.processes.reap`)."""
    from core.processes import child_environment, track

    with Store(db_path, create=False) as store:
        log_path = store.runs_root / "scheduler.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            command(db_path, slots, retries, drain), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True, env=child_environment(), cwd=str(Path(db_path).resolve().parent),
        )  # fmt: skip
    return track(proc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m core.scheduler", description="Run the queue of a ddpm-tui database.")
    ap.add_argument("--db", required=True, type=Path)
    ap.add_argument("--gpus", default="", help="comma-separated GPU indices")
    ap.add_argument("--per-gpu", type=int, default=1)
    ap.add_argument("--slots", type=int, default=None, help="CPU slots (when no --gpus)")
    ap.add_argument("--retries", type=int, default=0)
    ap.add_argument("--drain", action="store_true")
    args = ap.parse_args(argv)
    gpus = [int(g) for g in args.gpus.split(",") if g.strip()] if args.gpus else None
    slots = plan_slots(gpus=gpus, per_gpu=args.per_gpu, slots=args.slots)

    def say(text: str) -> None:
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}", flush=True)

    try:
        scheduler = Scheduler(args.db, slots, retries=args.retries, drain=args.drain, log=say)
    except DDPMError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1

    def on_signal(signum, frame) -> None:
        scheduler.interrupted.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    say(f"scheduler pid {os.getpid()} for {args.db}: {', '.join(s.name for s in slots)}")
    try:
        n = scheduler.run()
    except DDPMError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    say(f"scheduler done: started {n} run{'s' if n != 1 else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
