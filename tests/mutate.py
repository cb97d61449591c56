"""`make mutate`: mutation testing (mutmut 3) of the modules where a bug loses, doubles, misroutes or
leaks a page, and the kill rate per module.

    python -m tests.mutate                      every module in [tool.mutmut] only_mutate
    python -m tests.mutate --changed-since REV  only those a change since REV touched (CI)
    python -m tests.mutate --module app/routing.py   one module (repeatable)
    python -m tests.mutate --report             the last run's figures again, without running

mutmut forks one pytest session per mutant and runs only the tests that reach the mutated function.
A PostgreSQL server started here is shared by all of them (TEST_POSTGRES_DIR, see tests/conftest.py),
so no mutant pays for a server of its own. mutmut's own progress goes to mutants/mutmut.log.

Equivalent: listed in the README, or changing only the letter case of SQL text outside its literals,
quoted identifiers and placeholders (SQL ignores the case of keywords and unquoted names).
Killed counts mutants a test failed on, timed out on, or mypy rejected (`make lint` runs mypy, so
such a mutant cannot land). A survivor either gets a test or an entry, with one line why, under
"Equivalent mutants" in the README; the report lists the rest.
"""

from __future__ import annotations

import argparse
import ast
import copy
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mutmut.stats import status_by_exit_code

from tests.pgserver import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants"
TARGET = 0.90
KILLED = {"killed", "timeout", "caught by type check"}
EQUIVALENT = re.compile(r"`(app\.[^`]+__mutmut_\d+)`")
# SQL keywords and unquoted identifiers ignore letter case, in SQLite and PostgreSQL alike
SQL = re.compile(
    r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|CREATE|ALTER|DROP|BEGIN|COMMIT|ROLLBACK|PRAGMA|ON|SET|"
    r"FROM|WHERE|AND|OR|VALUES|RETURNING|LIMIT|ORDER|GROUP|JOIN|LEFT|NOTIFY|LISTEN|UNLISTEN|"
    r"LOCK|CASE|WHEN|THEN|ELSE|END|COALESCE|GREATEST|LEAST|NOT|EXISTS|IN)\b",
    re.IGNORECASE,
)
# ...but not the case of literals, quoted identifiers and placeholders (:name, %s, %(name)s, $1)
CASE_MATTERS = re.compile(r"'[^']*'?|\"[^\"]*\"?|%\([^)]*\)\w|%\w|:\w+|\$\d+")


def scope() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(config["tool"]["mutmut"]["only_mutate"])


def module_of(path: str) -> str:
    """app/store/sqlite.py -> app.store.sqlite (the prefix of its mutants' names)."""
    return path.removesuffix(".py").replace("/", ".")


