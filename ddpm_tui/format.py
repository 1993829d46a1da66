"""How runs read on screen: durations, ages, status colours, config differences.

Shared by the CLI and the dashboard so both say the same thing the same way.
"""

from __future__ import annotations

import math
import time
from typing import Any

from core import sysinfo

STATUS_STYLE = {
    "queued": "yellow",
    "running": "bold cyan",
    "completed": "green",
    "stopped": "magenta",
    "failed": "bold red",
    "crashed": "bold red",
}

# The fields worth seeing first when a run is shown; the rest appear when they differ from
# the preset.
KEY_FIELDS = ("dataset", "steps", "batch_size", "lr", "T", "schedule", "objective", "loss", "channels", "channel_mult", "seed")


def duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``1h02m``, ``2d03h``."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


def age(timestamp: float | None, now: float | None = None) -> str:
    """How long ago, coarsely: ``12s``, ``5m``, ``3h``, ``2d``."""
    if not timestamp:
        return "-"
    s = max(0.0, (now or time.time()) - timestamp)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{int(s // size)}{unit}"
    return f"{int(s)}s"


def number(v: Any) -> str:
    """A metric value, compactly: 0.0281, 1.2e-05, 402, 1,234,567."""
    if v is None:
        return "-"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 0.01:
        return f"{v:.4f}".rstrip("0").rstrip(".") if a < 1 else f"{v:.3f}"
    return f"{v:.2e}"


def value(v: Any) -> str:
    """A config value as the user would type it after ``--set key=``."""
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v) if v else "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v) if v != "" else "-"


def progress(step: int, total: int) -> str:
    pct = 100.0 * step / total if total else 0.0
    return f"{step:,}/{total:,} ({pct:.0f}%)"


def config_differences(configs: list[dict]) -> dict[str, list[Any]]:
    """The keys whose values are not all equal, in field order: what a comparison is about."""
    keys: list[str] = []
    for c in configs:
        keys += [k for k in c if k not in keys]
    return {k: [c.get(k) for c in configs] for k in keys if len({repr(c.get(k)) for c in configs}) > 1}


def preset_differences(config: dict, preset_config: dict) -> dict[str, tuple[Any, Any]]:
    """Fields a run changed from its preset: name -> (preset value, run value)."""
    return {k: (preset_config.get(k), v) for k, v in config.items() if _norm(preset_config.get(k)) != _norm(v)}


def _norm(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def device_label(run: Any) -> str:
    """Where a run trains, short: ``cpu``, ``cuda:3``, ``cuda x4`` for four processes."""
    world = getattr(run, "world_size", 1) or 1
    if world > 1:
        return f"{run.device.split(':')[0]} x{world}"
    return run.device


def megabytes(mb: float) -> str:
    """``870 MB``, ``1.2 GB`` (of 2**20 and 2**30 bytes, as core.sysinfo counts)."""
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def throughput(images_per_s: float | None, system: dict[str, float] | None = None) -> str:
    """Speed and what it costs the machine, on one line: ``412 images/s · RSS 1.2 GB ·
    CPU 98% · GPU mem 3.4 GB peak · GPU 87%``. ``system`` holds the run's latest
    :mod:`core.sysinfo` figures (``Store.latest_values``); the missing ones are left out,
    so a CPU run, or a GPU without NVML, reads shorter rather than with dashes."""
    system = system or {}
    parts = [f"{number(images_per_s and round(images_per_s))} images/s"]
    if sysinfo.RSS_MB in system:
        parts.append(f"RSS {megabytes(system[sysinfo.RSS_MB])}")
    elif sysinfo.RSS_PEAK_MB in system:
        parts.append(f"RSS {megabytes(system[sysinfo.RSS_PEAK_MB])} peak")
    if sysinfo.CPU_UTIL in system:
        parts.append(f"CPU {system[sysinfo.CPU_UTIL]:.0f}%")
    if sysinfo.GPU_MEM_PEAK_MB in system:
        parts.append(f"GPU mem {megabytes(system[sysinfo.GPU_MEM_PEAK_MB])} peak")
    if sysinfo.GPU_UTIL in system:
        parts.append(f"GPU {system[sysinfo.GPU_UTIL]:.0f}%")
    return " \u00b7 ".join(parts)


def run_facts(run: Any, now: float | None = None, system: dict[str, float] | None = None) -> list[tuple[str, str]]:
    """The facts about a run that `ddpm show` and the dashboard's run screen both list;
    ``system`` is the run's latest memory and load figures (see :func:`throughput`)."""
    env = getattr(run, "env", None) or {}
    hardware = env.get("gpu") or env.get("cpu")
    detail = ", ".join(x for x in (hardware, env.get("precision"), "data on the host" if env.get("data") == "host" else "") if x)
    rows = [
        (
            "device",
            run.device
            + (f" ({detail})" if detail else "")
            + (f", pid {run.pid} on {run.host}" if run.active and run.pid else ""),
        ),
        ("created", f"{age(run.created, now)} ago" + (f", trained {duration(run.elapsed_s)}" if run.elapsed_s else "")),
        ("loss", number(run.last_loss)),
        ("throughput", throughput(run.images_per_s, system)),
        ("parameters", number(run.n_params)),
    ]
    if env:
        rows.append(("software", software(env)))
    if run.tags:
        rows.append(("tags", ", ".join(run.tags)))
    return rows


def software(env: dict) -> str:
    """``torch 2.14.1, CUDA 13.0, Python 3.11.7, ddpm-tui 0.1.0 on host``: where a run trained."""
    parts = [f"torch {env['torch']}" if env.get("torch") else "", f"CUDA {env['cuda']}" if env.get("cuda") else "",
             f"Python {env['python']}" if env.get("python") else "", f"ddpm-tui {env['ddpm_tui']}" if env.get("ddpm_tui") else ""]  # fmt: skip
    text = ", ".join(p for p in parts if p)
    return text + (f" on {env['host']}" if env.get("host") else "")


def fitted_table(columns: list[tuple[str, str]], rows: list[list[str]], width: int, drop: list[str], keep: list[str]) -> Any:
    """A Rich table of ``columns`` ((heading, justify) pairs) and ``rows`` (markup allowed)
    fitted to ``width`` as a demanding user would: while the rows' natural width is more than
    the terminal's, the columns named in ``drop`` go first, in that order; the columns in
    ``keep`` are never narrowed (an id, a status, the value compared), and what still does not
    fit folds (a long name onto two lines) rather than being cut to "…"."""
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    plain = [[Text.from_markup(c).plain for c in r] for r in rows]
    natural = {h: max([cell_len(h), *(cell_len(r[i]) for r in plain)]) for i, (h, _) in enumerate(columns)}
    shown = [h for h, _ in columns]
    for h in drop:
        if sum(natural[c] for c in shown) + 2 * (len(shown) - 1) <= width:
            break
        if h in shown:
            shown.remove(h)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for h, justify in columns:
        if h in shown:
            whole = h in keep
            table.add_column(h, justify=justify, no_wrap=whole, overflow="ellipsis" if whole else "fold",
                             min_width=natural[h] if whole else None)  # fmt: skip
    index = [i for i, (h, _) in enumerate(columns) if h in shown]
    for r in rows:
        table.add_row(*(r[i] for i in index))
    return table
