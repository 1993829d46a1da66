"""The worker: trains one run against one database, in this process or a detached one.

    python -m core.worker RUN_ID --db PATH [--device auto|cpu|cuda]

A worker claims its run (``running``, pid, host), keeps a heartbeat from a thread, turns the
trainer's events into store rows (metrics in small batches, samples, checkpoints), checks
for a stop request at every step, and ends the run ``completed``, ``stopped`` (checkpointed
first) or ``failed`` with the error text. It resumes from the run's newest recorded
checkpoint, so a crashed, stopped or extended run continues exactly where it was.

The foreground ``ddpm run`` calls :func:`train_run` in its own process, adding a callback
for its progress bar; ``--detach`` and the dashboard call :func:`spawn_worker`, which starts
this module in a new session so that it outlives the terminal that started it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from core.devices import DeviceError
from core.processes import child_environment, track
from core.store import BUSY_TIMEOUT_MS, HEARTBEAT_EVERY, Run, Store, StoreError

THREADS_ENV = "DDPM_THREADS"  # set by a scheduler for its CPU slots: the worker's thread count
FLUSH_EVERY_S = 2.0  # metric rows are written at most this often (and at every other event)
FLUSH_ROWS = 500


class Recorder:
    """Trainer events -> store rows. Metrics are buffered and written in one transaction
    every couple of seconds together with the run's progress and heartbeat, which keeps the
    cost of recording far below 2% of training time (bench/store_overhead.py measures it)."""

    def __init__(self, store: Store, run_id: int):
        self.store, self.run_id = store, run_id
        self.pending: list[tuple[int, str, float, float]] = []
        self.progress: dict = {}
        self.last_flush = time.monotonic()

    def __call__(self, event) -> None:
        from core.train import CheckpointSaved, Evaluated, Metrics, Samples

        if isinstance(event, Metrics):
            self.pending += [(event.step, k, v, event.time) for k, v in event.values.items()]
            self.progress = {
                "step": event.step,
                "last_loss": event.values.get("loss"),
                "images_per_s": event.values.get("images_per_s"),
                "elapsed_s": event.values.get("elapsed_s"),
            }
            if time.monotonic() - self.last_flush >= FLUSH_EVERY_S or len(self.pending) >= FLUSH_ROWS:
                self.flush()
        elif isinstance(event, Samples):
            self.flush()
            self.store.add_samples(self.run_id, event.step, event.data, event.spec, event.labels)
        elif isinstance(event, Evaluated):
            from core.sampling_spec import Protocol

            self.flush()
            self.store.add_eval(
                self.run_id, event.step, protocol=Protocol(event.spec, event.n, event.seed),
                figures=event.figures, floor=event.floor, seconds=event.seconds, detail=event.detail,
            )  # fmt: skip
        elif isinstance(event, CheckpointSaved):
            self.flush()  # every metric up to the checkpoint's step is on disk before it counts
            self.store.add_checkpoint(self.run_id, event.step, event.path, event.bytes, event.sha256, event.removed)
        else:
            self.flush()

    def flush(self) -> None:
        if self.pending or self.progress:
            self.store.record(self.run_id, self.pending, self.progress)
        self.pending, self.progress = [], {}
        self.last_flush = time.monotonic()


class CpuShare:
    """Workers on one CPU host split its cores between them.

    Each torch process defaults to one thread per core, and OpenMP threads that outnumber
    the cores wait on each other: on a 2-core machine two 2-thread workers trained 8x slower
    than two 1-thread workers (bench/cpu_share.py). So every few seconds a CPU worker counts
    the live workers on its host and takes its share. It must run on the training thread:
    the OpenMP thread count belongs to the thread that sets it.
    """

    def __init__(self, store: Store, every: float = 5.0):
        import torch

        self.torch = torch
        self.store, self.every = store, every
        self.cores = torch.get_num_threads()
        self.threads = self.cores
        self.next_check = 0.0

    def __call__(self) -> None:
        now = time.monotonic()
        if now < self.next_check:
            return
        self.next_check = now + self.every
        want = max(1, self.cores // max(1, self.store.live_workers_here()))
        if want != self.threads:
            self.torch.set_num_threads(want)
            self.threads = want


class Heartbeat(threading.Thread):
    """Refreshes the run's heartbeat from its own connection, so the run looks alive to other
    hosts' readers even while the main thread spends a minute sampling or checkpointing."""

    def __init__(self, db_path: Path, run_id: int, every: float = HEARTBEAT_EVERY):
        super().__init__(name=f"heartbeat-{run_id}", daemon=True)
        self.db_path, self.run_id, self.every = db_path, run_id, every
        self.done = threading.Event()

    def run(self) -> None:
        try:
            store = Store(self.db_path, create=False)
        except StoreError:
            return
        try:
            while not self.done.wait(self.every):
                try:
                    store.heartbeat(self.run_id)
                except Exception:  # a locked or vanished file must not kill training
                    pass
        finally:
            store.close()

    def stop(self) -> None:
        """Stop and wait: the thread's connection must be closed before the run counts as
        ended, or the last close (which folds the WAL into the database file) races with
        whoever opens the file next."""
        self.done.set()
        if self.is_alive():
            self.join(timeout=BUSY_TIMEOUT_MS / 1000 + 5)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if type(e).__module__.startswith("core") else f"{type(e).__name__}: {text}"


