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
from core.store import Store, hostname, pid_alive

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


def worker_launch(db_path: Path | str, run_id: int, slots: list[Slot]) -> tuple[list[str], dict[str, str], int]:
    """The command, the environment additions and the process count for a run in ``slots``
    (one per process). A GPU slot's worker sees only its GPU, as its ``cuda:0`` (it records
    the host's name, ``cuda:N``); a run on several GPU slots sees those GPUs and torchrun gives
    each rank one; a CPU slot's worker sees no GPU and uses its slot's share of the cores."""
    from core.worker import worker_command

    n = len(slots)
    if slots[0].device.startswith("cuda"):
        gpus = ",".join(s.device.split(":")[1] for s in slots)
        device = "cuda:0" if n == 1 else "cuda"
        return worker_command(db_path, run_id, device, n), {"CUDA_VISIBLE_DEVICES": gpus}, n
    threads = str(slots[0].threads or 1)
    env = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": threads, "DDPM_THREADS": threads}
    return worker_command(db_path, run_id, "cpu", n), env, n


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
        self._exiting: list[subprocess.Popen] = []  # workers whose runs ended, still exiting

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
        busy = any(not s.free for s in self.slots) or bool(self._exiting)
        if stopping:
            return not busy
        if self.drain:
            return not busy and all(self.choose(r.device_request, r.world_size) is None for r in self.store.waiting())
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
                taken = []
                for name in (run.slot or "").split("+") or [None]:
                    slot = self._slot_for(name, run.device)
                    if slot is not None:
                        slot.run = run.id
                        taken.append(slot)
                if taken:
                    taken[0].pid, taken[0].proc = run.pid, None
                    names = "+".join(s.name for s in taken)
                    self.store.adopt(run.id, self.id, names)
                    self.log(f"run {run.id} ({run.name}): adopted in {names} (pid {run.pid})")
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

    def choose(self, request: str, world_size: int) -> list[str] | None:
        """The slots a waiting run would take now: one per process, on distinct GPUs for a
        run of several. [] when they are busy (it waits), None when this scheduler's slots can
        never train it (it is skipped)."""
        fitting = [s for s in self.slots if accepts(s, request)]
        gpu = bool(fitting) and fitting[0].device.startswith("cuda")
        capacity = len({s.device for s in fitting}) if gpu and world_size > 1 else len(fitting)
        if capacity < world_size:
            return None
        picked: list[Slot] = []
        for s in fitting:
            if s.free and not (gpu and world_size > 1 and any(p.device == s.device for p in picked)):
                picked.append(s)
            if len(picked) == world_size:
                return [p.name for p in picked]
        return []

    def fill(self) -> int:
        """Start the waiting runs the free slots can take, in the queue's order; returns how
        many it started."""
        started = 0
        while any(s.free for s in self.slots):
            run = self.store.take_next(self.id, self.choose)
            if run is None:
                break
            slots = [next(s for s in self.slots if s.name == name) for name in run.slot.split("+")]
            if not self._launch(slots, run.id):
                break
            started += 1
            where = f"pid {slots[0].pid}" if (slots[0].pid or 0) > 0 else "placed by Ray"
            self.log(f"run {run.id} ({run.name}) -> {run.slot} ({where})")
        return started

    def _launch(self, slots: list[Slot], run_id: int) -> bool:
        from core.worker import spawn_worker

        cmd, env, nproc = worker_launch(self.db_path, run_id, slots)
        device = cmd[cmd.index("--device") + 1]
        try:
            proc = spawn_worker(self.db_path, run_id, device=device, env=env, nproc=nproc)
        except (OSError, DDPMError) as e:
            self.log(f"run {run_id}: could not start its worker ({e}); back in the queue")
            self.store.release(run_id, self.id)
            return False
        for s in slots:
            s.run, s.proc, s.pid = run_id, None, None
        slots[0].proc, slots[0].pid = proc, proc.pid  # the lead slot holds the process
        return True

    def reap(self) -> None:
        """Free the slots whose runs ended; re-queue crashed runs that have retries left."""
        for lead in [s for s in self.slots if s.run is not None and s.pid is not None]:
            exited = lead.proc.poll() is not None if lead.proc is not None else not pid_alive(lead.pid)
            try:
                run = self.store.get_run(lead.run)
            except DDPMError:  # deleted under us
                run = None
            if run is None:
                if exited:
                    self._free(lead.run)
                continue
            if run.has_worker and run.pid != lead.pid and lead.proc is None:
                # Another worker holds the run (one spawned by a scheduler that died before it
                # recorded the pid, say); it trains, so the slot stays busy with it.
                lead.pid = run.pid
                continue
            if run.status in ("completed", "stopped", "failed"):
                # Ended: the slot is free now, while the worker process finishes exiting (its
                # teardown would otherwise delay the next run by a second).
                self.log(f"run {run.id} ({run.name}) {run.status} at step {run.step:,}; {run.slot} free")
            elif exited and run.status == "crashed":
                self._retry(run)
            elif exited:  # gone before it could claim the run (it was cancelled, say)
                pass
            else:
                continue
            if lead.proc is not None:
                self._exiting.append(lead.proc)
            self._free(run.id)
        self._exiting = [p for p in self._exiting if p.poll() is None]  # reaps the finished ones

    def _retry(self, run) -> None:
        allowed = run.retries if run.retries is not None else self.retries
        if run.attempts < allowed and self.store.requeue_crashed(run.id):
            self.log(
                f"run {run.id} ({run.name}) crashed at step {run.step:,}; re-queued (attempt {run.attempts + 1} of {allowed})"
            )
        else:
            self.log(f"run {run.id} ({run.name}) crashed at step {run.step:,}; no retries left (`ddpm resume {run.id}`)")

    def _free(self, run_id: int) -> None:
        for slot in self.slots:
            if slot.run == run_id:
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
            run = next((r for r in active if r.scheduler == sched["id"] and slot["slot"] in (r.slot or "").split("+")), None)
            slots.append(({**slot, "scheduler": sched["id"], "host": sched["host"]}, run))
    unattended = [r for r in active if r.scheduler not in live_ids and r.has_worker]
    return QueueState(schedulers, slots, store.waiting(), unattended)


