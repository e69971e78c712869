"""Backends: the problem model, the contract, the registry, the oracle and the adapters.

Nothing here imports a deep-learning framework at import time.
"""

from .contract import MODES, Backend, Strategy, output_names
from .problem import ConvProblem, ProblemError, make_inputs, parse_problem, parse_problems
from .registry import backend_names, list_specs, load_backend

__all__ = [
    "MODES",
    "Backend",
    "ConvProblem",
    "ProblemError",
    "Strategy",
    "backend_names",
    "list_specs",
    "load_backend",
    "make_inputs",
    "output_names",
    "parse_problem",
    "parse_problems",
]
