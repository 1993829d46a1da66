"""The run store: one SQLite file that records every run, its metrics, samples and checkpoints.

The database is the only channel between processes (DESIGN.md, Data flow): workers write,
the CLI and the dashboard read and poll. So it is opened in WAL mode (readers never block the
writer) with a busy timeout (writers queue instead of failing), every write is one short
transaction that starts with a write, and the few that must not interleave are single
``UPDATE ... WHERE`` statements.

A run's ``crashed`` status is never stored: readers derive it from a ``running`` row whose
worker is gone (a dead or zombie pid on this host, a reused pid, or a stale heartbeat from
another host). A read-only reader can therefore list and show runs without writing, and a
worker that comes back to a crashed run simply claims it again.

This module imports no torch and no UI library: the dashboard lists a thousand runs with it
in well under a second.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import socket
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import DDPMError
from core.migrations import MIGRATIONS, SCHEMA_VERSION
from core.sampling_spec import Protocol, SamplingSpec

if TYPE_CHECKING:
    import numpy as np
    import sqlite_utils

APP = "ddpm-tui"
DEFAULT_DB = "experiments.db"
STATUSES = ("queued", "running", "completed", "stopped", "failed", "crashed")
FINAL = ("completed", "stopped", "failed", "crashed")
HEARTBEAT_EVERY = 5.0  # seconds between a worker's heartbeats
STALE_AFTER = 60.0  # a heartbeat older than this means the worker is gone (other hosts)
BUSY_TIMEOUT_MS = 30_000
# Run names are for people and scripts; a study's runs are named after their setting
# (``lr-vs-obj/lr=2e-3,objective=v,seed=1``, ``s/channel_mult=[1,2]``), hence / = , [ ].
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+\-/=,\[\]]{0,199}$")


class StoreError(DDPMError):
    """The database cannot be used as asked; the message says why and what to do."""


class RunNotFound(StoreError):
    pass


def default_db_path() -> Path:
    """``$DDPM_DB`` if set, else ``./experiments.db``."""
    return Path(os.environ.get("DDPM_DB") or DEFAULT_DB)


def open_store(path: Path | str | None = None, *, write: bool = False, create: bool = False) -> Store:
    """The store at ``path`` (default: :func:`default_db_path`) as a face opens it.

    ``write=True``: the caller is about to write, so the file must be writable (or the error
    says why). Otherwise writable when the file and its folder may be written, else read-only:
    browsing a database you cannot change still works, and writes say why they cannot.
    ``create=True`` makes a new file where there is none; without it a missing file is an
    error that says how to start, and no empty database is left behind.
    """
    path = Path(path) if path is not None else default_db_path()
    if write or not path.exists():
        return Store(path, create=create)
    writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    return Store(path, readonly=not writable, create=False)


# ---- process liveness ------------------------------------------------------------------


def hostname() -> str:
    return socket.gethostname()


def process_start(pid: int) -> str | None:
    """The kernel's start time of a process (Linux ``/proc``), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def pid_alive(pid: int | None, start: str | None = None) -> bool:
    """True if ``pid`` is a live (non-zombie) process, and the same one if ``start`` is known."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except OSError:
        return False
    stat_path = Path(f"/proc/{pid}/stat")
    if stat_path.exists():
        try:
            stat = stat_path.read_text()
        except OSError:
            return False
        rest = stat[stat.rfind(")") + 2 :].split()
        if rest and rest[0] in ("Z", "X"):  # zombie or dead: exited, not yet reaped
            return False
        if start is not None and len(rest) > 19 and rest[19] != start:
            return False
    return True


# ---- records ---------------------------------------------------------------------------


@dataclass
class Run:
    """One row of ``runs`` with its JSON fields decoded and its status as readers see it."""

    id: int
    name: str
    preset: str
    status: str  # effective: 'crashed' when the row says running but the worker is gone
    config: dict
    device: str  # the device it trains on ('cpu', 'cuda:0'), or what was asked before it started
    total_steps: int
    step: int = 0
    stored_status: str = ""
    device_request: str = "auto"
    pid: int | None = None
    host: str | None = None
    proc_start: str | None = None
    heartbeat: float | None = None
    created: float = 0.0
    started: float | None = None
    ended: float | None = None
    error: str | None = None
    tags: list[str] = field(default_factory=list)
    notes: str = ""
    stop_requested: bool = False
    n_params: int | None = None
    last_loss: float | None = None
    images_per_s: float | None = None
    elapsed_s: float = 0.0
    env: dict = field(default_factory=dict)  # where it trained: device, GPU/CPU model, host, versions, precision
    study: str | None = None  # the sweep it belongs to; None for a lone run
    priority: int = 0  # the queue takes higher first, then older
    in_queue: bool = False  # waits for a scheduler (ddpm run --queue, ddpm sweep, a retry)
    scheduler: int | None = None  # the scheduler that took it from the queue
    slot: str | None = None  # that scheduler's slot, e.g. "cuda:1/0" or "cpu/1"
    retries: int | None = None  # crashes a scheduler may resume it after (None: the scheduler's default)
    attempts: int = 0  # resumes after crashes so far
    world_size: int = 1

    @property
    def active(self) -> bool:
        """A worker is (or is about to be) training it."""
        return self.status in ("queued", "running")

    @property
    def dataset(self) -> str:
        return str(self.config.get("dataset", "mnist"))

    @property
    def has_worker(self) -> bool:
        """A worker process is alive for it: it is running, or it is queued with a pid, which
        is a spawned worker that has not claimed it yet (and will). Such a run keeps training
        whatever this process does, and must be stopped before it is deleted."""
        return self.status == "running" or (self.status == "queued" and bool(self.pid))

    @property
    def seconds_left(self) -> float | None:
        """Seconds left at the measured pace, when there is one."""
        if self.status != "running" or self.step <= 0 or self.elapsed_s <= 0:
            return None
        return max(0.0, (self.total_steps - self.step) * self.elapsed_s / self.step)

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("stored_status")
        d.pop("proc_start")
        d.pop("in_queue")
        for k in ("last_loss", "images_per_s"):
            if d[k] is not None and not math.isfinite(d[k]):
                d[k] = None
        return d


@dataclass
class NewRun:
    """What :meth:`Store.create_runs` records for one new run."""

    config: dict
    preset: str
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    device: str = "auto"
    notes: str = ""
    study: str | None = None
    priority: int = 0
    in_queue: bool = False
    retries: int | None = None
    world_size: int = 1


@dataclass
class SampleRecord:
    run: int
    step: int
    sampler: str
    steps: int
    data: np.ndarray  # uint8 (N, C, H, W) images or float32 (N, 2) points
    time: float
    eta: float | None = None  # recorded since schema 3
    guidance: float | None = None  # a conditional run's grid (schema 5)
    labels: list[int] | None = None  # each image's class (schema 5)
    eta_window: float | None = None  # recorded since schema 6; None: drawn without one

    @property
    def label(self) -> str:
        """How the grid was drawn, as sampling specs name themselves (``ddim-50 eta 1.8``)."""
        if self.eta is None:
            return f"{self.sampler}-{self.steps}"
        window = 1.0 if self.eta_window is None else self.eta_window
        return SamplingSpec(self.sampler, self.steps, self.eta, self.guidance, window).label

    @property
    def per_row(self) -> int | None:
        """Images per row that put one class on each row (a conditional grid), else None."""
        from core.sampling_spec import per_row

        return per_row(self.labels)


@dataclass
class CheckpointRecord:
    run: int
    step: int
    path: str
    bytes: int
    sha256: str
    time: float


def _effective_status(row: dict, now: float, here: str) -> str:
    status = row["status"]
    if status == "running" or (status == "queued" and row["pid"]):
        if row["host"] == here:
            alive = pid_alive(row["pid"], row["proc_start"])
        else:
            alive = row["heartbeat"] is not None and now - row["heartbeat"] < STALE_AFTER
        if not alive:
            return "crashed"
    return status


def _to_run(row: dict, now: float, here: str) -> Run:
    return Run(
        id=row["id"],
        name=row["name"],
        preset=row["preset"],
        status=_effective_status(row, now, here),
        stored_status=row["status"],
        config=json.loads(row["config"]),
        device=row["device"] or row["device_request"] or "auto",
        device_request=row["device_request"] or "auto",
        total_steps=row["total_steps"],
        step=row["step"] or 0,
        pid=row["pid"],
        host=row["host"],
        proc_start=row["proc_start"],
        heartbeat=row["heartbeat"],
        created=row["created"],
        started=row["started"],
        ended=row["ended"],
        error=row["error"],
        tags=json.loads(row["tags"] or "[]"),
        notes=row["notes"] or "",
        stop_requested=bool(row["stop_requested"]),
        n_params=row["n_params"],
        last_loss=row["last_loss"],
        images_per_s=row["images_per_s"],
        elapsed_s=row["elapsed_s"] or 0.0,
        env=json.loads(row["env"]) if row.get("env") else {},
        study=row.get("study"),
        priority=row.get("priority") or 0,
        in_queue=bool(row.get("in_queue")),
        scheduler=row.get("scheduler"),
        slot=row.get("slot"),
        retries=row.get("retries"),
        attempts=row.get("attempts") or 0,
        world_size=row.get("world_size") or 1,
    )


# ---- the store ---------------------------------------------------------------------------


class Store:
    """Every query the engine, the CLI and the dashboard make, over one SQLite file.

    ``readonly=True`` opens without the right to write (``ddpm ls`` on a file you may not
    change). ``create=False`` refuses to make a new file: reading commands never leave an
    empty database behind.
    """

    def __init__(self, path: Path | str | None = None, *, readonly: bool = False, create: bool = True):
        self.path = Path(path) if path is not None else default_db_path()
        self.readonly = readonly
        self._here = hostname()
        exists = self.path.exists()
        if not exists and (readonly or not create):
            raise StoreError(f"no database at {self.path}; start a run with `ddpm run` (or pass --db PATH)")
        if exists and self.path.is_dir():
            raise StoreError(f"{self.path} is a folder, not a database file; pass --db PATH/experiments.db")
        if not exists and not self.path.parent.exists():
            raise StoreError(f"folder {self.path.parent} does not exist; create it or choose another --db")
        self.conn = self._connect(exists)
        self._check_and_migrate(exists)  # refuses files that are not ours before anything is written

    def _tune(self) -> None:
        """WAL (readers never block the writer) and NORMAL sync (durable against a killed
        process, which is what a worker meets). Only ever done to a file known to be ours."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                return
            except sqlite3.OperationalError as e:
                # Openers of a new file racing to switch it to WAL: SQLite can answer the loser
                # "database is locked" at once, without waiting in its busy handler. The switch
                # is over in a moment, so try again within the busy timeout.
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise self._unusable(e) from None
                time.sleep(0.005)

    # ---- opening -----------------------------------------------------------------------

    def _connect(self, exists: bool) -> sqlite3.Connection:
        try:
            if self.readonly:
                conn = self._connect_readonly()
            else:
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as e:
            raise self._unusable(e) from None
        return conn

    def _connect_readonly(self) -> sqlite3.Connection:
        uri = self.path.resolve().as_uri()
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            # A WAL database in a folder we cannot write has no -shm file to share; reading it
            # as immutable is safe when no writer can be there either.
            conn.close()
            conn = sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)
        return conn

    def _unusable(self, e: Exception) -> StoreError:
        text = str(e)
        if "not a database" in text or "malformed" in text or "file is encrypted" in text:
            return StoreError(f"{self.path} is not a SQLite database (or is damaged); pass --db with another path")
        if "readonly" in text or "read-only" in text or "unable to open" in text:
            return StoreError(f"cannot open {self.path} for writing ({text}); check its permissions or pass --db")
        return StoreError(f"cannot use database {self.path}: {text}")

    @functools.cached_property
    def db(self) -> sqlite_utils.Database:
        """sqlite-utils over the connection, for the migrations. Made on first use: reading
        commands never migrate, and importing sqlite-utils (which imports numpy) is most of
        their start-up."""
        import sqlite_utils

        return sqlite_utils.Database(self.conn)

    def table_names(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]

    def _meta(self) -> dict[str, str]:
        """The meta table as a dict; empty for a new file (or one that is not ours)."""
        if "meta" not in self.table_names():
            return {}
        return {k: v for k, v in self.conn.execute("SELECT key, value FROM meta")}

    def _check_and_migrate(self, exists: bool) -> None:
        tables = set(self.table_names())
        if "meta" not in tables:
            if tables:
                raise StoreError(
                    f"{self.path} belongs to another program (tables: {', '.join(sorted(tables)[:5])}); "
                    "it was left untouched. Pass --db with another path"
                )
            if self.readonly:
                raise StoreError(f"{self.path} is empty and read-only; start a run with `ddpm run` elsewhere")
            version = 0
        else:
            meta = self._meta()
            if meta.get("app") != APP:
                raise StoreError(f"{self.path} is not a ddpm-tui database (app={meta.get('app')!r}); it was left untouched")
            version = int(meta.get("schema_version", 0))
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer ddpm-tui (schema {version}, this one reads up to "
                f"{SCHEMA_VERSION}); upgrade ddpm-tui. The file was left untouched"
            )
        if self.readonly:
            if version < SCHEMA_VERSION:
                raise StoreError(f"{self.path} has an older schema ({version}) and is read-only; open it once writable")
            return
        self._tune()
        if version < SCHEMA_VERSION:
            self._migrate()

    def _migrate(self) -> None:
        with self.write():
            # Read the version under the write lock: another process may have created or
            # migrated the file since we looked (two `ddpm run --detach` into a new path).
            version = int(self._meta().get("schema_version", 0))
            if version >= SCHEMA_VERSION:
                return
            if version == 0:
                self.db["meta"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
                self.db["meta"].upsert({"key": "app", "value": APP}, pk="key")
            for v in range(version, SCHEMA_VERSION):
                MIGRATIONS[v](self.db)
            self.db["meta"].upsert({"key": "schema_version", "value": str(SCHEMA_VERSION)}, pk="key")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction; ``BEGIN IMMEDIATE`` takes the write lock up front so
        the busy timeout applies (a deferred read-then-write could fail at once instead)."""
        if self.readonly:
            raise StoreError(f"{self.path} is open read-only; this needs a writable database")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise self._unusable(e) from None
        try:
            yield self.conn
        except BaseException:
            self.conn.rollback()
            raise
        else:
            self.conn.commit()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- paths ---------------------------------------------------------------------------

    @property
    def runs_root(self) -> Path:
        """``<db stem>.runs/`` beside the database."""
        return self.path.parent / f"{self.path.stem}.runs"

    def run_dir(self, run_id: int) -> Path:
        return self.runs_root / str(int(run_id))

    # ---- runs ----------------------------------------------------------------------------

    def _rows(self, sql: str, params: tuple | dict = ()) -> list[dict]:
        cur = self.conn.execute(sql, params)
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def create_run(
        self,
        config: dict,
        *,
        preset: str,
        name: str | None = None,
        tags: list[str] | tuple[str, ...] = (),
        device: str = "auto",
        notes: str = "",
        study: str | None = None,
        priority: int = 0,
        in_queue: bool = False,
        retries: int | None = None,
        world_size: int = 1,
    ) -> Run:
        """A new ``queued`` run; its name defaults to ``<preset>-<id>``. ``in_queue`` leaves it
        to a scheduler; otherwise the caller starts its worker."""
        spec = NewRun(config, preset, name, list(tags), device, notes, study, priority, in_queue, retries, world_size)
        return self.get_run(self.create_runs([spec])[0])

    def create_runs(self, runs: list[NewRun]) -> list[int]:
        """Several new runs in one transaction (a sweep): all are recorded, or none."""
        for r in runs:
            if r.name is not None:
                check_name(r.name)
            if r.study is not None:
                check_study(r.study)
            r.tags = [check_tag(t) for t in dict.fromkeys(r.tags)]
        names = [r.name for r in runs if r.name is not None]
        if len(set(names)) < len(names):
            raise StoreError("two of the new runs have the same name; names must be unique")
        now = time.time()
        ids = []
        with self.write() as c:
            for r in runs:
                if r.name is not None and c.execute("SELECT 1 FROM runs WHERE name = ?", (r.name,)).fetchone():
                    raise StoreError(f"a run named {r.name!r} exists already; choose another --name")
                cur = c.execute(
                    "INSERT INTO runs (name, preset, status, config, device_request, created, total_steps, tags, notes,"
                    " study, priority, in_queue, retries, world_size) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (r.name or f"tmp-{os.getpid()}-{now}-{len(ids)}", r.preset, json.dumps(r.config, sort_keys=True),
                     r.device, now, int(r.config.get("steps", 0)), json.dumps(r.tags), r.notes, r.study, int(r.priority),
                     int(r.in_queue), r.retries, int(r.world_size)),
                )  # fmt: skip
                run_id = int(cur.lastrowid)
                if r.name is None:
                    auto = f"{r.preset}-{run_id}"
                    if c.execute("SELECT 1 FROM runs WHERE name = ?", (auto,)).fetchone():
                        auto = f"{r.preset}-{run_id}-{int(now)}"
                    c.execute("UPDATE runs SET name = ? WHERE id = ?", (auto, run_id))
                ids.append(run_id)
        return ids

    def get_run(self, ref: int | str) -> Run:
        """A run by id or by its unique name."""
        text = str(ref).strip()
        rows = []
        if text.isdigit():
            rows = self._rows("SELECT * FROM runs WHERE id = ?", (int(text),))
        if not rows:
            rows = self._rows("SELECT * FROM runs WHERE name = ?", (text,))
        if not rows:
            raise RunNotFound(f"no run {text!r} in {self.path}; `ddpm ls` lists the runs")
        return _to_run(rows[0], time.time(), self._here)

    def list_runs(
        self, status: str | None = None, tag: str | None = None, study: str | None = None, ids: Collection[int] | None = None
    ) -> list[Run]:
        """Every run, newest first; ``status`` filters on the effective status, ``ids`` keeps
        only those runs (a query that has already narrowed them down decodes no others)."""
        now = time.time()
        where, params = [], []
        if study is not None:
            where.append("study = ?")
            params.append(study)
        if ids is not None:
            where.append("id IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(sorted(int(i) for i in ids)))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._rows(f"SELECT * FROM runs{clause} ORDER BY id DESC", tuple(params))
        runs = [_to_run(r, now, self._here) for r in rows]
        if status is not None:
            runs = [r for r in runs if r.status == status]
        if tag is not None:
            runs = [r for r in runs if tag in r.tags]
        return runs

    # ---- studies -------------------------------------------------------------------------

    def studies(self) -> list[str]:
        """The names of the studies that have runs, A to Z."""
        rows = self.conn.execute("SELECT DISTINCT study FROM runs WHERE study IS NOT NULL ORDER BY study")
        return [r[0] for r in rows.fetchall()]

    def study_runs(self, study: str | None = None) -> list[Run]:
        """The runs of one study, or of every study when None, oldest first (a sweep's grid
        order), in one query whatever their number."""
        now = time.time()
        if study is None:
            rows = self._rows("SELECT * FROM runs WHERE study IS NOT NULL ORDER BY id")
        else:
            rows = self._rows("SELECT * FROM runs WHERE study = ? ORDER BY id", (study,))
        return [_to_run(r, now, self._here) for r in rows]

    def study_evals(self, study: str | None = None) -> dict[int, list[dict]]:
        """The evaluations of one study's runs (of every study's when None), by run, oldest
        first, in one query: a study table judges two hundred runs without two hundred reads."""
        where = "IS NOT NULL" if study is None else "= ?"
        rows = self._rows(
            f"SELECT e.* FROM evals e JOIN runs r ON r.id = e.run WHERE r.study {where} ORDER BY e.run, e.step, e.id",
            () if study is None else (study,),
        )
        out: dict[int, list[dict]] = {}
        for r in _decode_evals(rows):
            out.setdefault(r["run"], []).append(r)
        return out

    def data_version(self) -> tuple[int, int]:
        """Changes when anyone commits to the file: lets pollers skip work when nothing moved."""
        dv = self.conn.execute("PRAGMA data_version").fetchone()[0]
        total = self.conn.execute("SELECT total_changes()").fetchone()[0]
        return int(dv), int(total)

    # ---- lifecycle -----------------------------------------------------------------------

    def claim(self, run_id: int, *, device: str, pid: int | None = None, host: str | None = None) -> Run:
        """Make this process the run's worker: ``running``, with pid, host and heartbeat
        (``pid`` and ``host`` name another process, for a Ray run recorded by the head).

        One statement, so two workers can never both claim a run: the second sees the first's
        live row and is refused. A run that is crashed, stopped, failed or completed is claimed
        again by a resume (which first sets it back to ``queued``).
        """
        pid = pid or os.getpid()
        run = self.get_run(run_id)
        if run.status == "running" and run.pid != pid:
            raise StoreError(f"run {run.id} ({run.name}) is already being trained by pid {run.pid} on {run.host}")
        if run.status not in ("queued", "crashed", "running"):
            raise StoreError(f"run {run.id} ({run.name}) is {run.status}; use `ddpm resume {run.id}` to continue it")
        now = time.time()
        with self.write() as c:
            cur = c.execute(
                "UPDATE runs SET status = 'running', pid = ?, host = ?, proc_start = ?, heartbeat = ?,"
                " started = coalesce(started, ?), ended = NULL, error = NULL, device = ?, stop_requested = 0"
                " WHERE id = ? AND status = ? AND coalesce(pid, -1) = coalesce(?, -1)",
                (
                    pid,
                    host or self._here,
                    process_start(pid) if (host or self._here) == self._here else None,
                    now,
                    now,
                    device,
                    run_id,
                    run.stored_status,
                    run.pid,
                ),
            )
            if cur.rowcount != 1:
                raise StoreError(f"run {run_id} was claimed by another worker at the same moment; it is running there")
        return self.get_run(run_id)

    def set_spawned(self, run_id: int, pid: int) -> None:
        """Record a detached worker's pid as soon as it is launched, before it claims the run,
        so that a worker that dies on the way is seen as crashed rather than queued forever."""
        with self.write() as c:
            c.execute(
                "UPDATE runs SET pid = ?, host = ?, proc_start = ?, heartbeat = ? WHERE id = ? AND status = 'queued'",
                (pid, self._here, process_start(pid), time.time(), run_id),
            )

    def heartbeat(self, run_id: int, pid: int | None = None) -> None:
        with self.write() as c:
            c.execute(
                "UPDATE runs SET heartbeat = ? WHERE id = ? AND pid = ? AND status = 'running'",
                (time.time(), run_id, pid or os.getpid()),
            )

    def mark_gone(self, run_id: int) -> None:
        """Its worker is known to be dead (Ray said so): make the row read ``crashed`` now
        rather than when its heartbeat goes stale."""
        with self.write() as c:
            c.execute("UPDATE runs SET heartbeat = 0 WHERE id = ? AND status = 'running'", (run_id,))

    def live_workers_here(self) -> int:
        """How many runs are being trained by live processes on this host."""
        rows = self.conn.execute("SELECT pid, proc_start FROM runs WHERE status = 'running' AND host = ?", (self._here,))
        return sum(1 for pid, start in rows.fetchall() if pid_alive(pid, start))

    def stop_requested(self, run_id: int) -> bool:
        row = self.conn.execute("SELECT stop_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
        return bool(row and row[0])

    def request_stop(self, ref: int | str) -> Run:
        """Ask a run's worker to stop at its next step (it checkpoints first). A queued run
        that no worker has picked up yet is stopped at once."""
        run = self.get_run(ref)
        with self.write() as c:
            cancelled = c.execute(
                "UPDATE runs SET status = 'stopped', ended = ?, error = 'cancelled before it started'"
                " WHERE id = ? AND status = 'queued' AND pid IS NULL",
                (time.time(), run.id),
            ).rowcount
            if not cancelled:
                c.execute("UPDATE runs SET stop_requested = 1 WHERE id = ?", (run.id,))
        return self.get_run(run.id)

    def finish(self, run_id: int, status: str, error: str | None = None) -> None:
        if status not in FINAL:
            raise ValueError(f"not a final status: {status}")
        with self.write() as c:
            c.execute(
                "UPDATE runs SET status = ?, error = ?, ended = ?, heartbeat = ?, stop_requested = 0 WHERE id = ?",
                (status, error, time.time(), time.time(), run_id),
            )

    def prepare_resume(
        self, ref: int | str, total_steps: int | None = None, *, in_queue: bool = False, world_size: int | None = None
    ) -> Run:
        """Make a stopped, failed, crashed or completed run ``queued`` again, optionally with a
        new total step count (which must lie beyond the step it reached); ``in_queue`` leaves
        it to a scheduler, otherwise the caller starts its worker."""
        run = self.get_run(ref)
        if run.status in ("running", "queued"):
            raise StoreError(f"run {run.id} ({run.name}) is {run.status} already; `ddpm stop {run.id}` first")
        config = dict(run.config)
        total = run.total_steps if total_steps is None else int(total_steps)
        if total_steps is not None:
            if total <= run.step:
                raise StoreError(f"--steps {total} is not beyond step {run.step} that run {run.id} reached; ask for more")
            config["steps"] = total
        elif run.status == "completed":
            raise StoreError(f"run {run.id} is completed at step {run.step}; pass --steps TOTAL (more than {run.step})")
        with self.write() as c:
            c.execute(
                "UPDATE runs SET status = 'queued', pid = NULL, host = NULL, proc_start = NULL, error = NULL,"
                " ended = NULL, stop_requested = 0, total_steps = ?, config = ?, in_queue = ?, scheduler = NULL,"
                " slot = NULL, world_size = ? WHERE id = ?",
                (total, json.dumps(config, sort_keys=True), int(in_queue), int(world_size or run.world_size), run.id),
            )
        return self.get_run(run.id)

    # ---- the queue -----------------------------------------------------------------------

    WAITING = "in_queue = 1 AND status = 'queued' AND pid IS NULL AND scheduler IS NULL"

    def waiting(self) -> list[Run]:
        """Runs waiting for a scheduler, in the order schedulers take them: highest priority
        first, then oldest."""
        now = time.time()
        rows = self._rows(f"SELECT * FROM runs WHERE {self.WAITING} ORDER BY priority DESC, id ASC")
        return [_to_run(r, now, self._here) for r in rows]

    def take_next(self, scheduler: int, choose: Callable[[str, int], list[str] | None]) -> Run | None:
        """The first waiting run this scheduler can train now, marked as its own in the slots
        ``choose(device_request, world_size)`` picks: a list of slot names to take it, an
        empty list to wait (the head of the queue waits for enough slots; nothing behind it
        jumps ahead), None when these slots can never train it (it is skipped). One write
        transaction: two schedulers can never take the same run."""
        taken = None
        with self.write() as c:
            rows = c.execute(
                f"SELECT id, device_request, world_size FROM runs WHERE {self.WAITING} ORDER BY priority DESC, id ASC"
            )
            for rid, request, world in rows.fetchall():
                slots = choose(request or "auto", int(world or 1))
                if slots is None:
                    continue
                if slots:
                    c.execute(
                        f"UPDATE runs SET scheduler = ?, slot = ? WHERE id = ? AND {self.WAITING}",
                        (scheduler, "+".join(slots), rid),
                    )
                    taken = rid
                break
        return self.get_run(taken) if taken is not None else None

    def adopt(self, run_id: int, scheduler: int, slot: str) -> None:
        """A live worker's run passes to a new scheduler (its own died), in ``slot``."""
        with self.write() as c:
            c.execute("UPDATE runs SET scheduler = ?, slot = ? WHERE id = ?", (scheduler, slot, run_id))

    def release(self, run_id: int, scheduler: int) -> None:
        """Give back a run this scheduler took but never started (its worker did not spawn)."""
        with self.write() as c:
            c.execute(
                "UPDATE runs SET scheduler = NULL, slot = NULL WHERE id = ? AND scheduler = ? AND status = 'queued' AND pid IS NULL",
                (run_id, scheduler),
            )

    def release_orphans(self, live: set[int]) -> list[int]:
        """Runs taken by schedulers that are gone (not in ``live``) and never started go back
        to the queue. Returns their ids."""
        rows = self.conn.execute(
            "SELECT id, scheduler FROM runs WHERE status = 'queued' AND pid IS NULL AND scheduler IS NOT NULL"
        ).fetchall()
        freed = [rid for rid, sched in rows if sched not in live]
        for rid, sched in rows:
            if sched not in live:
                self.release(rid, sched)
        return freed

    def requeue_crashed(self, run_id: int) -> bool:
        """Put a crashed run back in the queue to resume from its last checkpoint, counting the
        attempt; False if it is no longer crashed (someone resumed or deleted it)."""
        run = self.get_run(run_id)
        if run.status != "crashed":
            return False
        with self.write() as c:
            cur = c.execute(
                "UPDATE runs SET status = 'queued', pid = NULL, host = NULL, proc_start = NULL, ended = NULL,"
                " stop_requested = 0, in_queue = 1, scheduler = NULL, slot = NULL, attempts = attempts + 1,"
                " error = ? WHERE id = ? AND status = ? AND coalesce(pid, -1) = coalesce(?, -1)",
                (f"crashed at step {run.step}; re-queued (attempt {run.attempts + 1})", run.id, run.stored_status, run.pid),
            )
        return cur.rowcount == 1

    def move_to_front(self, ref: int | str) -> Run:
        """A waiting run to the head of the queue: one above the highest priority waiting."""
        run = self.get_run(ref)
        if not (run.in_queue and run.stored_status == "queued" and run.pid is None and run.scheduler is None):
            raise StoreError(f"run {run.id} ({run.name}) is not waiting in the queue (it is {run.status})")
        with self.write() as c:
            (top,) = c.execute(f"SELECT coalesce(max(priority), 0) FROM runs WHERE {self.WAITING}").fetchone()
            c.execute("UPDATE runs SET priority = ? WHERE id = ?", (int(top) + 1, run.id))
        return self.get_run(run.id)

    def move_up(self, ref: int | str) -> Run:
        """A waiting run one place up the queue, past the run just before it and no further.

        The order is (priority descending, id ascending), so two neighbours of one priority
        have no priority between them: the run takes the lowest priority that puts it before
        its neighbour, and the runs ahead of that neighbour rise together by the least step
        (0 to 2) that keeps them ahead of it. Raising the head rather than lowering the tail
        keeps a run queued later at the default priority at the back. One transaction: the
        order read is the order changed. The first run stays where it is."""
        run = self.get_run(ref)
        with self.write() as c:
            order = c.execute(f"SELECT id, priority FROM runs WHERE {self.WAITING} ORDER BY priority DESC, id ASC").fetchall()
            ids = [rid for rid, _ in order]
            if run.id not in ids:
                raise StoreError(f"run {run.id} ({run.name}) is not waiting in the queue (it is {run.status})")
            i = ids.index(run.id)
            if i == 0:
                return run
            prev_id, prev_p = order[i - 1]
            new_p = prev_p if run.id < prev_id else prev_p + 1
            ahead = order[: i - 1]
            rise = next(k for k in (0, 1, 2) if all(p + k > new_p or (p + k == new_p and rid < run.id) for rid, p in ahead))
            c.execute("UPDATE runs SET priority = ? WHERE id = ?", (new_p, run.id))
            if rise:
                c.executemany("UPDATE runs SET priority = priority + ? WHERE id = ?", [(rise, rid) for rid, _ in ahead])
        return self.get_run(run.id)

    # ---- schedulers ------------------------------------------------------------------------

    def register_scheduler(self, slots: list[dict], retries: int = 0, pid: int | None = None) -> int:
        pid = pid or os.getpid()
        now = time.time()
        with self.write() as c:
            cur = c.execute(
                "INSERT INTO schedulers (host, pid, proc_start, started, heartbeat, slots, retries, stopping)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                (self._here, pid, process_start(pid), now, now, json.dumps(slots), int(retries)),
            )
        return int(cur.lastrowid)

    def scheduler_beat(self, scheduler: int) -> int:
        """Refresh a scheduler's heartbeat; returns its ``stopping`` flag (0, 1 or 2)."""
        with self.write() as c:
            c.execute("UPDATE schedulers SET heartbeat = ? WHERE id = ?", (time.time(), scheduler))
            row = c.execute("SELECT stopping FROM schedulers WHERE id = ?", (scheduler,)).fetchone()
        return int(row[0]) if row else 2

    def end_scheduler(self, scheduler: int) -> None:
        with self.write() as c:
            c.execute("UPDATE schedulers SET ended = ? WHERE id = ?", (time.time(), scheduler))

    def live_schedulers(self) -> list[dict]:
        """Schedulers still running: a live pid on this host, a fresh heartbeat elsewhere."""
        now = time.time()
        out = []
        for r in self._rows("SELECT * FROM schedulers WHERE ended IS NULL ORDER BY id"):
            here = r["host"] == self._here
            alive = pid_alive(r["pid"], r["proc_start"]) if here else (now - (r["heartbeat"] or 0)) < STALE_AFTER
            if alive:
                r["slots"] = json.loads(r["slots"] or "[]")
                out.append(r)
        return out

    def stop_schedulers(self, now: bool = False) -> list[dict]:
        """Ask every live scheduler to take no new runs (``now``: and to stop its running ones,
        each with a checkpoint). Returns the schedulers asked."""
        live = self.live_schedulers()
        with self.write() as c:
            for r in live:
                c.execute("UPDATE schedulers SET stopping = max(stopping, ?) WHERE id = ?", (2 if now else 1, r["id"]))
        return live

    def set_progress(self, run_id: int, **values: Any) -> None:
        allowed = {"step", "device", "n_params", "last_loss", "images_per_s", "elapsed_s", "total_steps", "env", "world_size"}
        bad = set(values) - allowed
        if bad:
            raise ValueError(f"not progress fields: {bad}")
        if not values:
            return
        if "env" in values:
            values["env"] = json.dumps(values["env"], sort_keys=True)
        cols = ", ".join(f"{k} = ?" for k in values)
        with self.write() as c:
            c.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*values.values(), run_id))

    def delete_run(self, ref: int | str) -> Run:
        """Delete a run's rows and its checkpoint folder. A live run must be stopped first."""
        run = self.get_run(ref)
        if run.has_worker:
            raise StoreError(f"run {run.id} ({run.name}) is {run.status}; `ddpm stop {run.id}` it before deleting it")
        with self.write() as c:
            for table in ("metrics", "samples", "checkpoints", "evals"):
                c.execute(f"DELETE FROM {table} WHERE run = ?", (run.id,))
            c.execute("DELETE FROM runs WHERE id = ?", (run.id,))
        folder = self.run_dir(run.id)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        return run

    def rename(self, ref: int | str, name: str) -> Run:
        run = self.get_run(ref)
        check_name(name)
        try:
            with self.write() as c:
                c.execute("UPDATE runs SET name = ? WHERE id = ?", (name, run.id))
        except sqlite3.IntegrityError:
            raise StoreError(f"a run named {name!r} exists already; choose another name") from None
        return self.get_run(run.id)

    def add_tag(self, ref: int | str, tag: str) -> Run:
        return self._edit_tags(ref, lambda tags: tags + [check_tag(tag)] if tag not in tags else tags)

    def remove_tag(self, ref: int | str, tag: str) -> Run:
        return self._edit_tags(ref, lambda tags: [t for t in tags if t != tag])

    def _edit_tags(self, ref, edit) -> Run:
        run = self.get_run(ref)
        with self.write() as c:
            (raw,) = c.execute("SELECT tags FROM runs WHERE id = ?", (run.id,)).fetchone()
            c.execute("UPDATE runs SET tags = ? WHERE id = ?", (json.dumps(edit(json.loads(raw or "[]"))), run.id))
        return self.get_run(run.id)

    def set_notes(self, ref: int | str, text: str, append: bool = False) -> Run:
        run = self.get_run(ref)
        with self.write() as c:
            if append and run.notes:
                text = run.notes.rstrip("\n") + "\n" + text
            c.execute("UPDATE runs SET notes = ? WHERE id = ?", (text, run.id))
        return self.get_run(run.id)

    # ---- metrics -------------------------------------------------------------------------

    def record(
        self,
        run_id: int,
        metrics: list[tuple[int, str, float, float]],
        progress: dict[str, Any] | None = None,
        heartbeat: bool = True,
    ) -> None:
        """A batch of metric rows ``(step, name, value, time)`` and the run's progress, in one
        transaction. Rows are keyed by (run, name, step): a step written twice keeps one row."""
        progress = dict(progress or {})
        with self.write() as c:
            if metrics:
                c.executemany(
                    "INSERT OR REPLACE INTO metrics (run, step, name, value, time) VALUES (?, ?, ?, ?, ?)",
                    [(run_id, int(s), n, float(v), float(t)) for s, n, v, t in metrics],
                )
            if heartbeat:
                progress["heartbeat"] = time.time()
            if progress:
                cols = ", ".join(f"{k} = ?" for k in progress)
                c.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*progress.values(), run_id))

    def metrics(self, ref: int | str, names: list[str] | None = None, since_step: int | None = None) -> list[dict]:
        run_id = self._id(ref)
        sql = "SELECT step, name, value, time FROM metrics WHERE run = ?"
        params: list[Any] = [run_id]
        if names:
            sql += f" AND name IN ({', '.join('?' * len(names))})"
            params += list(names)
        if since_step is not None:
            sql += " AND step > ?"
            params.append(since_step)
        return self._rows(sql + " ORDER BY step, name", tuple(params))

    def series(self, ref: int | str, name: str) -> tuple[list[int], list[float]]:
        rows = self.conn.execute(
            "SELECT step, value FROM metrics WHERE run = ? AND name = ? ORDER BY step", (self._id(ref), name)
        ).fetchall()
        return [r[0] for r in rows], [r[1] for r in rows]

    def latest_metrics(self, ref: int | str) -> dict[str, tuple[int, float]]:
        """The last value of every metric a run has: name -> (step, value). Quality figures
        come from its latest evaluation (``latest_eval`` has their protocol)."""
        latest = self._latest_training_metrics(ref)
        ev = self.latest_eval(ref)
        if ev is not None:
            latest.update({k: (ev["step"], v) for k, v in ev["figures"].items()})
        return latest

    def latest_values(self, ref: int | str, names: tuple[str, ...] | list[str]) -> dict[str, float]:
        """The last value of each of a few named metrics a run has. One primary-key lookup per
        name, whatever the run's length: the run screen asks at every poll."""
        run_id = self._id(ref)
        out = {}
        for name in names:
            row = self.conn.execute(
                "SELECT value FROM metrics WHERE run = ? AND name = ? ORDER BY step DESC LIMIT 1", (run_id, name)
            ).fetchone()
            if row is not None:
                out[name] = row[0]
        return out

    def _latest_training_metrics(self, ref: int | str) -> dict[str, tuple[int, float]]:
        rows = self.conn.execute(
            "SELECT m.name, m.step, m.value FROM metrics m JOIN"
            " (SELECT name, max(step) AS step FROM metrics WHERE run = ? GROUP BY name) last"
            " ON m.name = last.name AND m.step = last.step WHERE m.run = ?",
            (self._id(ref), self._id(ref)),
        ).fetchall()
        return {name: (step, value) for name, step, value in rows}

    def truncate_after(self, run_id: int, step: int) -> None:
        """Forget what a run recorded past ``step``: a resume from the checkpoint at ``step``
        replays those steps, so its curve continues with no gap and no duplicate."""
        with self.write() as c:
            c.execute("DELETE FROM metrics WHERE run = ? AND step > ?", (run_id, step))
            c.execute("DELETE FROM samples WHERE run = ? AND step > ?", (run_id, step))
            c.execute("DELETE FROM evals WHERE run = ? AND step > ?", (run_id, step))
            c.execute("DELETE FROM checkpoints WHERE run = ? AND step > ?", (run_id, step))
            c.execute("UPDATE runs SET step = ? WHERE id = ?", (step, run_id))

    def latest_figure_for_all(self, name: str) -> dict[int, tuple[float, str]]:
        """One figure of every run's latest evaluation that has it: run -> (value, protocol
        key), in one query (for tables of many runs)."""
        out: dict[int, tuple[float, str]] = {}
        cur = self.conn.execute(
            "SELECT run, figures, n, sampler, steps, eta, eta_window, guidance, seed FROM evals ORDER BY run, step DESC, id DESC"
        )
        cols = [c[0] for c in cur.description]
        for row in cur:
            if row[0] in out:
                continue  # newest first: this run's figure is found already
            figures = json.loads(row[1])
            if name in figures:
                out[row[0]] = (figures[name], Protocol.from_row(dict(zip(cols, row))).key)
        return out

    def latest_metric_for_all(self, name: str) -> dict[int, float]:
        """The last value of one metric for every run that has it, in one query (for tables
        of many runs)."""
        rows = self.conn.execute(
            "SELECT m.run, m.value FROM metrics m JOIN (SELECT run, max(step) AS step FROM metrics WHERE name = ?"
            " GROUP BY run) last ON m.run = last.run AND m.step = last.step WHERE m.name = ?",
            (name, name),
        )
        return {run: value for run, value in rows.fetchall()}

    # ---- evaluations ---------------------------------------------------------------------

    def add_eval(
        self,
        run_id: int,
        step: int,
        *,
        protocol: Protocol,
        figures: dict[str, float],
        floor: dict[str, float],
        seconds: float,
        detail: dict | None = None,
    ) -> None:
        """One evaluation: its figures, its floor and the protocol they were measured under;
        ``detail`` holds what is not one figure (a conditional run's accuracy per class)."""
        spec = protocol.spec
        with self.write() as c:
            c.execute(
                "INSERT INTO evals (run, step, n, sampler, steps, eta, eta_window, guidance, seed, figures, floor, seconds,"
                " time, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, int(step), int(protocol.n), spec.sampler, int(spec.steps), float(spec.eta),
                 float(spec.eta_window), spec.guidance, int(protocol.seed), json.dumps(figures), json.dumps(floor),
                 float(seconds), time.time(), json.dumps(detail) if detail else None),
            )  # fmt: skip

    def evals(self, ref: int | str) -> list[dict]:
        """A run's evaluations, oldest first; each row carries its ``protocol`` key."""
        return _decode_evals(self._rows("SELECT * FROM evals WHERE run = ? ORDER BY step, id", (self._id(ref),)))

    def all_evals(self) -> dict[int, list[dict]]:
        """Every run's evaluations in one query (tables of many runs), oldest first."""
        out: dict[int, list[dict]] = {}
        for r in _decode_evals(self._rows("SELECT * FROM evals ORDER BY run, step, id")):
            out.setdefault(r["run"], []).append(r)
        return out

    def latest_evals(self, study: str | None = None) -> dict[int, dict]:
        """Every run's latest evaluation (last by step, then by id) in one query: run -> its
        ``step``, ``figures`` and ``protocol`` key (``study``: that study's runs only). What
        queries over many runs read; ``floor`` and ``detail`` are left out."""
        where = " JOIN runs r ON r.id = e.run WHERE r.study = ?" if study is not None else ""
        rows = self._rows(
            "SELECT run, step, n, sampler, steps, eta, eta_window, guidance, seed, figures FROM (SELECT e.*, row_number() OVER"
            f" (PARTITION BY e.run ORDER BY e.step DESC, e.id DESC) AS k FROM evals e{where}) WHERE k = 1",
            (study,) if study is not None else (),
        )
        return {
            r["run"]: {"step": r["step"], "figures": json.loads(r["figures"]), "protocol": Protocol.from_row(r).key} for r in rows
        }

    def figure_series(self, ref: int | str, name: str) -> dict[str, tuple[list[int], list[float]]]:
        """One figure over a run's steps, one series per protocol: figures measured under
        different protocols are never one curve. Later evaluations at a step win."""
        series: dict[str, dict[int, float]] = {}
        for r in self.evals(ref):
            if name in r["figures"]:
                series.setdefault(r["protocol"], {})[r["step"]] = r["figures"][name]
        return {k: (sorted(v), [v[s] for s in sorted(v)]) for k, v in series.items()}

    def latest_eval(self, ref: int | str) -> dict | None:
        rows = self.evals(ref)
        return rows[-1] if rows else None

    # ---- samples ------------------------------------------------------------------------

    def add_samples(self, run_id: int, step: int, data: np.ndarray, spec: SamplingSpec, labels: list[int] | None = None) -> None:
        """A sample grid; ``labels`` is each image's class for a conditional run."""
        import numpy as np  # only sample blobs need numpy: listing runs stays light

        arr = np.ascontiguousarray(data)
        with self.write() as c:
            c.execute(
                "INSERT INTO samples (run, step, sampler, steps, eta, eta_window, guidance, labels, n, shape, dtype, data,"
                " time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, int(step), spec.sampler, int(spec.steps), float(spec.eta), float(spec.eta_window), spec.guidance,
                 json.dumps([int(v) for v in labels]) if labels is not None else None, int(arr.shape[0]),
                 json.dumps(list(arr.shape)), str(arr.dtype), arr.tobytes(), time.time()),
            )  # fmt: skip

    def latest_samples(self, ref: int | str) -> SampleRecord | None:
        rows = self._rows("SELECT * FROM samples WHERE run = ? ORDER BY step DESC, id DESC LIMIT 1", (self._id(ref),))
        return _to_samples(rows[0]) if rows else None

    def samples_at(self, ref: int | str, step: int) -> SampleRecord | None:
        """A run's grid from one training step (the newest if it drew several there), so runs
        can be compared on equal training without loading every grid they hold."""
        rows = self._rows("SELECT * FROM samples WHERE run = ? AND step = ? ORDER BY id DESC LIMIT 1", (self._id(ref), int(step)))
        return _to_samples(rows[0]) if rows else None

    def samples(self, ref: int | str) -> list[SampleRecord]:
        return [_to_samples(r) for r in self._rows("SELECT * FROM samples WHERE run = ? ORDER BY step, id", (self._id(ref),))]

    def samples_version(self, ref: int | str) -> tuple[int, int, int]:
        """(count, newest id, newest step) of a run's sample grids: changes whenever a grid is
        recorded or truncated away, so a poller reloads the blob only when there is a new one."""
        row = self.conn.execute(
            "SELECT count(*), coalesce(max(id), 0), coalesce(max(step), 0) FROM samples WHERE run = ?", (self._id(ref),)
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def sample_steps(self, ref: int | str) -> list[int]:
        rows = self.conn.execute("SELECT DISTINCT step FROM samples WHERE run = ? ORDER BY step", (self._id(ref),))
        return [r[0] for r in rows]

    # ---- checkpoints ---------------------------------------------------------------------

    def add_checkpoint(self, run_id: int, step: int, path: Path | str, nbytes: int, sha256: str, removed=()) -> None:
        with self.write() as c:
            c.execute(
                "INSERT OR REPLACE INTO checkpoints (run, step, path, bytes, sha256, time) VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, int(step), self._rel(path), int(nbytes), sha256, time.time()),
            )
            for p in removed:
                c.execute("DELETE FROM checkpoints WHERE run = ? AND path = ?", (run_id, self._rel(p)))

    def forget_checkpoint(self, run_id: int, step: int) -> None:
        """Drop a checkpoint's row (its file is unusable or gone)."""
        with self.write() as c:
            c.execute("DELETE FROM checkpoints WHERE run = ? AND step = ?", (run_id, int(step)))

    def checkpoints(self, ref: int | str) -> list[CheckpointRecord]:
        rows = self._rows("SELECT * FROM checkpoints WHERE run = ? ORDER BY step", (self._id(ref),))
        return [CheckpointRecord(**{**r, "path": str(self._abs(r["path"]))}) for r in rows]

    def runs_with_checkpoints(self) -> set[int]:
        """Ids of the runs with at least one checkpoint: the runs that can be sampled."""
        return {run for (run,) in self.conn.execute("SELECT DISTINCT run FROM checkpoints")}

    def checkpoint_at(self, ref: int | str, step: int | None = None) -> CheckpointRecord:
        """The checkpoint at ``step`` (the latest when None), with a clear error if none."""
        run = self.get_run(ref)
        ckpts = self.checkpoints(run.id)
        if not ckpts:
            raise StoreError(f"run {run.id} ({run.name}) has no checkpoint yet; let it train (or resume it) first")
        if step is None:
            return ckpts[-1]
        for c in ckpts:
            if c.step == step:
                return c
        have = ", ".join(str(c.step) for c in ckpts)
        raise StoreError(f"run {run.id} has no checkpoint at step {step}; it has: {have}")

    def _rel(self, path: Path | str) -> str:
        """Checkpoint paths are kept relative to the database's folder, so the database and
        its runs folder can be moved together."""
        p = Path(path)
        try:
            return str(p.resolve().relative_to(self.path.parent.resolve()))
        except ValueError:
            return str(p)

    def _abs(self, stored: str) -> Path:
        p = Path(stored)
        return p if p.is_absolute() else self.path.parent / p

    # ---- helpers -------------------------------------------------------------------------

    def _id(self, ref: int | str) -> int:
        if isinstance(ref, int):
            return ref
        return self.get_run(ref).id


def _decode_evals(rows: list[dict]) -> list[dict]:
    for r in rows:
        r["figures"], r["floor"] = json.loads(r["figures"]), json.loads(r["floor"])
        r["detail"] = json.loads(r["detail"]) if r.get("detail") else {}
        r["protocol"] = Protocol.from_row(r).key
    return rows


def _to_samples(row: dict) -> SampleRecord:
    import numpy as np

    shape = tuple(json.loads(row["shape"]))
    data = np.frombuffer(row["data"], dtype=np.dtype(row["dtype"])).reshape(shape)
    labels = json.loads(row["labels"]) if row.get("labels") else None
    return SampleRecord(row["run"], row["step"], row["sampler"], row["steps"], data, row["time"], row.get("eta"),
                        row.get("guidance"), labels, row.get("eta_window"))  # fmt: skip


def check_name(name: str) -> str:
    """Run names are for people and scripts: letters, digits and ``. _ + - / = , [ ]``, not
    all digits (so that a name never reads as another run's id), at most 200 characters. They
    never become paths (a run's folder is its id)."""
    if not NAME_RE.match(name) or name.isdigit():
        raise StoreError(
            f"run name {name!r} is not allowed; use 1-200 letters, digits, '.', '_', '+', '-', '/', '=', ',', '[' or ']', "
            "starting with a letter or digit and not all digits"
        )
    return name


def check_study(name: str) -> str:
    """Study names follow run names' rules (a study's runs are named ``STUDY/setting``), without
    the slash."""
    if not NAME_RE.match(name) or name.isdigit() or "/" in name or "=" in name or "," in name:
        raise StoreError(
            f"study name {name!r} is not allowed; use 1-64 letters, digits, '.', '_', '+' or '-', "
            "starting with a letter or digit and not all digits"
        )
    return name


def check_tag(tag: str) -> str:
    if not tag or len(tag) > 64 or any(ch.isspace() or ord(ch) < 32 for ch in tag) or "," in tag:
        raise StoreError(f"tag {tag!r} is not allowed; use 1-64 characters without spaces or commas")
    return tag
