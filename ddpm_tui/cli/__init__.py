"""``ddpm``: the headless face. Train, list, show, sample, compare and manage runs over SSH.

Every command takes ``--db PATH`` (or ``$DDPM_DB``; default ``./experiments.db``). Commands
that only read (``ls``, ``show``, ``export``, ``compare``, ``study``) never import torch, so they answer
at once; training and sampling import it when they start.

Errors the user can fix print one line on stderr and exit 1 (2 for a malformed command
line), with no traceback; ``DDPM_DEBUG=1`` shows the traceback of anything unexpected.
``--json`` prints one JSON document on stdout and nothing else (progress goes to stderr).

This package holds the Typer app; :mod:`ddpm_tui.cli.common` holds what the commands share,
and each command (or small family of them) has a module of its own, importing which
registers it.
"""

from __future__ import annotations

import importlib
import sys

import typer
from typer.core import TyperGroup

# ---- the command group: one-line usage errors ------------------------------------------


class Group(TyperGroup):
    """Usage errors as one line (``error: ... (see 'ddpm run --help')``), exit code 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            print("aborted", file=sys.stderr)
            sys.exit(1)
        except Exception as e:  # click's exceptions (vendored by Typer) carry these two
            if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
                raise
            ctx = getattr(e, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            from ddpm_tui.cli.common import printable

            print(f"error: {printable(e.format_message())}{hint}", file=sys.stderr)
            sys.exit(e.exit_code)
        code = rv if isinstance(rv, int) else 0
        if not standalone_mode:
            return code
        sys.exit(code)


app = typer.Typer(
    cls=Group,
    name="ddpm",
    help="Train, watch, sample and compare DDPM diffusion runs, all recorded in one SQLite file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

# The command modules, in the order `ddpm --help` lists their commands. Each registers its
# commands on `app` as it is imported, so they are imported here, after `app` exists.
COMMAND_MODULES = ("run", "sweep", "queue", "ls", "show", "manage", "export", "sample", "eval", "compare", "study", "tui")
for _module in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_module}")


def main() -> None:
    app()
