"""The queue as tables: slots with their runs, the waiting list in order, runs left without a
scheduler. ``ddpm queue`` prints them; the dashboard's Queue screen shows the same rows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ddpm_tui.format import STATUS_STYLE, duration, number, progress

if TYPE_CHECKING:
    from core.scheduler import QueueState
    from core.store import Run


def slot_cells(slot: dict, run: Run | None) -> list[str]:
    """slot, run, name, status, progress, ETA, img/s."""
    if run is None:
        return [slot["slot"], "-", "[dim]free[/]", "", "", "", ""]
    st = STATUS_STYLE.get(run.status, "")
    eta = duration(run.seconds_left) if run.seconds_left is not None else "-"
    return [slot["slot"], str(run.id), run.name, f"[{st}]{run.status}[/]", progress(run.step, run.total_steps), eta,
            number(run.images_per_s and round(run.images_per_s))]  # fmt: skip


def waiting_cells(position: int, run: Run) -> list[str]:
    """#, run, name, study, priority, device asked, steps."""
    return [str(position), str(run.id), run.name, run.study or "-", str(run.priority), run.device_request, f"{run.total_steps:,}"]


SLOT_COLUMNS = ("slot", "run", "name", "status", "progress", "ETA", "img/s")
WAITING_COLUMNS = ("#", "run", "name", "study", "priority", "device", "steps")


def queue_tables(state: QueueState) -> list[Any]:
    """Rich renderables for ``ddpm queue``."""
    from rich.table import Table

    out: list[Any] = []
    if not state.schedulers:
        out.append("[yellow]no scheduler runs for this database[/]; start one with: ddpm queue start")
    for sched in state.schedulers:
        flag = {0: "", 1: " [yellow](stopping: takes no new runs)[/]", 2: " [yellow](stopping its runs)[/]"}.get(
            sched["stopping"], ""
        )
        out.append(f"[bold]scheduler[/] pid {sched['pid']} on {sched['host']}{flag}")
    if state.slots:
        t = Table(box=None, header_style="bold", pad_edge=False)
        for c in SLOT_COLUMNS:
            t.add_column(c, justify="right" if c in ("run", "ETA", "img/s") else "left")
        for slot, run in state.slots:
            t.add_row(*slot_cells(slot, run))
        out.append(t)
    if state.unattended:
        ids = " ".join(str(r.id) for r in state.unattended)
        out.append(f"[yellow]training without a scheduler: {ids}[/] (a new `ddpm queue start` adopts them)")
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
