"""Filter expressions and sort keys over runs: parsing, every bad input's message, numbers
against text, runs lacking a key, sorting."""

from __future__ import annotations

import pytest

from core import query
from core.config import preset
from core.query import Condition, QueryError, RunFacts, SortKey, parse_condition, parse_sort, split_filter
from core.store import Run

KINDS = query.key_kinds(["fid", "confident"], ["grad_norm"])


def make(rid: int, name: str, *, fid: float | None = None, tags=(), last_loss=None, study=None, **cfg) -> RunFacts:
    config = {**preset("smoke").to_dict(), **{k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}}
    run = Run(id=rid, name=name, preset="smoke", status="completed", config=config, device="cpu", total_steps=20,
              tags=list(tags), last_loss=last_loss, study=study)  # fmt: skip
    return RunFacts(run, figures={"fid": fid} if fid is not None else {})


def where(items, *exprs):
    return [f.run.id for f in query.select(items, query.compile_where(exprs, KINDS))]


def error(fn, *args) -> str:
    with pytest.raises(QueryError) as e:
        fn(*args)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_parse_condition_reads_key_operator_value_with_or_without_spaces():
    assert parse_condition("fid<30") == Condition("fid", "<", "30", "fid<30")
    assert parse_condition("  lr >= 1e-3 ").op == ">="
    assert parse_condition("objective==v").op == "="
    assert parse_condition("name~lr=2e-3,seed=1").value == "lr=2e-3,seed=1"  # '=' inside a value is text
    assert parse_condition("name='=odd name'").value == "=odd name"
    assert parse_condition("fid!=3", "filter").source == "filter"


@pytest.mark.parametrize(
    "text, message",
    [
        ("fid<<3", "expected a value after '<' at column 5"),
        ("fid<", "expected a value after '<' at column 5"),
        ("fid", "expected an operator (= != < <= > >= ~) after 'fid' at column 4, not the end"),
        ("fid 30", "expected an operator (= != < <= > >= ~) after 'fid' at column 5, not '3'"),
        ("<30", "expected a key before '<' at column 1"),
        ("", "expected KEY OP VALUE"),
        ("9fid<3", "expected a key (letters, digits, _) at column 1, not '9'"),
        ("name='abc", "the quote at column 6 is never closed"),
        ("name='abc' x", "unexpected 'x' at column 12 after the quoted value"),
    ],
)
def test_malformed_expressions_say_where_they_break(text, message):
    msg = error(parse_condition, text)
    assert msg.startswith(f'--where "{text}": ') and message in msg


def test_unknown_key_names_the_nearest_known_keys():
    assert error(query.compile_where, ["fdi<3"], KINDS) == "--where \"fdi<3\": unknown key 'fdi'; nearest: fid"
    assert "nearest: objective" in error(query.compile_where, ["objectiv=v"], KINDS)
    assert "keys are config fields" in error(query.compile_where, ["zzzzzz=1"], KINDS)


@pytest.mark.parametrize(
    "expr, message",
    [
        ("fid<nan", "'nan' is not a finite number"),
        ("lr>=inf", "'inf' is not a finite number"),
        ("fid<1e999", "'1e999' is not a finite number"),
        ("lr>=abc", "lr is a number and 'abc' is not one"),
        ("fid~3", "'~' (contains) is for text; fid is a number"),
        ("tags>a", "tags is a list; use tags=TAG"),
        ("loss<0.1", "the final training loss is last_loss"),
    ],
)
def test_bad_values_are_one_line_errors(expr, message):
    assert message in error(query.compile_where, [expr], KINDS)


def test_numbers_compare_as_numbers_and_text_as_text():
    items = [make(1, "a9", fid=9.0, lr=1e-3), make(2, "a10", fid=10.0, lr=2e-3, objective="v"), make(3, "B", fid=100.0)]
    assert where(items, "fid<30") == [1, 2]  # as text, '100' < '30' and '9' > '30'
    assert where(items, "fid>=10") == [2, 3]
    assert where(items, "fid=1e1") == [2]
    assert where(items, "fid!=10") == [1, 3]
    assert where(items, "lr>=1e-3", "lr<0.0015") == [1]  # ANDed
    assert where(items, "name<b") == [1, 2]  # text, case-folded: 'a10' < 'a9' < 'b'
    assert where(items, "name>a9") == [3]
    assert where(items, "objective=V") == [2]
    assert where(items, "name~A1") == [2]
    assert where(items, "objective!=v") == [1, 3]


def test_tuple_and_bool_config_fields_and_tags():
    items = [make(1, "a", channel_mult=(1, 2), amp=False, tags=["good"]), make(2, "b", channel_mult=(1, 2, 2), tags=["bad"])]
    assert where(items, "channel_mult=1,2") == [1]
    assert where(items, "channel_mult=[1,2,2]") == [2]
    assert where(items, "channel_mult~2,2") == [2]
    assert where(items, "amp=false") == [1] and where(items, "amp=1") == [2]
    assert where(items, "tags=GOOD") == [1] and where(items, "tags!=good") == [2] and where(items, "tags~a") == [2]


def test_a_run_lacking_the_key_never_matches():
    items = [make(1, "a", fid=5.0, study="s"), make(2, "b"), make(3, "c", last_loss=float("nan"))]
    assert where(items, "fid<30") == [1]
    assert where(items, "fid!=30") == [1]  # no figure: no match, even for !=
    assert where(items, "study!=t") == [1]
    assert where(items, "last_loss>0") == [] and where(items, "last_loss!=0") == []  # NaN reads as missing
    assert where(items, "grad_norm>0") == []  # a metric nobody fetched


def test_config_field_wins_a_shared_name():
    f = make(1, "a", lr=1e-3, loss="huber")
    f.metrics = {"lr": 5e-5, "grad_norm": 2.0}
    assert f.get("lr") == 1e-3 and f.get("loss") == "huber" and f.get("grad_norm") == 2.0
    assert query.key_kinds(["lr"])["lr"] == "number" and KINDS["loss"] == "text"


def test_parse_sort_and_its_errors():
    assert parse_sort("fid") == SortKey("fid", False)
    assert parse_sort("-fid") == SortKey("fid", True)
    assert "expected a key" in error(parse_sort, "-")
    assert "expected a key (letters, digits, _), not '<' at column 4" in error(parse_sort, "fid<3")


def test_sort_puts_runs_without_the_key_last_either_way():
    items = [make(1, "a", fid=20.0), make(2, "b"), make(3, "c", fid=5.0), make(4, "D", fid=100.0)]
    ids = lambda key: [f.run.id for f in query.sort_facts(items, parse_sort(key), KINDS)]  # noqa: E731
    assert ids("fid") == [3, 1, 4, 2]
    assert ids("-fid") == [4, 1, 3, 2]
    assert ids("name") == [1, 2, 3, 4]  # case-folded
    assert ids("-name") == [4, 3, 2, 1]


def test_split_filter_separates_expressions_from_words_and_glues_spaced_operators():
    assert split_filter("good fid<30 quick") == (["fid<30"], ["good", "quick"])
    assert split_filter("fid < 30 lr>= 1e-3 cpu") == (["fid<30", "lr>=1e-3"], ["cpu"])
    assert split_filter("fid<") == (["fid<"], [])
    assert split_filter("") == ([], [])
