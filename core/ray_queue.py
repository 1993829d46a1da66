"""Studies across machines: the run queue worked off on a Ray cluster.

    ddpm queue start --ray auto | ADDRESS | local [--cpus-per-run K] [--retries N] [--drain]

Ray (an optional extra: ``pip install 'ddpm-tui[ray]'``) already runs on bare machines, Slurm
and Kubernetes; this module only asks it for room. Each waiting run becomes a *run actor*
asking for its resources (one GPU on a cluster that has GPUs, else ``--cpus-per-run`` CPUs),
and Ray places it on whichever node has room. The database stays a local file on the head:

- A *recorder* actor, pinned to the head node, is the only writer besides the scheduler. A run
  actor claims its run through it (getting the config and the resume state, read from the
  head's checkpoint files), sends it every trainer event (metric windows, sample grids,
  evaluations, and each checkpoint's bytes, which it writes into the runs folder beside the
  database and checks against their sha256), its heartbeat, and its end. The recorder turns
  them into rows exactly as a local worker's :class:`core.worker.Recorder` does, so ``ddpm
  resume``, ``sample`` and ``eval`` work on every run, whichever node trained it.
- Actors are detached and named after the database and the run: a run can never have two live
  copies (Ray refuses a second actor of one name), and runs go on training when the scheduler
  dies; a restarted scheduler finds them by name and adopts them, or, when their actor is gone,
  marks them crashed and re-queues those with retries left.
- A run actor or a node that dies is reported by Ray (the actor's call raises): the run reads
  ``crashed`` at once; its heartbeat, relayed by the recorder, is the backstop.

Nothing else imports Ray: ``ddpm ls``, ``ddpm queue`` and the dashboard read the database.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

from core.errors import DDPMError
from core.scheduler import Scheduler, SchedulerError, Slot
from core.store import Store

NAMESPACE = "ddpm-tui"
HEARTBEAT_S = 5.0
STOP_POLL_S = 1.0  # a run actor asks the recorder for a stop request at most this often


def require_ray():
    """Ray, or one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise SchedulerError("--ray needs Ray: pip install 'ddpm-tui[ray]' (or pip install ray)") from None
    return ray