def changed_modules(since: str) -> list[str]:
    diff = subprocess.run(
        ["git", "diff", "--name-only", since, "--", "app"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    patterns = scope()
    return sorted(
        module_of(path)
        for path in diff
        if (ROOT / path).exists() and any(fnmatch.fnmatch(path, p) for p in patterns)
    )


def _functions(source: str) -> dict[str, ast.AST]:
    return {
        node.name: node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and "__mutmut_" in node.name
    }


def _only_sql_case(original: ast.AST, mutant: ast.AST) -> bool:
    """The mutant changes nothing but the letter case of SQL text that holds no literal."""
    pairs = list(zip(ast.walk(original), ast.walk(mutant), strict=False))
    changed = False
    for a, b in pairs:
        if type(a) is not type(b):
            return False
        if isinstance(a, ast.Constant) and isinstance(b, ast.Constant) and a.value != b.value:
            if not (isinstance(a.value, str) and isinstance(b.value, str)):
                return False
            if a.value.lower() != b.value.lower() or not SQL.match(a.value):
                return False
            if CASE_MATTERS.findall(a.value) != CASE_MATTERS.findall(b.value):
                return False
            changed = True
    return changed and ast.dump(_without_constants(original)) == ast.dump(
        _without_constants(mutant)
    )


def _without_constants(tree: ast.AST) -> ast.AST:
    tree = copy.deepcopy(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            node.value = node.value.lower()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.name = ""
    return tree


def sql_case_mutants(module: str, names: Iterable[str]) -> set[str]:
    """Survivors equivalent by construction: only the letter case of literal-free SQL changed."""
    path = MUTANTS / (module.replace(".", "/") + ".py")
    functions = _functions(path.read_text())
    found = set()
    for name in names:
        short = name.removeprefix(module + ".")
        original = functions.get(short.rsplit("__mutmut_", 1)[0] + "__mutmut_orig")
        mutant = functions.get(short)
        if original is not None and mutant is not None and _only_sql_case(original, mutant):
            found.add(name)
    return found


def equivalents(readme: Path = ROOT / "README.md") -> set[str]:
    lines = readme.read_text().splitlines()
    return {
        name for line in lines if line.startswith("- `app.") for name in EQUIVALENT.findall(line)
    }


@dataclass
class ModuleResult:
    module: str
    statuses: Counter[str] = field(default_factory=Counter)
    survivors: list[str] = field(default_factory=list)

    @property
    def tested(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != "not checked")

    @property
    def killed(self) -> int:
        return sum(self.statuses[status] for status in KILLED)

    def rate(self, equivalent: int = 0) -> float:
        counted = self.tested - equivalent
        return self.killed / counted if counted else 1.0


RECHECKED = ("survived", "no tests")


def recheck_survivors(modules: Iterable[str] | None = None, mutants: Path = MUTANTS) -> int:
    """Mark the survivors of these modules unchecked, so mutmut runs them again: it re-runs a
    mutant only when its function changed, not when a test was added to kill it."""
    wanted = set(modules) if modules is not None else None
    reset = 0
    for meta in sorted(mutants.glob("app/**/*.py.meta")):
        if wanted is not None and module_of(str(meta.relative_to(mutants))[:-5]) not in wanted:
            continue
        data = json.loads(meta.read_text())
        codes = data["exit_code_by_key"]
        for name, code in codes.items():
            if status_by_exit_code[code] in RECHECKED:
                codes[name] = None
                reset += 1
        meta.write_text(json.dumps(data))
    return reset


def forget_test_map(mutants: Path = MUTANTS) -> bool:
    """Drop mutmut's record of which tests reach which function, so this run traces the whole
    suite again: mutmut adds only new tests to it, so an old test that now reaches a new or
    changed function is never run against its mutants, which then survive for no reason."""
    stats = mutants / "mutmut-stats.json"
    existed = stats.exists()
    stats.unlink(missing_ok=True)
    return existed


def results(modules: Iterable[str] | None = None) -> Iterator[ModuleResult]:
    wanted = set(modules) if modules is not None else None
    for meta in sorted(MUTANTS.glob("app/**/*.py.meta")):
        module = module_of(str(meta.relative_to(MUTANTS)).removesuffix(".meta"))
        if wanted is not None and module not in wanted:
            continue
        exit_codes = json.loads(meta.read_text())["exit_code_by_key"]
        result = ModuleResult(module)
        for name, code in sorted(exit_codes.items()):
            status = status_by_exit_code[code]  # mutmut's own reading of its exit codes
            result.statuses[status] += 1
            if status not in KILLED and status != "not checked":
                result.survivors.append(name)
        yield result


def report(modules: Iterable[str] | None = None) -> bool:
    """Print the table and the unexplained survivors; True when every module meets the target."""
    known = equivalents()
    rows = [r for r in results(modules) if r.statuses]
    width = max((len(r.module) for r in rows), default=10)
    print(f"\n{'module':<{width}}  mutants  killed  survived  equivalent  unchecked  kill rate")
    all_met, unexplained = True, []
    total_killed = total_counted = 0
    for r in rows:
        known |= sql_case_mutants(r.module, r.survivors)
        equivalent = sum(name in known for name in r.survivors)
        counted = r.tested - equivalent
        met = r.rate(equivalent) >= TARGET
        all_met &= met
        total_killed += r.killed
        total_counted += counted
        verdict = "ok" if met else f"BELOW {TARGET:.0%}"
        rate = f"{r.rate(equivalent):8.1%} {verdict}" if counted else "       -"
        print(
            f"{r.module:<{width}}  {r.tested:7}  {r.killed:6}  {r.tested - r.killed:8}"
            f"  {equivalent:10}  {r.statuses['not checked']:9}  {rate}"
        )
        unexplained += [name for name in r.survivors if name not in known]
    if total_counted:
        print(f"{'all':<{width}}  {total_killed / total_counted:>62.1%}")
    if unexplained:
        print(
            f"\n{len(unexplained)} survivors neither killed nor listed as equivalent in the README:"
        )
        for name in unexplained:
            print(f"  {name}")
        print("see one with: .venv/bin/mutmut show NAME")
    return all_met


@contextmanager
def shared_postgres() -> Iterator[dict[str, str]]:
    """One PostgreSQL server for every mutant's test session; nothing when it is not installed."""
    if not PostgresServer.available():
        yield {}
        return
    directory = Path(tempfile.mkdtemp(prefix="mutate-postgres-"))
    server = PostgresServer(directory).start()
    try:
        yield {"TEST_POSTGRES_DIR": str(directory)}
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(directory, ignore_errors=True)


def run(modules: list[str] | None, max_children: int | None, budget: float | None = None) -> int:
    """mutmut run; past `budget` seconds it is interrupted (it keeps what it checked) and 0 returned."""
    names = [f"{module}.*" for module in modules] if modules else []
    command = [str(Path(sys.executable).parent / "mutmut"), "run", *names]
    if max_children:
        command += ["--max-children", str(max_children)]
    MUTANTS.mkdir(exist_ok=True)
    recheck_survivors(modules)
    forget_test_map()
    log = MUTANTS / "mutmut.log"
    with shared_postgres() as postgres, log.open("w") as out:
        env = {
            **os.environ,
            **postgres,
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        }
        print(f"mutmut run {' '.join(names) or '(every module in scope)'}; progress in {log}")
        # A shell starts background jobs with SIGINT ignored, and a child inherits that; a handler
        # of ours is reset to the default in mutmut's process, so the budget's SIGINT stops it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out) as mutmut:
            try:
                return mutmut.wait(timeout=budget)
            except subprocess.TimeoutExpired:
                print(f"budget of {budget:.0f} s spent: the rest stays unchecked")
                mutmut.send_signal(signal.SIGINT)  # mutmut stops its workers and keeps its results
                mutmut.wait()
                return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changed-since", metavar="REV", help="only modules changed since REV")
    parser.add_argument(
        "--module", action="append", metavar="PATH", help="only this module (app/x.py); repeatable"
    )
    parser.add_argument("--report", action="store_true", help="print the last run's figures only")
    parser.add_argument("--max-children", type=int, help="parallel mutants (default: CPUs)")
    parser.add_argument(
        "--budget-minutes", type=float, help="stop after this long, report what was checked"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a module is below target"
    )
    args = parser.parse_args(argv)

    modules: list[str] | None = [module_of(path) for path in args.module] if args.module else None
    if args.changed_since:
        modules = changed_modules(args.changed_since)
        if not modules:
            print(f"no mutation-tested module changed since {args.changed_since}")
            return 0
    if not args.report:
        budget = args.budget_minutes * 60 if args.budget_minutes else None
        code = run(modules, args.max_children, budget)
        if code != 0:
            print((MUTANTS / "mutmut.log").read_text(errors="replace")[-4000:], file=sys.stderr)
            print(f"mutmut run failed ({code})", file=sys.stderr)
            return code
    met = report(modules)
    return 1 if args.strict and not met else 0


if __name__ == "__main__":
    sys.exit(main())
