"""Which setting wins: a study's runs grouped into settings, their figures over seeds, ranked.

A study is the runs ``ddpm sweep --name S`` recorded (and any later sweep into the same name).
Its *swept keys* are the config fields whose values differ among its runs, the seed apart: they
are read from the configs, not from the names, so a renamed run, a second sweep that varied
another key over part of the study, or an older run whose config lacks a field (its value is
None) all land in the right setting. A *setting* is the runs that share the values of every
swept key; its seeds are replicates.

Each figure of a setting is the mean and sample standard deviation over its runs: the final
loss, the quality figures of each run's latest evaluation under the study's shared protocol
(:func:`core.sampling_spec.shared_protocol`: the one most of its runs were judged under, so a
table never mixes FIDs of different samplers or sample counts; runs not judged under it are
named, not silently averaged in), and img/s and wall time. Settings are ranked by one figure,
lower or higher better as :mod:`core.ranking` says; non-finite values (a diverged run's loss)
are left out of a mean rather than poisoning it.

``ddpm study`` and the dashboard's Study screen both read :func:`load_study`; the charts of a
figure against a swept key come from :func:`chart_data`. Pure and free of torch: the store is
read in a few queries whatever the study's size.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.config import RunConfig
from core.errors import DDPMError
from core.ranking import direction, lower_is_better
from core.sampling_spec import latest_under, shared_protocol

if TYPE_CHECKING:
    from core.store import Run, SampleRecord, Store

# The figures a study table shows, in this order, where any run has them.
QUALITY = ("fid", "kid", "confident", "class_entropy", "class_accuracy", "curve_distance", "swd")
SPEED = ("images_per_s", "elapsed_s")
FIGURES = ("loss", *QUALITY, *SPEED)
# What a study is ranked by when not asked: the first of these any run has.
DEFAULT_RANK = ("fid", "swd", "curve_distance", "kid", "class_accuracy", "confident", "loss")


class StudyError(DDPMError):
    """A study or figure that is not there; the message lists what is."""


def status_counts(runs) -> dict[str, int]:
    """How many runs are in each status, in the order first met."""
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    return counts


@dataclass(frozen=True)
class Stat:
    """A figure over a setting's runs: mean, sample standard deviation (None for one run)."""

    mean: float
    std: float | None
    n: int

    def to_json(self) -> dict:
        return {"mean": self.mean, "std": self.std, "n": self.n}


def stat(values: list[float]) -> Stat | None:
    """Mean and sample standard deviation of the finite values; None when there are none."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None
    return Stat(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else None, len(vals))


def canonical(v: Any) -> str:
    """One text per value, so that a tuple field read back from JSON as a list, and 1 and 1.0,
    group together."""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, tuple):
        v = list(v)
    return json.dumps(v, sort_keys=True)


def value_text(v: Any) -> str:
    """A swept value as ``ddpm sweep --set`` takes it: ``2e-3``-style floats, tuples in
    brackets (``[1,2]``), ``-`` for a run whose config lacks the field."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(value_text(x) for x in v) + "]"
    return str(v)


def swept_keys(configs: list[dict]) -> list[str]:
    """Config fields whose values are not all equal, the seed apart, in RunConfig's field
    order (the store keeps configs with sorted keys; data, model, diffusion, optimisation
    read better). A field some configs lack counts as None there, so it is swept when the
    others have a value."""
    order = {f.name: i for i, f in enumerate(dataclasses.fields(RunConfig))}
    keys: list[str] = []
    for c in configs:
        keys += [k for k in c if k not in keys and k != "seed"]
    keys.sort(key=lambda k: (order.get(k, len(order)), k))
    return [k for k in keys if len({canonical(c.get(k)) for c in configs}) > 1]


