"""A run's figures as both faces show them: which metrics a run ends with, what each quality
figure means, which way is better, how a figure is written, and runs ranked by one.

``ddpm compare``, ``ddpm show``, ``ddpm eval`` and the dashboard's compare screen all read
these, so a run reads the same in the terminal and in the dashboard. Light on purpose: no
torch, no Typer, and Rich only when a table is drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.ranking import LOWER_IS_BETTER  # re-exported: the one list, kept in core for core.study
from ddpm_tui.format import duration

if TYPE_CHECKING:
    from core.store import Run, Store

FIGURE_HELP = {
    "fid": "Frechet distance of judge features to the test split; lower is better",
    "kid": "kernel distance (unbiased, can dip below 0); lower is better",
    "kid_std": "spread of KID over random subsets",
    "confident": "share the judge reads with max softmax > 0.9; higher is better",
    "class_entropy": "coverage of the ten classes: 1 = all equally, 0 = one class",
    "class_accuracy": "share the judge reads, confidently, as the class asked for; higher is better",
    "class_accuracy_min": "the worst class's class accuracy",
    "curve_distance": "mean distance of samples to the S-curve; lower is better",
    "swd": "sliced Wasserstein distance to fresh curve points (sequences: to held-out ones); lower is better",
    "freq_w1": "Wasserstein distance of fitted frequencies to held-out sines' (cycles); lower is better",
    "amp_w1": "Wasserstein distance of fitted amplitudes to held-out sines'; lower is better",
}
PERCENTAGES = {"confident", "class_accuracy", "class_accuracy_min"}


def figure(name: str, v: float | None) -> str:
    if v is None:
        return "-"
    if name in PERCENTAGES:
        return f"{v:.1%}"
    if name in ("fid",):
        return f"{v:.2f}"
    return f"{v:.4f}"


def figures_table(figures: dict, floor: dict, n: int):
    """Figures beside the floor (the same figures for n real examples)."""
    from rich.table import Table

    t = Table(box=None, header_style="bold", pad_edge=False)
    t.add_column("figure")
    t.add_column("samples", justify="right")
    t.add_column(f"floor ({n:,} real)", justify="right")
    t.add_column("", style="dim")
    for k, v in figures.items():
        t.add_row(k, figure(k, v), figure(k, floor.get(k)), FIGURE_HELP.get(k, ""))
    return t


TRAINING_METRICS = ("loss", "lr", "grad_norm", "images_per_s", "elapsed_s")


def final_metrics(store: Store, runs: list[Run]) -> tuple[dict[int, dict[str, Any]], str | None]:
    """Each run's final figures, and the protocol its quality figures were all measured
    under: the one most of the runs were evaluated with (see ``shared_protocol``). A run not
    evaluated under it shows no quality figures rather than figures of another protocol."""
    from core.sampling_spec import latest_under, shared_protocol

    evals = {r.id: store.evals(r.id) for r in runs}
    protocol = shared_protocol(evals)
    out: dict[int, dict[str, Any]] = {}
    for run in runs:
        row: dict[str, Any] = {
            "status": run.status,
            "step": run.step,
            "loss": run.last_loss,
            "images/s": round(run.images_per_s) if run.images_per_s else None,
            "trained": duration(run.elapsed_s) if run.elapsed_s else "-",
            "parameters": run.n_params,
        }
        ev = latest_under(evals[run.id], protocol)
        if ev is not None:
            row["figures at step"] = ev["step"]
            row.update(ev["figures"])
        out[run.id] = row
    return out, protocol


def metrics_table(runs: list[Run], finals: dict[int, dict], **table_options):
    """Runs in columns, a row for every metric any of them has (in the order they first
    appear), statuses in their colours. ``table_options`` go to :class:`rich.table.Table`."""
    from rich.table import Table
    from rich.text import Text

    from ddpm_tui.format import STATUS_STYLE, number

    t = Table(box=None, header_style="bold", **table_options)
    t.add_column("")
    for r in runs:
        t.add_column(f"{r.id} {r.name}", justify="right")
    names: list[str] = []
    for f in finals.values():
        names += [k for k in f if k not in names]
    for k in names:
        cells = [finals[r.id].get(k) for r in runs]
        if k == "status":
            row = [Text(str(c), style=STATUS_STYLE.get(str(c), "")) for c in cells]
        else:
            row = [Text(number(c) if not isinstance(c, str) else c) for c in cells]
        t.add_row(k, *row)
    return t


def ranked(rs: list[Run], finals: dict[int, dict], metric: str) -> list[Run]:
    """Best first; runs without the metric last."""
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0

    def key(r: Run):
        v = finals[r.id].get(metric)
        return (0, sign * v) if isinstance(v, (int, float)) else (1, 0.0)

    return sorted(rs, key=key)
