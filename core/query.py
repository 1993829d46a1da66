"""Which runs, in which order: ``KEY OP VALUE`` filters and sort keys over many runs.

``ddpm ls --where fid<30 --sort fid``, ``ddpm export`` and the dashboard's runs filter all read
runs through here, so an expression means the same on every face. A key is a config field
(``lr``, ``objective``, ``channel_mult``), a run field (``name``, ``status``, ``step``,
``last_loss``, ``tags``...), a figure of the run's latest evaluation (``fid``, ``confident``...)
or a training metric's last value (``grad_norm``, ``rss_mb``...); when two of these share a
name the config field wins, then the run field, then the figure (so ``loss`` is the config's
loss kind and ``last_loss`` the final training loss; ``lr`` the configured rate).

The type of a key decides how it compares, not the value written: a number key compares as a
number (a value that is not a finite number is bad input), a text key as text, case-folded
(tuple config fields as their text, ``1,2``), and ``tags`` is a list (``tags=good`` means it has
that tag). A run lacking the key never matches, and sorts last in either direction.

Pure and free of torch: the caller fetches the runs, their latest evaluations and the few
metrics asked for in a handful of queries, and this module only reads them.
"""

from __future__ import annotations

import difflib
import math
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.config import FIELDS, field_type
from core.errors import DDPMError

if TYPE_CHECKING:
    from core.store import Run

NUMBER, TEXT, TAGS = "number", "text", "tags"
OPERATORS = ("<=", ">=", "!=", "==", "=", "<", ">", "~")  # longest first: '<=' before '<'
OP_CHARS = frozenset("<>=!~")
ORDERING = ("<", "<=", ">", ">=")
COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "=": operator.eq, "!=": operator.ne}
EXAMPLE = "e.g. fid<30, objective=v, lr>=1e-3, name~lr"


class QueryError(DDPMError):
    """An expression or sort key that cannot be read; ``str()`` says where and how to fix it."""


CONFIG_KINDS = {name: NUMBER if field_type(name) in (int, float, bool) else TEXT for name in FIELDS}
TUPLE_FIELDS = frozenset(n for n in FIELDS if field_type(n) not in (int, float, bool, str))
BOOL_FIELDS = frozenset(n for n in FIELDS if field_type(n) is bool)

# The run's own fields a query may read, and how (the first of them are export's first columns).
RUN_FIELDS: dict[str, tuple[str, Callable[[Run], Any]]] = {
    "id": (NUMBER, lambda r: r.id),
    "name": (TEXT, lambda r: r.name),
    "study": (TEXT, lambda r: r.study),
    "status": (TEXT, lambda r: r.status),
    "preset": (TEXT, lambda r: r.preset),
    "device": (TEXT, lambda r: r.device),
    "step": (NUMBER, lambda r: r.step),
    "total_steps": (NUMBER, lambda r: r.total_steps),
    "last_loss": (NUMBER, lambda r: r.last_loss),
    "images_per_s": (NUMBER, lambda r: r.images_per_s),
    "elapsed_s": (NUMBER, lambda r: r.elapsed_s),
    "n_params": (NUMBER, lambda r: r.n_params),
    "world_size": (NUMBER, lambda r: r.world_size),
    "priority": (NUMBER, lambda r: r.priority),
    "attempts": (NUMBER, lambda r: r.attempts),
    "created": (NUMBER, lambda r: r.created),
    "started": (NUMBER, lambda r: r.started),
    "ended": (NUMBER, lambda r: r.ended),
    "host": (TEXT, lambda r: r.host),
    "error": (TEXT, lambda r: r.error),
    "notes": (TEXT, lambda r: r.notes or None),
    "tags": (TAGS, lambda r: r.tags),
}
EVAL_FIELDS = {"eval_step": NUMBER, "eval_protocol": TEXT}  # which evaluation the figures are from


# ---- parsing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """One ``KEY OP VALUE`` as written; :func:`bind` checks it against the known keys."""

    key: str
    op: str  # one of OPERATORS, '==' read as '='
    value: str  # unquoted
    text: str  # the whole expression, for messages
    source: str = "--where"


@dataclass(frozen=True)
class SortKey:
    key: str
    descending: bool = False


def _fail(source: str, text: str, reason: str) -> QueryError:
    return QueryError(f'{source} "{text}": {reason}')


def _is_key_char(ch: str, first: bool) -> bool:
    return ch.isascii() and (ch.isalpha() or ch == "_" or (not first and (ch.isdigit() or ch == ".")))