@dataclass
class Setting:
    """The runs that share the values of every swept key."""

    values: dict[str, Any]  # swept key -> its value (None: the runs' configs lack the field)
    runs: list[Run]
    per_run: dict[str, dict[int, float]] = field(default_factory=dict)  # figure -> run id -> finite value
    unjudged: list[int] = field(default_factory=list)  # runs with no evaluation under the protocol
    best: bool = False

    @property
    def label(self) -> str:
        """``lr=2e-3,objective=v``: as the sweep named its runs (less the seed)."""
        return ",".join(f"{k}={value_text(v)}" for k, v in self.values.items()) or "all runs"

    @property
    def seeds(self) -> list[Any]:
        return [r.config.get("seed") for r in self.runs]

    @property
    def status(self) -> dict[str, int]:
        return status_counts(self.runs)

    def figure(self, name: str) -> Stat | None:
        return stat(list(self.per_run.get(name, {}).values()))

    @property
    def figures(self) -> dict[str, Stat]:
        out = {}
        for name in FIGURES:
            s = self.figure(name)
            if s is not None:
                out[name] = s
        return out

    def to_json(self) -> dict:
        return {
            "values": self.values,
            "label": self.label,
            "runs": [r.id for r in self.runs],
            "seeds": self.seeds,
            "status": self.status,
            "steps": [r.step for r in self.runs],
            "total_steps": [r.total_steps for r in self.runs],
            "figures": {k: s.to_json() for k, s in self.figures.items()},
            "unjudged": self.unjudged,
            "best": self.best,
        }


@dataclass
class Study:
    """One study's settings, ranked best first by ``rank`` (settings without it last)."""

    name: str
    runs: list[Run]
    swept: list[str]
    settings: list[Setting]
    protocol: str | None  # the quality figures' protocol key; None when no run is judged
    rank: str | None  # the figure the settings are ranked by; None when no run has one
    figures: list[str]  # the figures some setting has, in table order

    @property
    def ranked(self) -> list[Setting]:
        """The settings that have the rank figure, best first."""
        return [s for s in self.settings if self.rank is not None and s.figure(self.rank) is not None]

    @property
    def best(self) -> Setting | None:
        ranked = self.ranked
        return ranked[0] if ranked else None

    @property
    def worst(self) -> Setting | None:
        ranked = self.ranked
        return ranked[-1] if len(ranked) > 1 else None

    @property
    def unjudged(self) -> list[int]:
        return [rid for s in self.settings for rid in s.unjudged]

    @property
    def status(self) -> dict[str, int]:
        return status_counts(self.runs)

    def to_json(self) -> dict:
        """``ddpm study NAME --json``: the study, its swept keys and its settings, ranked."""
        return {
            "study": self.name,
            "protocol": self.protocol,
            "swept": self.swept,
            "rank": self.rank,
            "better": direction(self.rank) if self.rank else None,
            "figures": self.figures,
            "unjudged": self.unjudged,
            "settings": [s.to_json() for s in self.settings],
        }

    def summary_json(self) -> dict:
        """One study of ``ddpm study --json``: its size, progress and best setting."""
        best = self.best
        return {
            "study": self.name,
            "runs": len(self.runs),
            "status": self.status,
            "settings": len(self.settings),
            "swept": self.swept,
            "rank": self.rank,
            "protocol": self.protocol,
            "best": None
            if best is None or self.rank is None
            else {"values": best.values, "label": best.label, self.rank: best.figure(self.rank).to_json()},  # type: ignore[union-attr]
        }

    def csv_header(self) -> list[str]:
        cols = ["rank", "best", *self.swept, "runs", "seeds", "status", "step", "total_steps"]
        for f in self.figures:
            cols += [f"{f}_mean", f"{f}_std", f"{f}_n"]
        return [*cols, "unjudged"]

    def csv_rows(self) -> list[list[Any]]:
        """``ddpm study NAME --csv``: the rows of :meth:`to_json`'s settings, flat. ``rank`` is
        the place (1 best), blank for a setting without the rank figure."""
        ranked = {id(s): i + 1 for i, s in enumerate(self.ranked)}
        rows = []
        for s in self.settings:
            row: list[Any] = [ranked.get(id(s), ""), int(s.best)]
            row += [value_text(s.values[k]) for k in self.swept]
            row += [" ".join(str(r.id) for r in s.runs), " ".join(str(x) for x in s.seeds)]
            row += [" ".join(f"{k}={n}" for k, n in s.status.items())]
            row += [" ".join(str(r.step) for r in s.runs), " ".join(str(r.total_steps) for r in s.runs)]
            for f in self.figures:
                st = s.figure(f)
                row += ["", "", 0] if st is None else [st.mean, "" if st.std is None else st.std, st.n]
            rows.append([*row, " ".join(map(str, s.unjudged))])
        return rows