def _resume_point(store: Store, run: Run):
    """The newest recorded checkpoint that loads, or None to start from step 0.

    A recorded checkpoint that does not load (a damaged file, one deleted by hand) is
    forgotten, row and file together, so that no later `ddpm sample` or `ddpm eval` picks
    it. Checkpoint files that are not recorded (a kill between the write and the record) are
    never used: the metrics up to them may not have been written.
    """
    from core.checkpoint import CheckpointError, load_checkpoint

    for ck in reversed(store.checkpoints(run.id)):
        try:
            return load_checkpoint(ck.path)
        except CheckpointError as e:
            print(f"skipping checkpoint at step {ck.step}: {e}", file=sys.stderr, flush=True)
            store.forget_checkpoint(run.id, ck.step)
            Path(ck.path).unlink(missing_ok=True)
    return None


def train_run(
    db_path: Path | str,
    run_ref: int | str,
    *,
    device: str | None = None,
    on_event: Callable | None = None,
    stop: threading.Event | None = None,
    on_start: Callable | None = None,
) -> str:
    """Train one run to its end; returns its final status. ``stop`` is an extra stop signal
    (Ctrl-C in the foreground CLI); ``on_event`` sees every trainer event after the store.

    Under torchrun (several processes), rank 0 runs this and the other ranks run
    :func:`train_peer`, which never opens the database.

    Errors in the run itself end it ``failed`` (the message is in the row) and are re-raised.
    """
    from core.distributed import ProcessGroup

    group = ProcessGroup.from_env()
    stop = stop or threading.Event()
    if not group.is_main:
        return train_peer(group, device, stop)
    from core import devices
    from core.config import RunConfig
    from core.train import Trainer

    store = Store(db_path, create=False)
    run = store.get_run(run_ref)
    recorder = Recorder(store, run.id)
    heartbeat: Heartbeat | None = None
    claimed = joined = False
    try:
        request = device or run.device_request
        if not group.distributed:  # claimed first: a device this host lacks then fails the run, with why
            run = store.claim(run.id, device=request)
            claimed = True
        accelerators = devices.probe()
        dev = _rank_device(group, devices.resolve(request, accelerators))
        group.join(dev)  # several processes: before anything else can fail, so the others always hear from rank 0
        joined = group.distributed
        if not claimed:
            run = store.claim(run.id, device=request)
            claimed = True
        heartbeat = Heartbeat(store.path, run.id)
        heartbeat.start()

        def events(ev) -> None:
            recorder(ev)
            if on_event is not None:
                on_event(ev)

        share = _cpu_threads(dev, store)

        def should_stop() -> bool:  # called by the trainer before every step
            if share is not None:
                share()
            return stop.is_set() or store.stop_requested(run.id)

        cfg = RunConfig.from_dict(run.config)
        kwargs = dict(device=dev, run_dir=store.run_dir(run.id), on_event=events, should_stop=should_stop, group=group)
        state = _resume_point(store, run)
        _announce_world(state, group)
        group.broadcast({"config": cfg.to_dict(), "state": state})
        joined = False  # the others have what they need: from here a failure reaches them as a broken collective
        trainer = Trainer(cfg, **kwargs)
        if state is not None:
            trainer.load_state(state)
            del state
        store.truncate_after(run.id, trainer.step)
        clean_run_dir(store.run_dir(run.id), [ck.path for ck in store.checkpoints(run.id)])
        env = devices.environment(str(dev), accelerators, precision=trainer.precision, data=trainer.data_placement)
        env["world_size"] = group.world_size
        store.set_progress(run.id, n_params=trainer.n_params, device=env["device"], env=env, world_size=group.world_size)
        if on_start is not None:
            on_start(store.get_run(run.id), trainer)
        reason = trainer.run()
        recorder.flush()
        status = "completed" if reason == "completed" else "stopped"
        store.finish(run.id, status)
        return status
    except KeyboardInterrupt:
        if claimed:
            _safe(recorder.flush)
            last = store.checkpoints(run.id)
            where = f"step {last[-1].step}" if last else "the start"
            _safe(lambda: store.finish(run.id, "stopped", f"interrupted before a checkpoint; resumes from {where}"))
        raise
    except BaseException as e:
        message = _one_line(e)
        if joined:  # the other ranks wait for the run's config: tell them it is not coming
            _safe(lambda: group.broadcast({"error": message}))
        if claimed:
            _safe(recorder.flush)
            if group.distributed:
                message = _rank_failure(e, message, group.world_size)
            _safe(lambda: store.finish(run.id, "failed", message))
        raise
    finally:
        if heartbeat is not None:
            heartbeat.stop()
        store.close()
        group.leave()


