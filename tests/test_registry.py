"""The registry: built-ins, entry points (mocked and real), validation, duplicates."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from sharedconv.backends import registry
from sharedconv.backends.api import Backend, Strategy
from sharedconv.harness.cli import cli


class _Dist:
    def __init__(self, name: str, version: str = "1.2.3"):
        self.metadata = {"Name": name}
        self.version = version


def _ep(name: str, value: str, dist: str = "acme-conv") -> SimpleNamespace:
    return SimpleNamespace(
        name=name, value=value, dist=_Dist(dist), group=registry.ENTRY_POINT_GROUP
    )


@pytest.fixture
def fake_plugins(monkeypatch):
    """A module of plugin backends and a way to declare entry points for them."""
    module = types.ModuleType("acme_conv_plugin")

    class Good(Backend):
        name = "acme"
        strategies = (Strategy("direct", "one strategy"),)

        def prepare(self, problem, arrays, strategy, device, mode):
            return lambda: ()

    class NoPrepare(Backend):
        name = "lazy"
        strategies = (Strategy("direct", "one strategy"),)

    class DuckTyped:  # the contract's attributes without the base class
        name = "duck"
        strategies = (Strategy("direct", "one strategy"),)

        def prepare(self, problem, arrays, strategy, device, mode):
            return lambda: ()

    class WrongName(Good):
        name = "something-else"

    class NoStrategies(Good):
        name = "empty"
        strategies = ()

    module.Good, module.NoPrepare, module.WrongName, module.NoStrategies = (
        Good,
        NoPrepare,
        WrongName,
        NoStrategies,
    )
    module.DuckTyped = DuckTyped
    monkeypatch.setitem(sys.modules, "acme_conv_plugin", module)
    declared: list[SimpleNamespace] = []
    monkeypatch.setattr(registry, "_entry_points", lambda: list(declared))
    registry.refresh()
    yield declared
    registry.refresh()


def test_builtins_listed_first_without_importing_them():
    names = registry.backend_names()
    assert names[0] == "numpy"
    assert {"torch", "tensorflow", "jax", "keras-jax"} <= set(names)


def test_a_plugin_backend_is_one_class_and_one_entry_point(fake_plugins):
    fake_plugins.append(_ep("acme", "acme_conv_plugin:Good"))
    registry.refresh()
    assert "acme" in registry.backend_names()
    backend = registry.load_backend("acme")
    assert backend.name == "acme" and backend.strategy("direct").name == "direct"
    assert registry.get_spec("acme").origin == "acme-conv 1.2.3"


@pytest.mark.parametrize(
    "ep_name, target, needle",
    [
        ("lazy", "acme_conv_plugin:NoPrepare", "lacks the method(s) prepare"),
        ("duck", "acme_conv_plugin:DuckTyped", "not a subclass of sharedconv.backends.api.Backend"),
        ("acme", "acme_conv_plugin:WrongName", "calls itself 'something-else'"),
        ("empty", "acme_conv_plugin:NoStrategies", "declares no strategies"),
        ("gone", "acme_conv_plugin:Missing", "has no attribute 'Missing'"),
        ("broken", "no_such_module_xyz:Thing", "importing 'no_such_module_xyz' failed"),
        ("badtarget", "justamodule", "must be 'module:attribute'"),
    ],
)
def test_bad_plugins_fail_naming_the_distribution(fake_plugins, ep_name, target, needle):
    fake_plugins.append(_ep(ep_name, target))
    registry.refresh()
    with pytest.raises(registry.BackendLoadError) as info:
        registry.load_backend(ep_name)
    assert needle in str(info.value)
    assert "acme-conv 1.2.3" in str(info.value)


def test_duplicate_names_are_an_error_never_a_silent_choice(fake_plugins):
    fake_plugins.append(_ep("torch", "acme_conv_plugin:Good"))
    fake_plugins.append(_ep("acme", "acme_conv_plugin:Good", dist="first-dist"))
    fake_plugins.append(_ep("acme", "acme_conv_plugin:Good", dist="second-dist"))
    registry.refresh()
    specs = [s for s in registry.list_specs() if s.name == "torch"]
    assert len(specs) == 2 and specs[0].origin == "built-in"
    assert "already taken by built-in" in specs[1].error
    dup = [s for s in registry.list_specs() if s.name == "acme"]
    assert dup[0].error is None and "already taken by first-dist" in dup[1].error
    # the built-in still loads; the listing shows the conflict without breaking the rest
    result = CliRunner().invoke(cli, ["backends", "--json"])
    assert result.exit_code == 0
    assert "already taken by built-in" in result.output
    assert '"name": "numpy"' in result.output


def test_broken_plugin_does_not_break_the_listing(fake_plugins):
    fake_plugins.append(_ep("broken", "no_such_module_xyz:Thing"))
    fake_plugins.append(_ep("acme", "acme_conv_plugin:Good"))
    registry.refresh()
    result = CliRunner().invoke(cli, ["backends"])
    assert result.exit_code == 0, result.output
    assert "broken" in result.output and "no_such_module_xyz" in result.output
    assert "acme" in result.output and "acme-conv" in result.output


def test_unknown_backend_lists_the_valid_ones():
    with pytest.raises(registry.UnknownBackendError, match="registered backends: numpy, torch"):
        registry.parse_backend_list("numpy,nope")


def test_real_entry_point_backend_verifies_end_to_end(test_plugins):
    """The throwaway backend is one module plus one entry point; verify runs it in a worker."""
    assert "throwaway" in registry.backend_names()
    result = CliRunner().invoke(
        cli,
        [
            "verify",
            "--backends",
            "throwaway",
            "--shape",
            "B=2,C=3,H=9,N=2,K=3,stride=2",
            "--mode",
            "both",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "2 passed, 0 failed" in result.output
