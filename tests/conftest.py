from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).parent / "plugins"
# rich folds table cells to the terminal's width (80 when there is none); tests read whole lines
os.environ.setdefault("COLUMNS", "250")


@pytest.fixture
def test_plugins(monkeypatch: pytest.MonkeyPatch):
    """Put the test plugin distribution (backends ``faulty`` and ``throwaway``) on the path
    of this process and of the workers it starts, with a real entry point."""
    from sharedconv.backends import registry

    monkeypatch.syspath_prepend(str(PLUGINS))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")])
    )
    registry.refresh()
    yield
    sys.modules.pop("sharedconv_testplugins", None)
    registry.refresh()
