"""A study as rows of cells: ``ddpm study`` prints them and the Study screen shows them, so a
setting reads the same in both (as :mod:`ddpm_tui.queue_view` does for the queue).

The numbers come from :mod:`core.study`; this only writes them: ``12.10 ± 1.41`` for a figure
over seeds (``n=2`` after it when fewer runs than the setting has were judged), the best
setting starred, the status counts in their colours. Rich markup, no Textual, no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.ranking import direction
from core.study import QUALITY, SPEED, Setting, Stat, Study, chart_keys, value_text
from ddpm_tui.figures import figure
from ddpm_tui.format import STATUS_STYLE, duration, number

if TYPE_CHECKING:
    from core.store import SampleRecord

HEADINGS = {"images_per_s": "img/s", "elapsed_s": "time", "class_entropy": "entropy", "class_accuracy": "class acc"}
BEST = "\u2605"  # the best setting's mark


def heading(name: str) -> str:
    return HEADINGS.get(name, name)


def value_cell(name: str, v: float | None) -> str:
    if v is None:
        return "-"
    if name == "images_per_s":
        return number(round(v))
    if name == "elapsed_s":
        return duration(v)
    return figure(name, v)


def spans(values: list) -> str:
    """``1-3,7``: runs ids or seeds, consecutive ones as a span (ten seeds stay one cell)."""
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return " ".join(value_text(v) for v in values)
    runs: list[list[int]] = []
    for v in sorted(values):
        if runs and v == runs[-1][-1] + 1:
            runs[-1].append(v)
        else:
            runs.append([v])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def stat_cell(name: str, st: Stat | None, runs: int, spread: bool = True) -> str:
    """``12.10 ± 1.41``; ``0.1200`` for one run; ``n=2`` added when some runs lack it.
    ``spread=False`` for img/s and time, where the mean is what a reader wants."""
    if st is None:
        return "-"
    text = value_cell(name, st.mean)
    if spread and st.std is not None:
        text += f" \u00b1 {value_cell(name, st.std)}"
    if st.n < runs:
        text += f" [dim]n={st.n}[/]"
    return text


def expected(s: Setting, name: str) -> int:
    """How many of a setting's runs could have the figure: the judged ones for a quality
    figure (the unjudged are named under the table once, not in every cell), all for the rest."""
    return len(s.runs) - len(s.unjudged) if name in QUALITY else len(s.runs)


def steps_cell(s: Setting) -> str:
    """``2,000/2,000`` when the runs are level; ``800-2,000/2,000`` while they train."""
    steps = [r.step for r in s.runs]
    totals = {r.total_steps for r in s.runs}
    done = f"{min(steps):,}" if min(steps) == max(steps) else f"{min(steps):,}-{max(steps):,}"
    return done + (f"/{totals.pop():,}" if len(totals) == 1 else "")


def status_cell(counts: dict[str, int]) -> str:
    """``[green]3 completed[/] [bold cyan]1 running[/]``."""
    return " ".join(f"[{STATUS_STYLE.get(k, '')}]{n} {k}[/]" for k, n in counts.items())


def columns(study: Study) -> list[str]:
    """The table's headings: place, mark, the swept keys, runs, seeds, steps, figures."""
    return ["#", "", *study.swept, "runs", "seeds", "steps", *(heading(f) for f in study.figures)]


def setting_cells(study: Study, s: Setting, place: int | None) -> list[str]:
    """One row of the table, in :func:`columns`' order; the rank figure's cell in bold."""
    cells = [str(place) if place is not None else "", f"[bold yellow]{BEST}[/]" if s.best else ""]
    cells += [value_text(s.values[k]) for k in study.swept]
    cells += [spans([r.id for r in s.runs]), spans(s.seeds), steps_cell(s)]
    for f in study.figures:
        cell = stat_cell(f, s.figure(f), expected(s, f), spread=f not in SPEED)
        cells.append(f"[bold]{cell}[/]" if f == study.rank and cell != "-" else cell)
    return cells


def rows(study: Study) -> list[tuple[Setting, list[str]]]:
    places = {id(s): i + 1 for i, s in enumerate(study.ranked)}
    return [(s, setting_cells(study, s, places.get(id(s)))) for s in study.settings]


def caption(study: Study) -> list[str]:
    """The lines under the heading: what is swept, how it is ranked, under which protocol, and
    which runs have no figures under it."""
    n = len(study.runs)
    keys = ", ".join(study.swept) if study.swept else "nothing (every run has the same config but its seed)"
    k = len(study.settings)
    lines = [f"{n} run{'s' if n != 1 else ''} in {k} setting{'s' if k != 1 else ''}  {status_cell(study.status)}",
             f"swept: {keys}"]  # fmt: skip
    if study.rank is not None:
        lines.append(f"ranked by {study.rank} ({direction(study.rank)} is better), mean \u00b1 std over each setting's runs")
    if study.protocol is not None:
        lines.append(f"quality figures: {study.protocol}, the protocol most of its runs were judged under")
    if study.unjudged:
        ids = " ".join(map(str, study.unjudged))
        lines.append(
            f"[yellow]no figures under that protocol: runs {ids}[/] (ddpm eval RUN with the same --sampler, --steps and --n)"
        )
    return lines


def drawn_keys(study: Study) -> list[str]:
    """The swept keys charted under the table: every numeric one, else the first key."""
    keys = chart_keys(study)
    numeric = [k for k in keys if chart_is_numeric(study, k)]
    return numeric or keys[:1]


def chart_is_numeric(study: Study, key: str) -> bool:
    from core.study import is_number

    vals = [s.values[key] for s in study.settings if s.values[key] is not None]
    return bool(vals) and all(is_number(v) for v in vals)


def extreme_title(which: str, s: Setting, study: Study, grid: SampleRecord | None) -> str:
    """``best  lr=0.002  fid 12.10 ± 1.41  run 4, step 2,000``: a best or worst setting over
    its digits."""
    st = s.figure(study.rank) if study.rank else None
    text = f"[bold]{which}[/]  {s.label}"
    if st is not None and study.rank is not None:
        text += f"  {study.rank} {stat_cell(study.rank, st, expected(s, study.rank))}"
    return text + (f"  [dim]run {grid.run}, step {grid.step:,}[/]" if grid is not None else "  [dim]no samples yet[/]")
