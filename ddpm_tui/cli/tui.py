"""``ddpm tui``: the dashboard, from the same command as everything else."""

from __future__ import annotations

from ddpm_tui.cli.common import DbOpt, command


@command("tui")
def tui_cmd(db: DbOpt = None) -> None:
    """Open the dashboard (the same as `ddpm-tui`)."""
    from ddpm_tui.app import run_app

    run_app(db)
