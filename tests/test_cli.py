"""Every command: bad input gives a clear message and exit code 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from sharedconv.harness.cli import cli

BAD = [
    (["verify", "--shape", "B=0,C=3,H=8,N=2,K=3"], "B must be a positive integer"),
    (["verify", "--shape", "C=3,H=8,N=2,K=20"], "larger than the padded input"),
    (["verify", "--shape", "C=3,H=8,N=2"], "lacks K"),
    (["verify", "--shape", "C=3,H=8,N=2,K=3,flavour=1"], "unknown key 'flavour'"),
    (["verify", "--backends", "numpy,nope"], "unknown backend(s) nope"),
    (
        ["verify", "--backends", "numpy", "--strategies", "nope"],
        "no selected backend has strategy nope",
    ),
    (["verify", "--suite", "nope"], "unknown suite 'nope'; valid suites: smoke"),
    (["verify", "--suite", "smoke", "--shape", "C=1,H=8,N=1,K=1"], "either --shape or --suite"),
    (["verify", "--mode", "sideways"], "'sideways' is not one of"),
    (["verify", "--dtype", "int8"], "'int8' is not one of"),
    (["verify", "--threads", "0", "--backends", "numpy"], "must be between 1 and this machine's"),
    (
        ["verify", "--threads", "100000", "--backends", "numpy"],
        "must be between 1 and this machine's",
    ),
    (["backends", "--nope"], "No such option"),
    (["strategies", "--backends", "nope"], "unknown backend"),
    (["suites", "extra"], "unexpected extra argument"),
]


SHAPE = ["-b", "numpy", "--shape", "C=2,H=8,N=2,K=3", "--mode", "forward"]
# numbers: finite and in range where they enter (click's own ranges let nan through)
BAD += [
    (["run", *SHAPE, "--timeout", value], f"{value!r} is {why}")
    for value, why in (
        ("nan", "not a finite"),
        ("inf", "not a finite"),
        ("0", "outside"),
        ("-5", "outside"),
    )
]
BAD += [
    (["run", *SHAPE, option, value], needle)
    for option, value, needle in (
        ("--budget", "nan", "'nan' is not a finite number"),
        ("--budget", "inf", "'inf' is not a finite number"),
        ("--budget", "0", "'0' is outside (0, 86400]"),
        ("--precision", "nan", "'nan' is not a finite number"),
        ("--precision", "2", "'2' is outside (0, 1]"),
        ("--min-samples", "1", "not in the range 2<=x<=100000"),
        ("--seed", "-1", "not in the range 0<=x<="),
    )
]
BAD += [
    (["seed", "--budget", "nan"], "'nan' is not a finite number"),
    (["recommend", "--shape", "C=2,H=8,N=2,K=3", "--measure", "--budget", "-1"], "outside"),
    (["compare", "a", "b", "--alpha", "nan"], "'nan' is not a finite number"),
]
# run ids are plain names inside --results
BAD += [
    (["run", *SHAPE, "--run-id", run_id], "is not a plain name")
    for run_id in ("../../x", "/tmp/abs", ".", "..", "a b", "x/y", "")
]
BAD += [(["run", "--resume", "../elsewhere"], "is not a plain name")]
# --resume keeps the stored settings: options that would change them are refused by name
BAD += [
    (["run", "--resume", "x", *extra], f"settings stored in it; drop {needle}")
    for extra, needle in (
        (["-b", "torch"], "--backends"),
        (["--budget", "3"], "--budget"),
        (["--timeout", "9", "--malloc", "system"], "--timeout, --malloc"),  # as typed
        (["--shape", "C=1,H=8,N=1,K=1"], "--shape"),
    )
]


@pytest.mark.parametrize("args, needle", BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_input_is_a_clear_message_and_exit_2(args, needle, tmp_path):
    if args[0] == "run":
        args = [*args, "--results", str(tmp_path / "results")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    if args[0] == "run":  # nothing was written, inside the results folder or beside it
        assert not any(p for p in tmp_path.rglob("*") if p.is_file())


def test_every_command_has_help():
    for command in cli.commands:
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0, command
        assert "Usage:" in result.output


def test_real_process_bad_input_has_no_traceback():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sharedconv.harness.cli",
            "verify",
            "--shape",
            "C=3,H=8,N=2,K=3,padding=full",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "padding must be 'valid', 'same'" in out.stderr
    assert "Traceback" not in out.stderr


def test_backends_table_and_json():
    result = CliRunner().invoke(cli, ["backends", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.output)
    numpy_row = next(r for r in rows if r["name"] == "numpy")
    assert numpy_row["status"] == "available"
    assert [s["name"] for s in numpy_row["strategies"]] == ["oracle64", "oracle32"]
    assert CliRunner().invoke(cli, ["backends"]).exit_code == 0


def test_suites_lists_every_suite():
    result = CliRunner().invoke(cli, ["suites"])
    assert result.exit_code == 0
    for name in ("smoke", "seed", "channels", "conformance", "full"):
        assert f"{name} (" in result.output
    from sharedconv.backends.suites import load_suite

    assert f"smoke (1 problem, {load_suite('smoke').budget:g} s per case)" in result.output
    assert "tiny (1 problem)" in result.output


def test_a_suite_budget_is_the_default_and_a_bad_one_is_refused(monkeypatch):
    from sharedconv.backends import suites
    from sharedconv.harness.cli_options import DEFAULT_BUDGET, suite_budget

    smoke = suites.load_suite("smoke").budget
    assert smoke is not None and smoke < DEFAULT_BUDGET  # a quick look, by design
    assert suite_budget((), "smoke", "smoke") == smoke
    assert suite_budget((), "smoke,seed", "smoke") == 2.0  # the largest of the suites
    assert suite_budget(("B=1,C=1,H=8,N=1,K=3",), None, "smoke") == 2.0
    files = {"bad": 'problems = ["B=1,C=1,H=8,N=1,K=3"]\nbudget = -1\n'}
    monkeypatch.setattr(suites, "_files", lambda: files)
    with pytest.raises(suites.SuiteError, match="suite 'bad': budget must be a positive"):
        suites.load_suite("bad")


def test_verify_numpy_conformance_both_modes_passes():
    result = CliRunner().invoke(
        cli, ["verify", "--backends", "numpy", "--mode", "both", "--suite", "conformance"]
    )
    assert result.exit_code == 0, result.output
    assert "66 passed, 0 failed, 2 skipped" in result.output
    assert "computes in float32, which cannot meet the float64 error bound" in result.output


def test_verify_exit_code_is_1_on_a_failure(test_plugins):
    result = CliRunner().invoke(
        cli,
        [
            "verify",
            "--backends",
            "faulty",
            "--strategies",
            "ok,wrong",
            "--shape",
            "B=1,C=2,H=8,N=2,K=3",
            "--mode",
            "forward",
        ],
    )
    assert result.exit_code == 1
    assert "1 passed, 1 failed" in result.output
    assert "FAIL" in result.output


def test_verify_json_records():
    result = CliRunner().invoke(
        cli,
        [
            "verify",
            "--backends",
            "numpy",
            "--shape",
            "B=1,C=2,H=8,N=2,K=3",
            "--mode",
            "train",
            "--json",
        ],
    )
    assert result.exit_code == 0
    records = json.loads(result.output)
    assert {r["strategy"] for r in records} == {"oracle64", "oracle32"}
    errors = records[0]["verify"]["errors"]
    assert set(errors) == {"y", "dx", "dw", "db"}
    assert all(e["rel_fro"] <= e["bound"] for e in errors.values())


def test_a_failure_message_with_markup_is_printed_as_text():
    # a plugin's or framework's message is data: Rich markup in it neither aborts the run
    # (MarkupError on "[/x]") nor becomes a live terminal hyperlink
    import io

    from rich.console import Console
    from sharedconv.harness.progress import RunProgress
    from sharedconv.harness.records import CaseRecord

    out = io.StringIO()
    console = Console(file=out, width=300, force_terminal=True, color_system=None)
    reason = "boom [/x] [link=https://example.com]click[/link] [bold]loud"
    with RunProgress(console, 1) as progress:
        progress.on_record(CaseRecord(status="error", case="faulty/[/x]/B1", reason=reason))
    text = out.getvalue()
    assert reason in text and "faulty/[/x]/B1" in text
    assert "\x1b]8;" not in text  # no OSC 8 hyperlink
