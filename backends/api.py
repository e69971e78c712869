"""The public API for backend authors. Everything else in sharedconv is private.

A backend is one class (a subclass of :class:`Backend`: the registry refuses anything else) and one
entry point in the ``sharedconv.backends`` group of the plugin's ``pyproject.toml``::

    [project.entry-points."sharedconv.backends"]
    mybackend = "my_package.module:MyBackend"

See ``docs/writing-a-backend.md`` for a walk-through.
"""

from .agreement import BOUNDS, bound_for, output_error, reduction_terms
from .contract import DEVICES, MODES, Backend, Strategy, StrategyTable, output_names
from .layouts import CANONICAL_INPUT, CANONICAL_OUTPUT, from_canonical, shape_in, to_canonical
from .oracle import forward as oracle_forward
from .oracle import gradients as oracle_gradients
from .oracle import reference as oracle_reference
from .problem import (
    DTYPES,
    ConvProblem,
    ProblemError,
    make_inputs,
    parse_problem,
    parse_problems,
    storage_dtype,
)

__all__ = [
    "BOUNDS",
    "CANONICAL_INPUT",
    "CANONICAL_OUTPUT",
    "DEVICES",
    "DTYPES",
    "MODES",
    "Backend",
    "ConvProblem",
    "ProblemError",
    "Strategy",
    "StrategyTable",
    "bound_for",
    "from_canonical",
    "make_inputs",
    "oracle_forward",
    "oracle_gradients",
    "oracle_reference",
    "output_error",
    "output_names",
    "parse_problem",
    "parse_problems",
    "reduction_terms",
    "shape_in",
    "storage_dtype",
    "to_canonical",
]