def train_peer(group, device: str | None, stop: threading.Event) -> str:
    """A rank other than 0: join the group, take the run's config and resume state from rank
    0, train its slices. It never opens the database (which may be on another machine)."""
    from core import devices
    from core.config import RunConfig
    from core.train import Trainer

    if device is None:
        raise DeviceError("the other ranks need --device (torchrun launches them with it)")
    dev = _rank_device(group, devices.resolve(device, devices.probe()))
    group.join(dev)
    try:
        got = group.broadcast()
        if "error" in got:
            print(f"rank {group.rank}: rank 0 could not start the run: {got['error']}", file=sys.stderr, flush=True)
            return "failed"
        _cpu_threads(str(dev), None)
        trainer = Trainer(RunConfig.from_dict(got["config"]), device=dev, should_stop=stop.is_set, group=group)
        if got["state"] is not None:
            trainer.load_state(got["state"])
        reason = trainer.run()
        return "completed" if reason == "completed" else "stopped"
    finally:
        group.leave()


def _rank_failure(e: BaseException, message: str, world_size: int) -> str:
    """A failed collective means another rank died: say that, not gloo's or NCCL's text."""
    text = str(e)
    if type(e).__name__ == "DistBackendError" or any(
        w in text for w in ("Connection closed", "Connection reset", "NCCL", "gloo")
    ):
        why = " ".join(text.split("]")[-1].split())[:120]
        return f"another of the run's {world_size} processes stopped ({why}); its worker.log has each rank's output"
    return f"{message} (on one of the run's {world_size} processes; its worker.log has each rank's output)"


def _rank_device(group, resolved: str):
    """This rank's torch device: the resolved one for a single process; on several, its own
    GPU (by LOCAL_RANK) or the CPU."""
    import torch

    if not group.distributed:
        return torch.device(resolved)
    return group.device(resolved.split(":")[0])


def _cpu_threads(device, store: Store | None):
    """On the CPU, the threads this worker takes: a scheduler's slot (or torchrun's launch)
    pins them with DDPM_THREADS; a lone worker shares the cores with the others on its host
    (returns the CpuShare that the trainer calls before every step)."""
    if str(device) != "cpu":
        return None
    pinned = os.environ.get(THREADS_ENV)
    if pinned and pinned.isdigit() and int(pinned) > 0:
        import torch

        torch.set_num_threads(int(pinned))
        return None
    return CpuShare(store) if store is not None else None


def _announce_world(state: dict | None, group) -> None:
    """Say it when a run resumes at another world size (its checkpoint holds the unwrapped
    model, so it loads anywhere): batches, timesteps and noise continue unchanged, since they
    are drawn for the global batch; each process's own random stream (dropout) does not."""
    trained = int(state.get("world_size", 1)) if state else None
    if trained is not None and trained != group.world_size:
        print(
            f"resuming on {group.world_size} process{'es' if group.world_size != 1 else ''} a run that trained on {trained}: "
            "batches, timesteps and noise continue unchanged; dropout's random streams change",
            file=sys.stderr,
            flush=True,
        )


