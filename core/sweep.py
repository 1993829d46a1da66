"""Sweeps: a grid of settings times a few seeds, expanded and checked before anything is recorded.

``ddpm sweep --preset quick --set lr=1e-3,2e-3,4e-3 --set objective=eps,v --seeds 3 --name S``
is 3 x 2 x 3 = 18 runs of study ``S``, each named after its setting
(``S/lr=2e-3,objective=v,seed=1``). A value list is split on commas outside brackets, so a
tuple value goes in brackets (``channel_mult=[1,2],[1,2,2]``); a key with one value is set on
every run and is not part of the names. ``random`` draws that many settings from the grid
instead of taking all of it (reproducibly: the draw is seeded by the study's name).

Every run's config is validated first: one bad value anywhere refuses the whole sweep, with one
line per distinct problem. Free of torch.
"""

from __future__ import annotations

import itertools
import random
import zlib
from dataclasses import dataclass

from core.config import ConfigError, RunConfig, preset
from core.store import NewRun

MAX_UNCONFIRMED = 256  # more runs than this need --yes


@dataclass
class SweepRun:
    name: str
    setting: dict[str, str]  # the swept keys (and seed) as typed
    config: RunConfig


def split_values(key: str, text: str) -> list[str]:
    """``1e-3,2e-3`` -> two values; ``[1,2],[1,2,2]`` -> two tuple values; commas inside
    brackets or parentheses belong to the value. Blank text is one blank value, for the
    field's own check to judge (``data_dir=`` is a setting, not an empty list)."""
    if not text.strip():
        return [text.strip()]
    values, depth, current = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
            if depth < 0:
                raise ConfigError([f"{key}: unbalanced brackets in {text!r}; write tuples as [1,2],[1,2,2]"])
        if ch == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += ch
    if depth != 0:
        raise ConfigError([f"{key}: unbalanced brackets in {text!r}; write tuples as [1,2],[1,2,2]"])
    values.append(current.strip())
    if any(v == "" for v in values):
        raise ConfigError([f"{key}: an empty value in {text!r}; separate values with single commas"])
    return values


def parse_axes(sets: dict[str, str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(fixed settings, swept settings): keys with one value are fixed for every run."""
    fixed, swept = {}, {}
    for key, text in sets.items():
        values = split_values(key, text)
        if len(dict.fromkeys(values)) < len(values):
            raise ConfigError([f"{key}: a value is listed twice in {text!r}"])
        if len(values) == 1:
            fixed[key] = values[0]
        else:
            swept[key] = values
    return fixed, swept


def grid(swept: dict[str, list[str]], random_n: int | None = None, draw_seed: str = "") -> list[dict[str, str]]:
    """Every combination of the swept values (first key slowest), or ``random_n`` of them
    drawn without repeats."""
    points = [dict(zip(swept, combo)) for combo in itertools.product(*swept.values())] if swept else [{}]
    if random_n is not None:
        if random_n < 1:
            raise ConfigError([f"--random: {random_n} must be at least 1"])
        if random_n > len(points):
            raise ConfigError(
                [f"--random: {random_n} is more than the grid's {len(points)} settings; take them all without --random"]
            )
        rng = random.Random(zlib.crc32(draw_seed.encode()))
        picked = sorted(rng.sample(range(len(points)), random_n))
        points = [points[i] for i in picked]
    return points


def expand(
    study: str, preset_name: str, sets: dict[str, str], *, seeds: int | None = None, random_n: int | None = None
) -> list[SweepRun]:
    """The sweep's runs, every config validated; all problems at once as one ConfigError."""
    fixed, swept = parse_axes(sets)
    if seeds is not None:
        if seeds < 1:
            raise ConfigError([f"--seeds: {seeds} must be at least 1"])
        if "seed" in swept:
            raise ConfigError(["seed: sweep seeds with --seeds N or with --set seed=a,b, not both"])
    errors: list[str] = []
    try:
        base = preset(preset_name, fixed)
    except ConfigError as e:
        raise ConfigError(e.errors) from None
    seed_values = [base.seed + k for k in range(seeds)] if seeds else [None]
    runs = []
    for point in grid(swept, random_n, study):
        for seed in seed_values:
            setting = dict(point)
            if seed is not None:
                setting["seed"] = str(seed)
            try:
                cfg = preset(preset_name, {**fixed, **setting})
            except ConfigError as e:
                errors += [line for line in e.errors if line not in errors]
                continue
            name = f"{study}/" + ",".join(f"{k}={v}" for k, v in setting.items()) if setting else study
            runs.append(SweepRun(name, setting, cfg))
    if errors:
        raise ConfigError(errors)
    return runs


def new_runs(
    runs: list[SweepRun],
    study: str,
    preset_name: str,
    *,
    tags: list[str] | tuple[str, ...] = (),
    device: str = "auto",
    priority: int = 0,
    retries: int | None = None,
) -> list[NewRun]:
    """What a sweep records (``Store.create_runs``): queued runs of one study, for a scheduler.
    ``ddpm sweep`` and the dashboard's new-run form both record through it, so a grid typed
    in either face makes the same rows."""
    return [NewRun(r.config.to_dict(), preset_name, r.name, list(tags), device, "", study, priority, True, retries) for r in runs]


def describe(runs: list[SweepRun]) -> str:
    """``18 runs: 3 values of lr x 2 of objective x 3 seeds``."""
    keys: dict[str, set[str]] = {}
    for r in runs:
        for k, v in r.setting.items():
            keys.setdefault(k, set()).add(v)
    parts = [f"{len(v)} {'seeds' if k == 'seed' else f'values of {k}'}" for k, v in keys.items()]
    return f"{len(runs)} run{'s' if len(runs) != 1 else ''}" + (": " + " x ".join(parts) if parts else "")
