"""What every ``ddpm`` command shares: the option types, the error policy, and the few helpers
that print (consoles, JSON, sample art) or read the command line (``--set``).

A command module declares its options with these types and registers its commands with
:func:`command`, so each command is a thin shell: parse, call the store or the engine, print.
Nothing here imports torch.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import os
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from core.choices import ETA_MAX, GUIDANCE_MAX, SAMPLERS
from core.errors import DDPMError

if TYPE_CHECKING:
    from rich.console import Console

    from core.store import Run, Store


# The sampler names the engine offers (core.choices, free of torch).
Sampler = enum.StrEnum("Sampler", {name: name for name in SAMPLERS})


class Art(enum.StrEnum):
    half = "half"
    braille = "braille"
    ascii = "ascii"


DbOpt = Annotated[
    Path | None,
    typer.Option("--db", envvar="DDPM_DB", help="SQLite database [default: ./experiments.db, or $DDPM_DB]", show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else.")]
ArtOpt = Annotated[
    Art | None,
    typer.Option("--art", help="Terminal art: half blocks, braille or ascii [default: by terminal]", show_default=False),
]
RunArg = Annotated[str, typer.Argument(help="Run id or name.", show_default=False)]


def finite(value: float | None) -> float | None:
    """Option callback: NaN passes every range check, so refuse non-finite numbers here."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def device_option(value: str | None) -> str | None:
    """Option callback: a malformed --device is a usage error; whether this host has the
    device is decided where the run is resolved (core.devices.resolve)."""
    from core.devices import DeviceError, parse

    if value is None:
        return None
    try:
        return parse(value)
    except DeviceError as e:
        raise typer.BadParameter(str(e)) from None


EtaOpt = Annotated[
    float | None,
    typer.Option(
        "--eta",
        min=0.0,
        max=ETA_MAX,
        callback=finite,
        help="ddim's or dpmpp2m's noise: 0 deterministic, 1 like DDPM (dpmpp2m: the SDE), more adds noise [default: the run's for that sampler (its ddim_eta for ddim where it has one); 0 for dpmpp2m on a run of another sampler]",
        show_default=False,
    ),
]
EtaWindowOpt = Annotated[
    float | None,
    typer.Option(
        "--eta-window",
        min=0.0,
        max=1.0,
        callback=finite,
        help="Keep an eta above 1 to t < this share of T (eta 1 above it, where the layout is drawn); 1 everywhere [default: the run's for that sampler]",
        show_default=False,
    ),
]


ClassOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--class",
        metavar="CLASS",
        help="A conditional run's class to draw: 7, 0-9 or 1,7; repeatable [default: every class].",
        show_default=False,
    ),
]
GuidanceOpt = Annotated[
    float | None,
    typer.Option(
        "--guidance",
        min=0.0,
        max=GUIDANCE_MAX,
        callback=finite,
        help="Classifier-free guidance of a conditional run: 0 unconditional, 1 conditional, more steers harder [default: the run's]",
        show_default=False,
    ),
]
DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device",
        callback=device_option,
        metavar="DEVICE",
        help="auto, cpu, cuda, cuda:N or mps (auto: CUDA, then MPS, then the CPU).",
    ),
]
SamplerOpt = Annotated[
    Sampler | None,
    typer.Option("--sampler", help=f"{' or '.join(SAMPLERS)} [default: the run's]", show_default=False),
]
StepsOpt = Annotated[
    int | None,
    typer.Option(
        "--steps", min=1, help="Sampler steps (ddim, dpmpp2m) [default: the run's for that sampler]", show_default=False
    ),
]

SeedOpt = Annotated[int, typer.Option("--seed", min=0, help="Seed: the same seed draws the same samples.")]


# ---- the error policy --------------------------------------------------------------------


class UserError(DDPMError):
    """A problem with what was asked on the command line itself."""


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on (a carriage return, a line or
    paragraph separator, an escape) written as its escape, so a bad argument echoed in an
    error can never split or overwrite the line."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def fail(message: str, code: int = 1) -> typer.Exit:
    """One ``error:`` line per line of ``message`` (a config with three bad fields is three
    lines, one per field), each made printable."""
    for line in message.split("\n") or [message]:
        print(f"error: {printable(line)}", file=sys.stderr)
    return typer.Exit(code)


def guarded(fn):
    """The error policy around a command: our errors as one line, exit 1; anything else as one
    line naming it a bug (``DDPM_DEBUG=1`` re-raises it for the traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except DDPMError as e:
            raise fail(str(e)) from None
        except sqlite3.Error as e:
            raise fail(f"database error: {e}; if another program holds the file, try again") from None
        except OSError as e:
            where = f" ({e.filename})" if getattr(e, "filename", None) else ""
            raise fail(f"{e.strerror or e}{where}") from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except Exception as e:
            if os.environ.get("DDPM_DEBUG"):
                raise
            raise fail(
                f"unexpected {type(e).__name__}: {' '.join(str(e).split())[:300]} "
                "(a bug in ddpm-tui; DDPM_DEBUG=1 shows the traceback)"
            ) from None

    return wrapper


def command(name: str, group: typer.Typer | None = None, **kw):
    """``app.command`` (or ``group.command``, for a sub-command such as ``queue start``) under
    the error policy of :func:`guarded`."""
    from ddpm_tui.cli import app  # defined before the package imports the command modules

    def deco(fn):
        return (group or app).command(name, **kw)(guarded(fn))

    return deco


# ---- input and output ----------------------------------------------------------------------


def make_console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def parse_sets(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set lr=1e-3")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def art_mode(console: Console, art: Art | None) -> str:
    from ddpm_tui.render import pick_mode

    return pick_mode(console.color_system, art.value if art else None)


def samples_view(
    console: Console,
    data,
    art: Art | None,
    max_rows: int | None = None,
    title: str | None = None,
    per_row: int | None = None,
    width: int | None = None,
):
    """Images as a grid of art (``per_row`` a row: one class a row for a conditional run),
    2-D points as a scatter, or sequences as line plots per channel, ``width`` cells wide at
    most (default the console's: two grids side by side take half each)."""
    from ddpm_tui.render import is_sequences, samples_art

    width = min(width or console.width, console.width)
    mode, color = art_mode(console, art), console.color_system is not None
    if data.ndim == 2:  # points: a square-ish scatter
        width = min(width, 70)
    elif is_sequences(data):
        width = min(width, 100)
    return samples_art(data, mode, width=width, max_rows=max_rows, per_row=per_row, title=title, color=color)


def run_doc(store: Store, run: Run) -> dict:
    """A run as ``--json`` prints it: its row and its latest metrics."""
    doc = run.to_json()
    doc["metrics"] = {k: {"step": step, "value": v} for k, (step, v) in store.latest_metrics(run.id).items()}
    return doc
