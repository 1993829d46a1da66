"""Runs as rows for tables of many runs: fetched in a few queries, filtered and sorted by
:mod:`core.query`, flattened for export.

``ddpm ls --where/--sort``, ``ddpm export --all`` and the dashboard's runs filter share this,
so an expression finds the same runs and a run exports the same columns on every face. The
fetch costs one query for the runs, one for every run's latest evaluation, and one per
training metric an expression names; never one per run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core import query
from core.config import FIELDS
from core.sysinfo import NAMES as SYSTEM_METRICS
from ddpm_tui.figures import FIGURE_HELP, TRAINING_METRICS

if TYPE_CHECKING:
    from core.store import Run, Store

METRIC_KEYS = tuple(dict.fromkeys((*TRAINING_METRICS, *SYSTEM_METRICS)))
# Export's columns: who the run is, then every config field, then how it ended.
LEAD_COLUMNS = ("id", "name", "study", "status", "preset", "device", "tags", "step", "total_steps", "created")
FINAL_COLUMNS = ("last_loss", "images_per_s", "elapsed_s", "n_params", "eval_step", "eval_protocol")


@dataclass
class RunQuery:
    """A bound ``--where`` / ``--sort``: the filters, the sort key and the keys they know."""

    filters: list[query.Filter]
    sort: query.SortKey | None
    kinds: dict[str, str]

    @property
    def metrics(self) -> list[str]:
        """The training metrics it names that no run, config or figure key shadows: only these
        are fetched."""
        shadow = set(query.key_kinds(FIGURE_HELP))
        return [k for k in query.keys_used(self.filters, self.sort) if k in METRIC_KEYS and k not in shadow]


def kinds_for(evals: dict[int, dict]) -> dict[str, str]:
    """Every key a query may name, given the evaluations there are: the known figures and
    any other figure a run was judged by."""
    seen = dict.fromkeys(FIGURE_HELP)
    for ev in evals.values():
        seen.update(dict.fromkeys(ev["figures"]))
    return query.key_kinds(seen, METRIC_KEYS)


def bind(where: list[str], sort: str | None, evals: dict[int, dict], source: str = "--where") -> RunQuery:
    """Parse and check expressions and a sort key against the keys there are."""
    kinds = kinds_for(evals)
    filters = query.compile_where(where, kinds, source)
    key = query.parse_sort(sort) if sort else None
    if key is not None:
        query.check_key(key.key, kinds, "--sort", sort or "")
    return RunQuery(filters, key, kinds)


def judged_candidates(q: RunQuery, evals: dict[int, dict]) -> set[int] | None:
    """The runs that pass every filter on an evaluation's figures, read from the evaluations
    alone, so that no other run need be fetched and decoded; None when no filter is on a
    figure. A run never judged has no figure and matches no such filter."""
    on_figures = [
        f for f in q.filters if f.key not in query.CONFIG_KINDS and f.key not in query.RUN_FIELDS and f.key not in METRIC_KEYS
    ]
    if not on_figures:
        return None
    out = set()
    for rid, ev in evals.items():
        judged = query.RunFacts(None, figures=ev["figures"], eval_step=ev["step"], eval_protocol=ev["protocol"])
        if all(f(judged) for f in on_figures):
            out.add(rid)
    return out


def facts(store: Store, runs: list[Run], evals: dict[int, dict], metrics: list[str] = ()) -> list[query.RunFacts]:
    """Each run with its latest evaluation and the named metrics' last values (one query
    per metric, for all runs)."""
    values = {m: store.latest_metric_for_all(m) for m in metrics}
    out = []
    for r in runs:
        ev = evals.get(r.id)
        f = query.RunFacts(r, metrics={m: v[r.id] for m, v in values.items() if r.id in v})
        if ev is not None:
            f.figures, f.eval_step, f.eval_protocol = ev["figures"], ev["step"], ev["protocol"]
        out.append(f)
    return out


def apply(q: RunQuery, items: list[query.RunFacts], limit: int | None = None) -> list[query.RunFacts]:
    """Filtered, sorted, the first ``limit``."""
    items = query.select(items, q.filters)
    if q.sort is not None:
        items = query.sort_facts(items, q.sort, q.kinds)
    return items[:limit] if limit is not None else items


def export_columns(items: list[query.RunFacts]) -> list[str]:
    """Export's columns: the run, every config field, how it ended, then every figure any of
    the runs has (the known ones first, in their usual order)."""
    figures = dict.fromkeys(k for k in FIGURE_HELP if any(k in f.figures for f in items))
    for f in items:
        figures.update(dict.fromkeys(f.figures))
    cols = list(LEAD_COLUMNS)
    cols += [c for c in FIELDS if c not in cols]
    cols += [c for c in FINAL_COLUMNS if c not in cols]
    cols += [c for c in figures if c not in cols]
    return cols


def export_rows(items: list[query.RunFacts]) -> tuple[list[str], list[dict]]:
    """One flat record per run, ready for a CSV writer or ``pandas.DataFrame``."""
    cols = export_columns(items)
    rows = [query.row(f, cols) for f in items]
    for r in rows:  # a diverged run's NaN loss would make the JSON invalid
        for k, v in r.items():
            if isinstance(v, float) and not math.isfinite(v):
                r[k] = None
    return cols, rows
