"""Where backends come from: built-ins by import string, third parties by entry point.

Listing imports nothing. A backend's module is imported only when that backend is loaded,
and loading checks the object against the contract, naming the distribution that shipped it
in any error. Two backends with one name are an error, never a silent choice.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import metadata
from typing import Any

from .contract import Backend, Strategy

ENTRY_POINT_GROUP = "sharedconv.backends"

# name -> (import string, install hint)
BUILTINS: dict[str, tuple[str, str]] = {
    "numpy": ("sharedconv.backends.numpy_backend:NumpyBackend", "pip install sharedconv"),
    "torch": ("sharedconv.backends.torch_backend:TorchBackend", "pip install 'sharedconv[torch]'"),
    "tensorflow": (
        "sharedconv.backends.tensorflow_backend:TensorflowBackend",
        "pip install 'sharedconv[tensorflow]'",
    ),
    "jax": ("sharedconv.backends.jax_backend:JaxBackend", "pip install 'sharedconv[jax]'"),
    "native": (
        "sharedconv.backends.native_backend:NativeBackend",
        "pip install sharedconv (builds the kernel: needs g++)",
    ),
    "keras-tensorflow": (
        "sharedconv.backends.keras_backend:KerasTensorflowBackend",
        "pip install 'sharedconv[keras,tensorflow]'",
    ),
    "keras-jax": (
        "sharedconv.backends.keras_backend:KerasJaxBackend",
        "pip install 'sharedconv[keras,jax]'",
    ),
    "keras-torch": (
        "sharedconv.backends.keras_backend:KerasTorchBackend",
        "pip install 'sharedconv[keras,torch]'",
    ),
}


@cache
def former_names() -> dict[tuple[str, str], str]:
    """``(backend, old name) -> current name`` for every renamed built-in strategy (declared
    by ``Strategy.formerly``), so runs stored under an old name read under the new one.
    Imports the built-in adapters only (no framework)."""
    out: dict[tuple[str, str], str] = {}
    for name, (target, _) in BUILTINS.items():
        module, attribute = target.split(":")
        backend = getattr(importlib.import_module(module), attribute)()
        for s in backend.strategies:
            out.update({(name, old): s.name for old in s.formerly})
    return out


# what a subclass must implement itself: the base class has a sound default for the rest
_REQUIRED_METHODS = ("prepare",)


class BackendLoadError(RuntimeError):
    """A backend that could not be loaded or does not honour the contract."""


class UnknownBackendError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; this one reads as a sentence
        return str(self.args[0])


@dataclass(frozen=True)
class BackendSpec:
    """Where a backend comes from, known without importing it."""

    name: str
    target: str  # "module:attribute"
    origin: str  # "built-in" or the distribution that declares the entry point
    install_hint: str = ""
    error: str | None = None  # a registration problem found while listing (e.g. a duplicate name)


def _split_target(spec: BackendSpec) -> tuple[str, str]:
    module, _, attr = spec.target.partition(":")
    if not module or not attr:
        raise BackendLoadError(
            f"backend {spec.name!r} from {spec.origin}: its target must be 'module:attribute', got {spec.target!r}"
        )
    return module, attr


def _entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def _distribution_name(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is not None:
        try:
            return f"{dist.metadata['Name']} {dist.version}"
        except Exception:  # a broken METADATA file must not break listing
            pass
    return f"an installed distribution (entry point {ep.name!r} = {ep.value!r})"


@lru_cache(maxsize=1)
def _specs() -> tuple[BackendSpec, ...]:
    specs = [
        BackendSpec(name, target, "built-in", hint) for name, (target, hint) in BUILTINS.items()
    ]
    seen = {s.name: s for s in specs}
    for ep in _entry_points():
        origin = _distribution_name(ep)
        spec = BackendSpec(ep.name, ep.value, origin)
        if ep.name in seen:
            other = seen[ep.name]
            spec = BackendSpec(
                ep.name,
                ep.value,
                origin,
                error=(
                    f"backend name {ep.name!r} from {origin} is already taken by {other.origin} "
                    f"({other.target}); rename the entry point in the plugin's pyproject.toml"
                ),
            )
        else:
            seen[ep.name] = spec
        specs.append(spec)
    return tuple(specs)


def refresh() -> None:
    """Forget the cached entry points and loaded backends (after installing a plugin)."""
    _specs.cache_clear()
    load_backend.cache_clear()


def list_specs() -> list[BackendSpec]:
    """Every registered backend, built-ins first, without importing any of them."""
    return list(_specs())


def backend_names() -> list[str]:
    return [s.name for s in _specs() if s.error is None]


def get_spec(name: str) -> BackendSpec:
    matches = [s for s in _specs() if s.name == name]
    if not matches:
        valid = ", ".join(backend_names())
        raise UnknownBackendError(f"unknown backend {name!r}; registered backends: {valid}")
    # A duplicate is an error for the newcomer (reported by `sharedconv backends`); the first
    # registration still loads.
    good = [s for s in matches if s.error is None]
    return good[0] if good else matches[0]


def validate_backend(obj: Any, spec: BackendSpec) -> Backend:
    """Check an object against the contract and return it, or raise naming what is wrong."""
    where = f"backend {spec.name!r} ({spec.target}, from {spec.origin})"
    if isinstance(obj, type):
        try:
            obj = obj()
        except Exception as e:
            raise BackendLoadError(
                f"{where}: constructing it failed: {type(e).__name__}: {e}"
            ) from e
    if not isinstance(obj, Backend):
        raise BackendLoadError(
            f"{where} is a {type(obj).__name__}, not a subclass of "
            "sharedconv.backends.api.Backend; subclass it (the contract's defaults live there)"
        )
    # the base class has defaults for all but these: a subclass must implement them
    missing = [m for m in _REQUIRED_METHODS if getattr(type(obj), m) is getattr(Backend, m)]
    if missing:
        raise BackendLoadError(
            f"{where} lacks the method(s) {', '.join(missing)} of the backend contract"
        )
    name = getattr(obj, "name", None)
    if name != spec.name:
        raise BackendLoadError(f"{where} calls itself {name!r}; its name must be {spec.name!r}")
    strategies = getattr(obj, "strategies", None)
    if not strategies:
        raise BackendLoadError(f"{where} declares no strategies")
    names = set()
    for s in strategies:
        if not isinstance(s, Strategy):
            raise BackendLoadError(
                f"{where}: strategies must be sharedconv.backends.api.Strategy objects, got {type(s).__name__}"
            )
        if s.name in names:
            raise BackendLoadError(f"{where} declares strategy {s.name!r} twice")
        names.add(s.name)
    return obj


@cache
def load_backend(name: str) -> Backend:
    """Import and validate backend ``name`` (cached per process)."""
    spec = get_spec(name)
    if spec.error:
        raise BackendLoadError(spec.error)
    module_name, attr = _split_target(spec)
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise BackendLoadError(
            f"backend {name!r} from {spec.origin}: importing {module_name!r} failed: "
            f"{type(e).__name__}: {e}"
        ) from e
    try:
        obj = getattr(module, attr)
    except AttributeError as e:
        raise BackendLoadError(
            f"backend {name!r} from {spec.origin}: module {module_name!r} has no attribute {attr!r}"
        ) from e
    return validate_backend(obj, spec)


def parse_backend_list(text: str | None) -> list[str]:
    """``"torch,jax"`` -> ``["torch", "jax"]``, checking every name; ``None``/"all" -> all."""
    if text is None or text.strip() in ("", "all"):
        return backend_names()
    names = [t.strip() for t in text.split(",") if t.strip()]
    known = {s.name for s in _specs()}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UnknownBackendError(
            f"unknown backend(s) {', '.join(unknown)}; registered backends: {', '.join(backend_names())}"
        )
    return names


def describe_registered(faults: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every registered backend as plain data: status, reason, versions, strategies.
    ``faults``: backends known to crash or hang when loaded (the harness tries them in a child
    process first); they are listed with the reason and never loaded here."""
    rows: list[dict[str, Any]] = []
    for spec in list_specs():
        row: dict[str, Any] = {"name": spec.name, "origin": spec.origin, "target": spec.target}
        fault = (faults or {}).get(spec.name)
        if spec.error or fault:
            row.update(status="error", reason=spec.error or fault, strategies=[], versions={})
            rows.append(row)
            continue
        try:
            backend = load_backend(spec.name)
            reason = backend.available()
            row.update(
                status="available" if reason is None else "unavailable",
                reason=reason,
                versions=backend.versions() if reason is None else {},
                devices=list(backend.devices),
                strategies=[s.describe() for s in backend.strategies],
            )
        except BackendLoadError as e:
            row.update(status="error", reason=str(e), strategies=[], versions={})
        rows.append(row)
    return rows
