"""`make mutate`'s report (tests/mutate.py): which survivors it may call equivalent on its own."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from tests import mutate
from tests.mutate import (
    _functions,
    _only_sql_case,
    equivalents,
    forget_test_map,
    main,
    module_of,
    recheck_survivors,
)


def pair(original: str, mutant: str) -> tuple[ast.AST, ast.AST]:
    source = (
        f"def f__mutmut_orig(conn):\n    conn.execute({original!r})\n"
        f"def f__mutmut_1(conn):\n    conn.execute({mutant!r})\n"
    )
    functions = _functions(source)
    return functions["f__mutmut_orig"], functions["f__mutmut_1"]


def test_a_case_change_of_literal_free_sql_is_equivalent() -> None:
    assert _only_sql_case(
        *pair("UPDATE diagnoses SET lease_until = 0", "update diagnoses set lease_until = 0")
    )


@pytest.mark.parametrize(
    ("original", "mutant"),
    [
        (
            "INSERT INTO meta (key) VALUES ('boot')",
            "INSERT INTO META (KEY) VALUES ('BOOT')",
        ),  # literal
        ("SELECT * FROM t WHERE id = %s", "SELECT * FROM T WHERE ID = %S"),  # psycopg placeholder
        ("SELECT %(group)s", "SELECT %(GROUP)s"),  # named placeholder
        ("SELECT * FROM t WHERE id = :id", "SELECT * FROM T WHERE ID = :ID"),  # sqlite named
        ("UPDATE t SET x = 0", "XXUPDATE t SET x = 0XX"),  # not a case change
        ("delivery failed", "DELIVERY FAILED"),  # not SQL
    ],
)
def test_anything_else_is_left_for_a_test_to_kill(original: str, mutant: str) -> None:
    assert not _only_sql_case(*pair(original, mutant))


def test_a_case_change_next_to_another_change_is_not_equivalent() -> None:
    source = (
        "def f__mutmut_orig(conn):\n    conn.execute('UPDATE t SET x = 0', 1)\n"
        "def f__mutmut_1(conn):\n    conn.execute('update t set x = 0', 2)\n"
    )
    functions = _functions(source)
    assert not _only_sql_case(functions["f__mutmut_orig"], functions["f__mutmut_1"])


def test_a_module_path_names_its_mutants_prefix() -> None:
    assert module_of("app/store/sqlite.py") == "app.store.sqlite"


def test_every_mutant_named_on_a_readme_list_line_is_equivalent(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "Some text naming `app.x.f__mutmut_9` in passing.\n"
        "- `app.x.f__mutmut_1`, `app.x.f__mutmut_2`: same result, fewer round trips.\n"
        "- `app.y.xǁCǁm__mutmut_3`: unreachable.\n"
    )
    assert equivalents(readme) == {
        "app.x.f__mutmut_1",
        "app.x.f__mutmut_2",
        "app.y.xǁCǁm__mutmut_3",
    }


def test_ci_s_command_line_is_understood_and_nothing_changed_means_nothing_to_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # What git says changed is the working tree's business (a developer's uncommitted edits
    # count): here, nothing did.
    seen: list[str] = []
    monkeypatch.setattr(mutate, "changed_modules", lambda since: seen.append(since) or [])
    assert main(["--changed-since", "HEAD", "--budget-minutes", "10"]) == 0
    assert seen == ["HEAD"]
    assert "no mutation-tested module changed since HEAD" in capsys.readouterr().out


def test_survivors_are_checked_again_on_the_next_run_and_killed_mutants_are_not(
    tmp_path: Path,
) -> None:
    """mutmut re-runs a mutant only when its function changed; a test added to kill a survivor
    must get its chance."""
    meta = tmp_path / "app" / "store" / "x.py.meta"
    meta.parent.mkdir(parents=True)
    codes = {
        "app.store.x.f__mutmut_1": 0,
        "app.store.x.f__mutmut_2": 1,
        "app.store.x.f__mutmut_3": 33,
    }
    meta.write_text(json.dumps({"exit_code_by_key": codes, "durations_by_key": {"k": 0.1}}))
    other = tmp_path / "app" / "y.py.meta"
    other.write_text(json.dumps({"exit_code_by_key": {"app.y.g__mutmut_1": 0}}))

    assert recheck_survivors(["app.store.x"], mutants=tmp_path) == 2
    data = json.loads(meta.read_text())
    assert data["exit_code_by_key"] == {
        "app.store.x.f__mutmut_1": None,
        "app.store.x.f__mutmut_2": 1,
        "app.store.x.f__mutmut_3": None,
    }
    assert data["durations_by_key"] == {"k": 0.1}, "the rest of mutmut's record is kept"
    assert json.loads(other.read_text())["exit_code_by_key"] == {"app.y.g__mutmut_1": 0}


def test_every_run_traces_the_suite_afresh(tmp_path: Path) -> None:
    """mutmut only adds new tests to its map of tests by function: an old test that reaches a
    new function would never run against that function's mutants."""
    stats = tmp_path / "mutmut-stats.json"
    stats.write_text('{"tests_by_mangled_function_name": {}}')
    assert forget_test_map(tmp_path) and not stats.exists()
    assert not forget_test_map(tmp_path), "nothing to forget"