def connect(address: str) -> None:
    """Join (or, for ``local``, start) a Ray cluster: ``auto`` finds a running one (``ray start
    --head`` on this machine, or RAY_ADDRESS), ADDRESS names one, ``local`` starts a private one."""
    ray = require_ray()
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"namespace": NAMESPACE, "log_to_driver": False, "configure_logging": False}
    try:
        if address == "local":
            ray.init(include_dashboard=False, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = "a running cluster" if address == "auto" else address
        raise SchedulerError(
            f"no Ray cluster found at {where} ({' '.join(str(e).split())[:120]}); start one with `ray start --head` "
            "(and `ray start --address HEAD:6379` on the other machines), or use --ray local"
        ) from None


def db_key(db_path: Path | str) -> str:
    """A short stable name for a database, for the actors' names."""
    return f"{zlib.crc32(str(Path(db_path).resolve()).encode()):08x}"


def run_actor_name(db_path: Path | str, run_id: int) -> str:
    return f"run-{db_key(db_path)}-{run_id}"


# ---- the actors ----------------------------------------------------------------------------


class HeadRecorder:
    """Records remote runs' events in the database on the head (see the module docstring)."""

    def __init__(self, db_path: str):
        from core.worker import Recorder

        self.store = Store(db_path, create=False)
        self.recorders: dict[int, Recorder] = {}
        self.lock = threading.Lock()  # the actor takes several calls at once (a heartbeat beside an event)

    def _recorder(self, run_id: int):
        from core.worker import Recorder

        if run_id not in self.recorders:
            self.recorders[run_id] = Recorder(self.store, run_id)
        return self.recorders[run_id]

    def claim(self, run_id: int, pid: int, host: str, device: str) -> dict:
        """Make the remote process the run's worker and hand it what it needs: the config and
        the state of the newest recorded checkpoint that loads (None to start afresh)."""
        from core.worker import _resume_point, clean_run_dir

        with self.lock:
            run = self.store.get_run(run_id)
            run = self.store.claim(run.id, device=device, pid=pid, host=host)
            state = _resume_point(self.store, run)
            step = int(state["step"]) if state else 0
            self.store.truncate_after(run.id, step)
            clean_run_dir(self.store.run_dir(run.id), [ck.path for ck in self.store.checkpoints(run.id)])
            return {"config": run.config, "state": state}

    def started(self, run_id: int, n_params: int, env: dict) -> None:
        with self.lock:
            self.store.set_progress(run_id, n_params=n_params, device=env["device"], env=env)

    def event(self, run_id: int, event) -> None:
        with self.lock:
            self._recorder(run_id)(event)

    def checkpoint(self, run_id: int, step: int, data: bytes, sha256: str, removed: list[str]) -> None:
        """A checkpoint's bytes: written into the runs folder atomically, checked, recorded,
        and only then the run's older checkpoints forgotten and deleted (as a local run does)."""
        from core.atomic import atomic_write_bytes
        from core.train import CheckpointSaved

        if hashlib.sha256(data).hexdigest() != sha256:
            raise DDPMError(f"run {run_id}: checkpoint at step {step} arrived damaged (sha256 differs); the previous one is kept")
        folder = self.store.run_dir(run_id)
        path = folder / f"step-{step:08d}.pt"
        atomic_write_bytes(path, data)
        old = [folder / name for name in removed]
        with self.lock:
            self._recorder(run_id)(CheckpointSaved(step, path, len(data), sha256, old))
        for p in old:
            p.unlink(missing_ok=True)

    def heartbeat(self, run_id: int, pid: int) -> None:
        with self.lock:
            self.store.heartbeat(run_id, pid)

    def stop_requested(self, run_id: int) -> bool:
        with self.lock:
            return self.store.stop_requested(run_id)

    def finish(self, run_id: int, status: str, error: str | None = None, actor: str | None = None) -> None:
        """The run's end, recorded; then its actor is ended (a moment later, so its last
        answer reaches the scheduler first): a finished actor must not hold its GPU or CPUs,
        nor its name, which a resume of the run will want."""
        with self.lock:
            if run_id in self.recorders:
                self.recorders.pop(run_id).flush()
            self.store.finish(run_id, status, error)
        if actor is not None:
            self._end_actor_soon(actor)

    @staticmethod
    def _end_actor_soon(name: str) -> None:
        threading.Thread(target=HeadRecorder._end_actor, args=(name,), daemon=True).start()

    @staticmethod
    def _end_actor(name: str) -> None:
        import ray

        time.sleep(2.0)
        try:
            ray.kill(ray.get_actor(name), no_restart=True)
        except Exception:  # gone already
            pass


class RunActor:
    """Trains one run wherever Ray placed it, recording through the head's recorder."""

    def __init__(self, recorder, name: str):
        self.recorder, self.name = recorder, name
        self.done = threading.Event()
        self.status: str | None = None

    def pid(self) -> int:
        return os.getpid()

    def wait(self) -> str:
        """Returns when training ends (a restarted scheduler adopts a run by waiting on this)."""
        self.done.wait()
        return self.status or "failed"

    def train(self, run_id: int, device: str, threads: int) -> str:
        import ray
        import torch

        from core import devices
        from core.config import RunConfig
        from core.train import CheckpointSaved, Trainer
        from core.worker import _one_line

        get = ray.get
        try:
            if threads > 0:
                torch.set_num_threads(threads)
            got = get(self.recorder.claim.remote(run_id, os.getpid(), socket.gethostname(), device))
        except Exception as e:  # not claimed: another copy holds it, or it was cancelled
            self.status = "refused"
            self.done.set()
            HeadRecorder._end_actor_soon(self.name)
            raise DDPMError(f"run {run_id} was not claimed: {_one_line(e)}") from None
        beat = threading.Event()

        def heartbeat() -> None:
            while not beat.wait(HEARTBEAT_S):
                try:
                    get(self.recorder.heartbeat.remote(run_id, os.getpid()))
                except Exception:
                    pass

        threading.Thread(target=heartbeat, daemon=True).start()
        last_poll, stop_seen = 0.0, False

        def should_stop() -> bool:
            nonlocal last_poll, stop_seen
            now = time.monotonic()
            if not stop_seen and now - last_poll >= STOP_POLL_S:
                last_poll = now
                stop_seen = bool(get(self.recorder.stop_requested.remote(run_id)))
            return stop_seen

        def on_event(ev) -> None:
            if isinstance(ev, CheckpointSaved):  # the bytes go to the head; wait, so nothing overtakes them
                data = Path(ev.path).read_bytes()
                get(self.recorder.checkpoint.remote(run_id, ev.step, data, ev.sha256, [p.name for p in ev.removed]))
            else:  # a caller's actor calls run in order: metrics, grids and figures stay in sequence
                self.recorder.event.remote(run_id, ev)

        try:
            cfg = RunConfig.from_dict(got["config"])
            accelerators = devices.probe()
            dev = torch.device(devices.resolve(device, accelerators))
            with tempfile.TemporaryDirectory(prefix=f"ddpm-run-{run_id}-") as folder:
                trainer = Trainer(cfg, device=dev, run_dir=folder, on_event=on_event, should_stop=should_stop)
                if got["state"] is not None:
                    trainer.load_state(got["state"])
                del got
                env = devices.environment(str(dev), accelerators, precision=trainer.precision, data=trainer.data_placement)
                env["ray_node"] = ray.get_runtime_context().get_node_id()
                get(self.recorder.started.remote(run_id, trainer.n_params, env))
                reason = trainer.run()
            self.status = "completed" if reason == "completed" else "stopped"
            get(self.recorder.finish.remote(run_id, self.status, None, self.name))
            return self.status
        except BaseException as e:
            self.status = "failed"
            try:
                get(self.recorder.finish.remote(run_id, "failed", _one_line(e), self.name))
            except Exception:
                pass
            raise
        finally:
            beat.set()
            self.done.set()


# ---- the scheduler ----------------------------------------------------------------------------


class RayScheduler(Scheduler):
    """The scheduler with Ray placing the runs: a slot per run the cluster has room for (a GPU,
    or ``cpus_per_run`` CPUs), each run an actor on whichever node Ray chooses."""

    def __init__(self, db_path: Path | str, *, address: str = "auto", cpus_per_run: int | None = None, **kwargs):
        connect(address)
        import ray

        self.ray = ray
        total = ray.cluster_resources()
        gpus, cpus = int(total.get("GPU", 0)), int(total.get("CPU", 1))
        self.cpus_per_run = cpus_per_run or (1 if gpus else min(2, cpus))
        if gpus:
            slots = [Slot(f"ray:gpu/{k}", "cuda") for k in range(gpus)]
        else:
            slots = [Slot(f"ray:cpu/{k}", "cpu", threads=self.cpus_per_run) for k in range(max(1, cpus // self.cpus_per_run))]
        super().__init__(db_path, slots, **kwargs)
        self.refs: dict[int, Any] = {}  # run -> the ObjectRef of its actor's train (or wait) call
        self.recorder = self._recorder()

    def _recorder(self):
        """The head's recorder actor, shared by every run of this database (found again after a
        restart): detached, pinned to this node, several calls at once."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        name = f"recorder-{db_key(self.db_path)}"
        try:
            return self.ray.get_actor(name)
        except ValueError:
            pass
        cls = self.ray.remote(HeadRecorder)
        here = NodeAffinitySchedulingStrategy(self.ray.get_runtime_context().get_node_id(), soft=False)
        return cls.options(name=name, lifetime="detached", max_concurrency=8, num_cpus=0, scheduling_strategy=here).remote(
            str(self.db_path.resolve())
        )

    def choose(self, request: str, world_size: int) -> list[str] | None:
        if world_size > 1:
            return None  # several processes train under a local scheduler (torchrun), not on Ray
        return super().choose(request, world_size)

    def _launch(self, slots: list[Slot], run_id: int) -> bool:
        name = run_actor_name(self.db_path, run_id)
        try:
            actor = self.ray.get_actor(name)  # a copy is alive already (its scheduler died): watch it
            ref = actor.wait.remote()
        except ValueError:
            gpu = slots[0].device == "cuda"
            cls = self.ray.remote(RunActor)
            actor = cls.options(
                name=name,
                lifetime="detached",
                max_concurrency=2,
                num_gpus=1 if gpu else 0,
                num_cpus=1 if gpu else self.cpus_per_run,
            ).remote(self.recorder, name)
            run = self.store.get_run(run_id)
            device = "cuda" if gpu else "cpu"
            if run.device_request not in ("auto", "cuda", "cpu"):
                device = run.device_request
            ref = actor.train.remote(run_id, device, 0 if gpu else self.cpus_per_run)
        for s in slots:
            s.run, s.proc, s.pid = run_id, None, None
        slots[0].pid = -1  # the lead slot of a Ray run: its process is Ray's to watch
        self.refs[run_id] = ref
        return True

    def reap(self) -> None:
        for run_id, ref in list(self.refs.items()):
            ready, _ = self.ray.wait([ref], timeout=0)
            try:
                run = self.store.get_run(run_id)
            except DDPMError:
                run = None
            if not ready and (run is None or run.status not in ("completed", "stopped", "failed")):
                continue
            died = False
            if ready:
                try:
                    self.ray.get(ref)
                except self.ray.exceptions.RayActorError:  # the actor's process or its node died
                    died = True
                except Exception:  # its run failed (recorded) or was not claimed
                    pass
            if run is not None:
                if died and run.stored_status == "running":
                    self.store.mark_gone(run_id)
                    run = self.store.get_run(run_id)
                if run.status == "crashed":
                    self._retry(run)
                elif run.status in ("completed", "stopped", "failed"):
                    self.log(f"run {run.id} ({run.name}) {run.status} at step {run.step:,}; {run.slot} free")
                elif run.status == "queued" and run.scheduler == self.id and run.pid is None:
                    self.store.release(run.id, self.id)  # its actor never claimed it
            del self.refs[run_id]
            self._free(run_id)

    def adopt(self) -> None:
        """Runs left by a dead scheduler: those whose actor lives are watched again; those whose
        actor is gone read crashed (and go back to the queue if they have retries)."""
        live = {r["id"] for r in self.store.live_schedulers()}
        for rid in self.store.release_orphans(live):
            self.log(f"run {rid}: taken by a scheduler that is gone, back in the queue")
        for run in self.store.list_runs():
            if not run.in_queue or not (run.slot or "").startswith("ray:") or run.status not in ("running", "crashed"):
                continue
            if run.scheduler in live and run.scheduler != self.id:
                continue
            try:
                actor = self.ray.get_actor(run_actor_name(self.db_path, run.id))
            except ValueError:
                actor = None
            if actor is None:
                if run.stored_status == "running":
                    self.store.mark_gone(run.id)
                self._retry(self.store.get_run(run.id))
                continue
            slot = self._slot_for(run.slot, None)
            if slot is None:
                continue
            slot.run, slot.pid = run.id, -1
            self.refs[run.id] = actor.wait.remote()
            self.store.adopt(run.id, self.id, slot.name)
            self.log(f"run {run.id} ({run.name}): adopted from Ray in {slot.name}")

    def _stop_running(self) -> None:
        self._stop_sent = True
        for run_id in self.refs:
            try:
                self.store.request_stop(run_id)
            except DDPMError:
                pass
