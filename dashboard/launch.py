"""Starting the dashboard: ``sharedconv dashboard`` ends here.

The command *becomes* the Streamlit server (``os.execve``): stopping the command with Ctrl-C
or SIGTERM stops the server itself, and no orphaned server keeps the port.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class LaunchError(ValueError):
    """The dashboard cannot start; the message says what to install or change."""


def command(host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", host, "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
    ]  # fmt: skip


def environment(results: str | None, host: str, allow_remote_run: bool) -> dict[str, str]:
    env = dict(os.environ)
    if results:
        env["SHAREDCONV_RESULTS"] = str(Path(results).resolve())
    env["SHAREDCONV_DASHBOARD_LOCAL"] = "1" if host in LOCAL_HOSTS else "0"
    if allow_remote_run:
        env["SHAREDCONV_ALLOW_REMOTE_RUN"] = "1"
    return env


def check(results: str | None) -> None:
    if importlib.util.find_spec("streamlit") is None or importlib.util.find_spec("plotly") is None:
        raise LaunchError(
            "the dashboard needs streamlit and plotly: pip install 'sharedconv[dashboard]'"
        )
    if results and not Path(results).is_dir():
        raise LaunchError(f"{results} is not a folder")


def launch(results: str | None, host: str, port: int, allow_remote_run: bool) -> None:
    """Replace this process with the Streamlit server (never returns)."""
    check(results)
    cmd = command(host, port)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(cmd[0], cmd, environment(results, host, allow_remote_run))