def parse_condition(text: str, source: str = "--where") -> Condition:
    """``fid<30`` as a :class:`Condition`; a malformed one says at which column it breaks.
    Spaces around the operator are allowed; a value may be quoted to hold spaces or to begin
    with an operator's character (``name='=x'``)."""
    n = len(text)
    i = 0
    while i < n and text[i].isspace():
        i += 1
    if i == n:
        raise _fail(source, text, f"expected KEY OP VALUE, {EXAMPLE}")
    start = i
    while i < n and _is_key_char(text[i], i == start):
        i += 1
    key = text[start:i]
    if not key:
        if text[i] in OP_CHARS:
            raise _fail(source, text, f"expected a key before '{text[i]}' at column {i + 1}")
        raise _fail(source, text, f"expected a key (letters, digits, _) at column {i + 1}, not '{text[i]}'")
    while i < n and text[i].isspace():
        i += 1
    op = next((o for o in OPERATORS if text.startswith(o, i)), None)
    if op is None:
        got = "the end" if i == n else f"'{text[i]}'"
        raise _fail(source, text, f"expected an operator (= != < <= > >= ~) after '{key}' at column {i + 1}, not {got}")
    i += len(op)
    while i < n and text[i].isspace():
        i += 1
    if i == n or text[i] in OP_CHARS:
        raise _fail(source, text, f"expected a value after '{op}' at column {i + 1}")
    if text[i] in "'\"":
        quote = text[i]
        end = text.find(quote, i + 1)
        if end < 0:
            raise _fail(source, text, f"the quote at column {i + 1} is never closed")
        value = text[i + 1 : end]
        rest = text[end + 1 :]
        if rest.strip():
            col = end + 2 + (len(rest) - len(rest.lstrip()))
            raise _fail(source, text, f"unexpected '{rest.strip()[0]}' at column {col} after the quoted value")
    else:
        value = text[i:].strip()
    return Condition(key, "=" if op == "==" else op, value, text, source)


def parse_sort(text: str, source: str = "--sort") -> SortKey:
    """``fid`` (ascending) or ``-fid`` (descending)."""
    body = text.strip()
    descending = body.startswith("-")
    body = body[1:].strip() if descending else body
    if not body:
        raise _fail(source, text, "expected a key, e.g. fid (ascending) or -fid (descending)")
    bad = next((j for j, ch in enumerate(body) if not _is_key_char(ch, j == 0)), None)
    if bad is not None:
        col = text.index(body) + bad + 1
        raise _fail(source, text, f"expected a key (letters, digits, _), not '{body[bad]}' at column {col}")
    return SortKey(body, descending)


def split_filter(text: str) -> tuple[list[str], list[str]]:
    """A free-text filter as (expressions, plain words): a word holding an operator is an
    expression, glued to its neighbours when the operator stands apart (``fid < 30``)."""
    parts: list[str] = []
    glue = False
    for word in text.split():
        if parts and (glue or word[0] in OP_CHARS):
            parts[-1] += word
        else:
            parts.append(word)
        glue = word[-1] in OP_CHARS
    exprs = [p for p in parts if any(ch in OP_CHARS for ch in p)]
    words = [p for p in parts if not any(ch in OP_CHARS for ch in p)]
    return exprs, words


# ---- the keys -----------------------------------------------------------------------------


def key_kinds(figures: Iterable[str] = (), metrics: Iterable[str] = ()) -> dict[str, str]:
    """Every key a query may use and its kind: config fields, then run fields, then the
    evaluation's step and protocol, figures and training metrics (earlier ones win a name)."""
    kinds = dict(CONFIG_KINDS)
    for k, (kind, _) in RUN_FIELDS.items():
        kinds.setdefault(k, kind)
    for k, kind in EVAL_FIELDS.items():
        kinds.setdefault(k, kind)
    for k in (*figures, *metrics):
        kinds.setdefault(k, NUMBER)
    return kinds