def clean_run_dir(folder: Path, recorded: list[Path | str]) -> list[Path]:
    """Make a run folder agree with its recorded checkpoints, after a kill: remove half-written
    temp files of dead processes, and every checkpoint file that is not recorded (written but
    never recorded, so the metrics that led to it may be lost; or past the step training
    resumes from; or left by a kill between forgetting an old checkpoint and deleting it).
    Returns what was removed."""
    from core.store import pid_alive

    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.glob(".*.tmp-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not pid_alive(int(pid)):
            p.unlink(missing_ok=True)
            removed.append(p)
    keep = {Path(p).resolve() for p in recorded}
    for p in folder.glob("step-*.pt"):
        if p.resolve() not in keep:
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _safe(fn: Callable) -> None:
    try:
        fn()
    except Exception:
        pass


# ---- detached workers --------------------------------------------------------------------


def worker_command(db_path: Path | str, run_id: int, device: str | None = None, nproc: int = 1) -> list[str]:
    """``python -m core.worker RUN --db PATH``, or torchrun's launcher starting ``nproc`` of
    them (``--standalone``: a rendezvous of its own on this machine)."""
    args = ["-m", "core.worker", str(run_id), "--db", str(Path(db_path).resolve())]
    if nproc > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
        return launcher + args + ["--device", device or "auto"]
    return [sys.executable, *args] + (["--device", device] if device else [])


def spawn_worker(
    db_path: Path | str, run_id: int, device: str | None = None, env: dict[str, str] | None = None, nproc: int = 1
) -> subprocess.Popen:
    """Start ``python -m core.worker`` for a queued run, detached: its own session (no
    SIGHUP when the terminal goes), output to ``worker.log`` in the run's folder. The pid is
    recorded at once so a worker that dies before claiming the run shows up as crashed.
    ``env`` adds to the environment (a scheduler pins a GPU slot's worker with
    ``CUDA_VISIBLE_DEVICES``); ``nproc`` > 1 starts torchrun's launcher with that many."""
    store = Store(db_path, create=False)
    try:
        run = store.get_run(run_id)
        folder = store.run_dir(run.id)
        folder.mkdir(parents=True, exist_ok=True)
        cmd = worker_command(db_path, run.id, device, nproc)
        env = child_environment(env)
        with open(folder / "worker.log", "ab") as log:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, env=env, cwd=str(Path(db_path).resolve().parent),
            )  # fmt: skip
        store.set_spawned(run.id, proc.pid)
    finally:
        store.close()
    return track(proc)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


def install_stop_signals(stop: threading.Event, on_signal: Callable[[int], None] | None = None) -> dict:
    """The one signal set-up of a training process, detached worker or foreground `ddpm run`.

    SIGTERM and SIGHUP (and SIGINT) ask for a clean stop: checkpoint, then ``stopped``; a
    second SIGINT interrupts at once. A write past a file size limit (ulimit -f) fails with
    an error the run reports as ``failed``, instead of SIGXFSZ killing the process and
    leaving a ``crashed`` run. Returns the previous handlers, for :func:`restore_signals`.
    """

    def handler(signum, frame):
        if signum == signal.SIGINT and stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        if on_signal is not None:
            on_signal(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    previous[signal.SIGXFSZ] = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return previous


def restore_signals(previous: dict) -> None:
    for sig, h in previous.items():
        signal.signal(sig, h)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m core.worker", description="Train one run of a ddpm-tui database.")
    ap.add_argument("run", help="run id or name")
    ap.add_argument("--db", required=True, type=Path, help="the SQLite database")
    ap.add_argument("--device", default=None, help="auto, cpu or cuda (default: what the run asked for)")
    args = ap.parse_args(argv)
    stop = threading.Event()
    install_stop_signals(stop, lambda s: print(f"signal {s}: stopping at the next step", flush=True))
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} worker pid {os.getpid()} for run {args.run} in {args.db}", flush=True)
    try:
        status = train_run(args.db, args.run, device=args.device, stop=stop)
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    except BaseException:
        traceback.print_exc()
        return 1
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} run {args.run} {status}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
