"""The queue as tables: slots with their runs, the waiting list in order, runs left without a
scheduler. ``ddpm queue`` prints them; the dashboard's Queue screen shows the same rows.

Cells are Rich markup; names are escaped, since a study's run names hold brackets
(``s/channel_mult=[1,2]``) that could otherwise read as markup."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape

from ddpm_tui.format import STATUS_STYLE, device_label, duration, number, progress

if TYPE_CHECKING:
    from core.scheduler import QueueState
    from core.store import Run


def slot_cells(slot: dict, run: Run | None) -> list[str]:
    """slot, run, name, status, progress, ETA, img/s."""
    if run is None:
        return [slot["slot"], "-", "[dim]free[/]", "", "", "", ""]
    st = STATUS_STYLE.get(run.status, "")
    eta = duration(run.seconds_left) if run.seconds_left is not None else "-"
    return [slot["slot"], str(run.id), escape(run.name), f"[{st}]{run.status}[/]", progress(run.step, run.total_steps), eta,
            number(run.images_per_s and round(run.images_per_s))]  # fmt: skip


def waiting_cells(position: int, run: Run) -> list[str]:
    """#, run, name, study, priority, device asked, steps."""
    return [str(position), str(run.id), escape(run.name), escape(run.study or "-"), str(run.priority), run.device_request,
            f"{run.total_steps:,}"]  # fmt: skip


SLOT_COLUMNS = ("slot", "run", "name", "status", "progress", "ETA", "img/s")
WAITING_COLUMNS = ("#", "run", "name", "study", "priority", "device", "steps")


def scheduler_line(sched: dict) -> str:
    """``scheduler pid 412 on gpu-box, 4 slots`` and whether it is stopping."""
    flag = {1: " [yellow](stopping: takes no new runs)[/]", 2: " [yellow](stopping its runs)[/]"}.get(sched["stopping"], "")
    n = len(sched["slots"])
    return f"[bold]scheduler[/] pid {sched['pid']} on {sched['host']}, {n} slot{'s' if n != 1 else ''}{flag}"


def unattended_line(runs: list[Run]) -> str:
    """Queue runs whose worker trains on after its scheduler died: a new scheduler adopts them."""
    return "[yellow]training without a scheduler: " + " ".join(f"{r.id} ({device_label(r)})" for r in runs) + "[/]"


def queue_tables(state: QueueState) -> list[Any]:
    """Rich renderables for ``ddpm queue``."""
    from rich.table import Table

    out: list[Any] = []
    if not state.schedulers:
        out.append("[yellow]no scheduler runs for this database[/]; start one with: ddpm queue start")
    out += [scheduler_line(sched) for sched in state.schedulers]
    if state.slots:
        t = Table(box=None, header_style="bold", pad_edge=False)
        for c in SLOT_COLUMNS:
            t.add_column(c, justify="right" if c in ("run", "ETA", "img/s") else "left")
        for slot, run in state.slots:
            t.add_row(*slot_cells(slot, run))
        out.append(t)
    if state.unattended:
        out.append(unattended_line(state.unattended) + " (a new `ddpm queue start` adopts them)")
    if state.waiting:
        out.append(f"[bold]waiting[/] ({len(state.waiting)}, taken in this order)")
        t = Table(box=None, header_style="bold", pad_edge=False)
        for c in WAITING_COLUMNS:
            t.add_column(c, justify="right" if c in ("#", "run", "priority", "steps") else "left")
        for i, run in enumerate(state.waiting, 1):
            t.add_row(*waiting_cells(i, run))
        out.append(t)
    else:
        out.append("[dim]nothing waiting[/]")
    return out
