"""The public API for backend authors. Everything else in sharedconv is private.

A backend is one class (a subclass of :class:`Backend`: the registry refuses anything else) and one
entry point in the ``sharedconv.backends`` group of the plugin's ``pyproject.toml``::

    [project.entry-points."sharedconv.backends"]
    mybackend = "my_package.module:MyBackend"

See ``docs/writing-a-backend.md`` for a walk-through. This module holds what an implementer
needs; the helpers that *check* a backend (the float64 oracle, the error bounds, seeded
inputs) are the conformance kit's, ``sharedconv.backends.conformance``.
"""

from .contract import DEVICES, MODES, TAGS, Backend, Strategy, StrategyTable, output_names
from .layouts import CANONICAL_INPUT, CANONICAL_OUTPUT, from_canonical, shape_in, to_canonical
from .problem import DTYPES, ConvProblem, ProblemError, parse_problem, storage_dtype

# What checks a backend (the oracle, the error bounds, seeded inputs) is the conformance
# kit's: ``sharedconv.backends.conformance``.
__all__ = [
    "CANONICAL_INPUT",
    "CANONICAL_OUTPUT",
    "DEVICES",
    "DTYPES",
    "MODES",
    "TAGS",
    "Backend",
    "ConvProblem",
    "ProblemError",
    "Strategy",
    "StrategyTable",
    "from_canonical",
    "output_names",
    "parse_problem",
    "shape_in",
    "storage_dtype",
    "to_canonical",
]