def check_key(key: str, kinds: dict[str, str], source: str, text: str) -> str:
    """The key's kind, or a one-line error naming the nearest known keys."""
    if key in kinds:
        return kinds[key]
    near = difflib.get_close_matches(key, list(kinds), n=3, cutoff=0.6)
    hint = (
        f"nearest: {', '.join(near)}"
        if near
        else "keys are config fields (lr, objective...), run fields (name, status...) and figures (fid...)"
    )
    raise _fail(source, text, f"unknown key '{key}'; {hint}")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _text_of(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return str(v)


@dataclass
class Filter:
    """A bound condition: ``filter(facts)`` says whether a run matches."""

    key: str
    op: str
    kind: str
    number: float = 0.0
    text: str = ""

    def __call__(self, facts: RunFacts) -> bool:
        v = facts.get(self.key)
        if v is None:
            return False
        op = self.op
        if self.kind == NUMBER:
            x = float(v)
            if math.isnan(x):
                return False
            return COMPARE[op](x, self.number)
        if self.kind == TAGS:
            tags = [t.casefold() for t in v]
            if op == "~":
                return any(self.text in t for t in tags)
            return (self.text in tags) == (op == "=")
        s, t = _text_of(v).casefold(), self.text
        if op == "~":
            return t in s
        return COMPARE[op](s, t)


def bind(cond: Condition, kinds: dict[str, str]) -> Filter:
    """Check a condition against the known keys and type its value by its key's kind."""
    kind = check_key(cond.key, kinds, cond.source, cond.text)
    if kind == NUMBER:
        if cond.op == "~":
            raise _fail(cond.source, cond.text, f"'~' (contains) is for text; {cond.key} is a number: use = != < <= > >=")
        value = cond.value.strip().lower()
        if cond.key in BOOL_FIELDS and value in ("true", "false", "yes", "no", "on", "off"):
            value = "1" if value in ("true", "yes", "on") else "0"
        x = _number(value)
        if x is None:
            hint = "; the final training loss is last_loss" if cond.key == "loss" else ""
            raise _fail(cond.source, cond.text, f"{cond.key} is a number and '{cond.value}' is not one{hint}")
        if not math.isfinite(x):
            raise _fail(cond.source, cond.text, f"'{cond.value}' is not a finite number; compare with a finite one")
        return Filter(cond.key, cond.op, kind, number=x)
    if cond.key == "loss" and _number(cond.value) is not None:
        raise _fail(cond.source, cond.text, "loss is the config's loss kind (l2, huber...); the final training loss is last_loss")
    if kind == TAGS and cond.op in ORDERING:
        raise _fail(cond.source, cond.text, "tags is a list; use tags=TAG, tags!=TAG or tags~TEXT")
    text = cond.value.casefold()
    if cond.key in TUPLE_FIELDS:
        text = ",".join(p for p in text.strip("()[] ").replace(" ", ",").split(",") if p)
    return Filter(cond.key, cond.op, kind, text=text)


def compile_where(exprs: Iterable[str], kinds: dict[str, str], source: str = "--where") -> list[Filter]:
    """Every expression parsed and bound; the first bad one raises."""
    return [bind(parse_condition(e, source), kinds) for e in exprs]


def keys_used(filters: Iterable[Filter], sort: SortKey | None = None) -> set[str]:
    return {f.key for f in filters} | ({sort.key} if sort else set())


# ---- a run as the query reads it ---------------------------------------------------------


@dataclass
class RunFacts:
    """What a query reads of one run: its row, its latest evaluation, the metrics fetched."""

    run: Run | None  # None: only its evaluation is known yet (a query narrowing runs down by figures)
    figures: dict[str, float] = field(default_factory=dict)
    eval_step: int | None = None
    eval_protocol: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def get(self, key: str) -> Any:
        """The run's value for ``key`` (None when it lacks it), by the precedence of
        :func:`key_kinds`: config field, run field, evaluation, figure, metric."""
        if key in CONFIG_KINDS:
            v = self.run.config.get(key)
            return _text_of(v) if isinstance(v, (list, tuple)) else v
        getter = RUN_FIELDS.get(key)
        if getter is not None:
            return getter[1](self.run)
        if key == "eval_step":
            return self.eval_step
        if key == "eval_protocol":
            return self.eval_protocol
        if key in self.figures:
            return self.figures[key]
        return self.metrics.get(key)


def select(facts: list[RunFacts], filters: list[Filter]) -> list[RunFacts]:
    """The runs every filter matches, in their order."""
    return [f for f in facts if all(flt(f) for flt in filters)] if filters else list(facts)


def sort_facts(facts: list[RunFacts], key: SortKey, kinds: dict[str, str]) -> list[RunFacts]:
    """Sorted by one key (numbers as numbers, text case-folded); runs without it last. Ties
    keep their order (newest first, as runs are listed)."""
    kind = kinds.get(key.key, TEXT)

    def value(f: RunFacts) -> Any:
        v = f.get(key.key)
        if v is None:
            return None
        if kind == NUMBER:
            x = float(v)
            return None if math.isnan(x) else x
        return _text_of(v).casefold()

    keyed = [(value(f), f) for f in facts]
    have = [(v, f) for v, f in keyed if v is not None]
    have.sort(key=lambda p: p[0], reverse=key.descending)
    return [f for _, f in have] + [f for v, f in keyed if v is None]


def row(facts: RunFacts, columns: Iterable[str]) -> dict[str, Any]:
    """One run as a flat record of ``columns`` (tuples as their text, tags joined by commas)."""
    out = {}
    for c in columns:
        v = facts.get(c)
        out[c] = ",".join(v) if c == "tags" else v
    return out