# ---- building a study ---------------------------------------------------------------------


def group(runs: list[Run], swept: list[str]) -> list[Setting]:
    """The runs by the values of the swept keys, settings in the order their first run came."""
    settings: dict[tuple[str, ...], Setting] = {}
    for r in runs:
        key = tuple(canonical(r.config.get(k)) for k in swept)
        if key not in settings:
            settings[key] = Setting({k: r.config.get(k) for k in swept}, [])
        settings[key].runs.append(r)
    return list(settings.values())


def run_figures(run: Run, evals: list[dict], protocol: str | None) -> dict[str, float] | None:
    """A run's figures: its final loss, img/s and wall time, and the quality figures of its
    latest evaluation under ``protocol``. None for the quality part when it has none there
    (the caller names such runs)."""
    out: dict[str, float] = {}
    for name, v in (("loss", run.last_loss), ("images_per_s", run.images_per_s), ("elapsed_s", run.elapsed_s or None)):
        if v is not None and math.isfinite(v):
            out[name] = float(v)
    ev = latest_under(evals, protocol) if protocol is not None else None
    if ev is None:
        return None if protocol is not None else out
    for name in QUALITY:
        v = ev["figures"].get(name)
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[name] = float(v)
    return out


def summarise(name: str, runs: list[Run], evals: dict[int, list[dict]], rank: str | None = None) -> Study:
    """A study from its runs (oldest first) and their evaluations, ranked by ``rank`` (the
    first of :data:`DEFAULT_RANK` some run has when None). An asked-for figure no run has is a
    :class:`StudyError` that lists the figures there are."""
    swept = swept_keys([r.config for r in runs])
    settings = group(runs, swept)
    protocol = shared_protocol({r.id: evals.get(r.id, []) for r in runs})
    for s in settings:
        for r in s.runs:
            figs = run_figures(r, evals.get(r.id, []), protocol)
            if figs is None:
                s.unjudged.append(r.id)
                figs = run_figures(r, [], None) or {}
            for k, v in figs.items():
                s.per_run.setdefault(k, {})[r.id] = v
    present = [f for f in FIGURES if any(f in s.per_run for s in settings)]
    if rank is None:
        rank = next((f for f in DEFAULT_RANK if f in present), None)
    elif rank not in present:
        have = ", ".join(present) or "none yet"
        raise StudyError(f"no run of study {name!r} has the figure {rank!r} to rank by; it has: {have}")
    study = Study(name, runs, swept, settings, protocol, rank, present)
    study.settings = rank_settings(settings, rank)
    if study.best is not None:
        study.best.best = True
    return study


def rank_settings(settings: list[Setting], rank: str | None) -> list[Setting]:
    """Best first by the mean of ``rank`` (lower or higher better as :mod:`core.ranking`
    says), ties and settings without it in their grid order, the latter last."""
    if rank is None:
        return list(settings)
    sign = 1.0 if lower_is_better(rank) else -1.0

    def key(item: tuple[int, Setting]) -> tuple:
        i, s = item
        st = s.figure(rank)
        return (0, sign * st.mean, i) if st is not None else (1, 0.0, i)

    return [s for _, s in sorted(enumerate(settings), key=key)]


def unknown(store: Store, name: str) -> StudyError:
    known = store.studies()
    if not known:
        return StudyError(f"no study {name!r}; there are no studies yet (record one with ddpm sweep --name NAME)")
    return StudyError(f"no study {name!r}; studies: {', '.join(known)}")


def load_study(store: Store, name: str, rank: str | None = None) -> Study:
    """One study as its table shows it: three queries, whatever its number of runs."""
    runs = store.study_runs(name)
    if not runs:
        raise unknown(store, name)
    return summarise(name, runs, store.study_evals(name), rank)


