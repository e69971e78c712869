"""Named suites of problems, shipped as TOML files with the package.

They live beside the backends (not the harness) because the conformance kit that plugin
authors run needs the ``conformance`` suite and must not depend on the harness.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import resources

from .problem import ConvProblem, ProblemError, parse_problems

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class SuiteError(ValueError):
    pass


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    problems: tuple[ConvProblem, ...]
    budget: float | None = None  # seconds of sampling per case when the command line gives none


def _files() -> dict[str, str]:
    folder = resources.files("sharedconv.backends").joinpath("suite_files")
    return {
        entry.name[: -len(".toml")]: entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".toml")
    }


def suite_names() -> list[str]:
    order = [
        "smoke",
        "seed",
        "channels",
        "spatial",
        "filters",
        "kernel",
        "batch",
        "conformance",
        "full",
    ]
    names = list(_files())
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))


def load_suite(name: str, dtype: str | None = None, _seen: tuple[str, ...] = ()) -> Suite:
    """Suite ``name``; ``dtype`` overrides the dtype of problems that do not fix their own."""
    files = _files()
    if name not in files:
        raise SuiteError(f"unknown suite {name!r}; valid suites: {', '.join(suite_names())}")
    if name in _seen:
        raise SuiteError(f"suite {name!r} includes itself")
    data = tomllib.loads(files[name])
    problems: list[ConvProblem] = []
    for other in data.get("include", []):
        problems.extend(load_suite(other, dtype, (*_seen, name)).problems)
    for text in data.get("problems", []):
        try:
            expanded = parse_problems(
                text if dtype is None or "dtype=" in text else f"{text},dtype={dtype}"
            )
        except ProblemError as e:
            raise SuiteError(f"suite {name!r}: {e}") from e
        problems.extend(expanded)
    unique = tuple(dict.fromkeys(problems))
    budget = data.get("budget")
    if budget is not None and (not isinstance(budget, int | float) or budget <= 0):
        raise SuiteError(
            f"suite {name!r}: budget must be a positive number of seconds, got {budget!r}"
        )
    return Suite(name, data.get("description", ""), unique, budget)