# ---- the process -------------------------------------------------------------------------


def command(
    db_path: Path | str, slots: list[Slot], retries: int, drain: bool, ray: str | None = None, cpus_per_run: int | None = None
) -> list[str]:
    """The command line of a scheduler process for these slots, or for a Ray cluster
    (``ddpm queue start --detach``)."""
    cmd = [sys.executable, "-m", "core.scheduler", "--db", str(Path(db_path).resolve()), "--retries", str(retries)]
    if ray is not None:
        return (
            cmd
            + ["--ray", ray]
            + (["--cpus-per-run", str(cpus_per_run)] if cpus_per_run else [])
            + (["--drain"] if drain else [])
        )
    gpus = sorted({int(s.device.split(":")[1]) for s in slots if s.device.startswith("cuda")})
    if gpus:
        per_gpu = sum(1 for s in slots if s.device == f"cuda:{gpus[0]}")
        cmd += ["--gpus", ",".join(map(str, gpus)), "--per-gpu", str(per_gpu)]
    else:
        cmd += ["--slots", str(len(slots))]
    return cmd + (["--drain"] if drain else [])


def spawn(
    db_path: Path | str,
    slots: list[Slot],
    retries: int = 0,
    drain: bool = False,
    ray: str | None = None,
    cpus_per_run: int | None = None,
) -> subprocess.Popen:
    """Start a scheduler in its own session (it outlives the terminal), logging beside the
    database's runs. A long-lived parent (the dashboard) collects it when it exits
    (:func:`core.processes.reap`)."""
    from core.processes import child_environment, track

    with Store(db_path, create=False) as store:
        log_path = store.runs_root / "scheduler.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            command(db_path, slots, retries, drain, ray, cpus_per_run), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
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
    ap.add_argument("--ray", default=None, help="auto, ADDRESS or local: work the queue off on a Ray cluster")
    ap.add_argument("--cpus-per-run", type=int, default=None, help="with --ray: CPUs each run asks for")
    args = ap.parse_args(argv)
    gpus = [int(g) for g in args.gpus.split(",") if g.strip()] if args.gpus else None
    slots = plan_slots(gpus=gpus, per_gpu=args.per_gpu, slots=args.slots)

    def say(text: str) -> None:
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}", flush=True)

    try:
        if args.ray is not None:
            from core.ray_queue import RayScheduler

            scheduler = RayScheduler(args.db, address=args.ray, cpus_per_run=args.cpus_per_run, retries=args.retries,
                                     drain=args.drain, log=say)  # fmt: skip
            slots = scheduler.slots
        else:
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