def list_studies(store: Store, rank: str | None = None) -> list[Study]:
    """Every study, A to Z, each ranked by ``rank`` where it has that figure (else by its own
    default). Two queries for all of them."""
    runs = store.study_runs()
    evals = store.study_evals()
    by_study: dict[str, list[Run]] = {}
    for r in runs:
        by_study.setdefault(str(r.study), []).append(r)
    out = []
    for name in sorted(by_study):
        rs = by_study[name]
        mine = {r.id: evals[r.id] for r in rs if r.id in evals}
        try:
            out.append(summarise(name, rs, mine, rank))
        except StudyError:
            out.append(summarise(name, rs, mine, None))
    return out


def extreme_samples(store: Store, study: Study) -> list[tuple[str, Setting, SampleRecord | None]]:
    """The best and the worst setting (by the rank figure) with the latest sample grid of
    their first run that has one: what a study shows beside its table."""
    out = []
    for which, s in (("best", study.best), ("worst", study.worst)):
        if s is None:
            continue
        grid = None
        for r in s.runs:
            grid = store.latest_samples(r.id)
            if grid is not None:
                break
        out.append((which, s, grid))
    return out


# ---- charts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    x: Any  # the swept value
    stat: Stat  # the figure over every run with that value (and the line's)


@dataclass(frozen=True)
class Line:
    label: str | None  # ``objective=v``; None when the chart has one line
    points: list[Point]


@dataclass(frozen=True)
class ChartData:
    """The rank figure against one swept key: one line per value of a second swept key."""

    figure: str
    key: str
    by: str | None  # the key whose values are the lines
    pooled: list[str]  # other swept keys, averaged over
    numeric: bool  # x is a number (else the values are categories, in the study's order)
    log_x: bool  # the values span a decade or more
    xs: list[Any]  # every x value, in order
    lines: list[Line]

    @property
    def title(self) -> str:
        """``fid by lr (lower is better), a line per objective``: short enough for a chart
        beside the digits (plotext drops a title wider than its plot)."""
        text = f"{self.figure} by {self.key} ({direction(self.figure)} is better)"
        if self.by:
            text += f", a line per {self.by}"
        if self.pooled:
            text += f", over all {', '.join(self.pooled)}"
        return text


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def chart_keys(study: Study) -> list[str]:
    """The swept keys a chart can put on its x axis: the numeric ones first."""
    numeric = [k for k in study.swept if all(is_number(s.values[k]) for s in study.settings if s.values[k] is not None)]
    return numeric + [k for k in study.swept if k not in numeric]


def chart_data(study: Study, key: str, figure: str | None = None) -> ChartData | None:
    """``figure`` (default the rank figure) against swept ``key``: for each value of ``key``
    (and of the next swept key, one line each), the mean and spread over every run with those
    values, pooling seeds and any further swept keys. None when nothing can be drawn."""
    figure = figure or study.rank
    if figure is None or key not in study.swept:
        return None
    by = next((k for k in study.swept if k != key), None)
    pooled = [k for k in study.swept if k not in (key, by)]
    settings = [s for s in study.settings if s.values[key] is not None]
    values = {canonical(s.values[key]): s.values[key] for s in group_order(study, key)}
    xs = list(values.values())
    numeric = bool(xs) and all(is_number(x) for x in xs)
    if numeric:
        xs.sort()
    log_x = numeric and min(xs) > 0 and max(xs) / min(xs) >= 10
    lines = []
    line_values = {canonical(s.values[by]): s.values[by] for s in group_order(study, by)} if by else {"": None}
    for lk, lv in line_values.items():
        points = []
        for x in xs:
            vals = [
                v
                for s in settings
                if canonical(s.values[key]) == canonical(x) and (by is None or canonical(s.values[by]) == lk)
                for v in s.per_run.get(figure, {}).values()
            ]
            st = stat(vals)
            if st is not None:
                points.append(Point(x, st))
        if points:
            lines.append(Line(f"{by}={value_text(lv)}" if by else None, points))
    if not lines:
        return None
    return ChartData(figure, key, by, pooled, numeric, log_x, xs, lines)


def group_order(study: Study, key: str) -> list[Setting]:
    """The settings in the order their runs were recorded (the sweep's grid order), for the
    order of a key's values."""
    first = {id(s): min(r.id for r in s.runs) for s in study.settings}
    return sorted(study.settings, key=lambda s: first[id(s)])
