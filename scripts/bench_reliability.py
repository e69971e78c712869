"""Bad input and damaged results against the CLI and the loaders (docs/reliability.md).

    python scripts/bench_reliability.py [--write-doc docs/reliability.md]

Two kinds of attempt, each counted:

- **bad input**: a command line with one bad value (a problem that cannot exist, a number
  that is not finite or out of range, a run id that leaves the results folder, an unknown
  name, a missing or damaged file to read). Each runs in-process through the CLI (click's
  runner, so an uncaught exception is seen as such) in an empty results folder. It must be
  refused: exit code 1 or 2, a message, no traceback, nothing written.
- **damaged results**: a results folder with two healthy runs measured here (`sharedconv run
  -b numpy`) and a copy of one of them with one damage: a wrong-typed field, a broken line, a
  damaged or missing run.json, hostile text. Every reader then runs on the folder: `runs`,
  `compare`, `recommend`, `report` (of a healthy run and of the damaged one), the dashboard's
  loader, and `run --resume` of the damaged run. None may raise; the healthy runs must load
  with exactly the cases they hold (none lost, none duplicated); the damaged run may lose the
  damaged line, never duplicate one.

Prints how many were tried, how many gave a traceback (goal 0), how many bad inputs were
accepted (exit 0), and how many stored cases were lost or duplicated (goal 0).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from doc_section import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MARK = "<!-- reliability-benchmark -->"
PROBLEM = "B=1,C=2,H=8,W=8,N=2,K=3"
SHAPE = ["-b", "numpy", "--shape", PROBLEM, "--mode", "forward"]

# --------------------------------------------------------------------------- bad input

PROBLEMS = [
    "B=0,C=3,H=8,N=2,K=3", "B=-1,C=3,H=8,N=2,K=3", "C=3,H=8,N=2,K=20", "C=3,H=8,N=2",
    "C=3,H=8,N=2,K=3,flavour=1", "C=3,H=8,N=2,K=3,padding=full", "C=3,H=8,N=2,K=3,stride=0",
    "C=3,H=8,N=2,K=3,dilation=x", "C=3,H=8,N=2,K=3,dtype=int8", "C=3,H=8,N=2,K=3,bias=maybe",
    "C=1..1000,H=16..1000,N=1..1000,K=3", "C=1..0,H=8,N=2,K=3", "C=1..8:x1,H=8,N=2,K=3",
    "", "B=1" * 3000, "C=3,H=8,N=2,K=3.5",
    "C=3,H=8,N=2,K=3,padding=-1", "K=3=4,C=1,H=8,N=1", "C=3,H=8,N=2,K=3,stride=1x2x3",
    "C=3,H=8,N=2,K=3,dtype=", "C=1..128:x0,H=8,N=2,K=3", "C=1..128:+0,H=8,N=2,K=3",
    "C=3,H=8,N=2,K=3,padding=same,padding=valid",
]  # fmt: skip
NUMBERS = [
    ("--timeout", "nan"), ("--timeout", "inf"), ("--timeout", "0"), ("--timeout", "-5"),
    ("--timeout", "1e309"), ("--budget", "nan"), ("--budget", "inf"), ("--budget", "0"),
    ("--budget", "-1"), ("--precision", "nan"), ("--precision", "2"), ("--precision", "0"),
    ("--min-samples", "1"), ("--min-samples", "abc"), ("--seed", "-1"), ("--threads", "0"),
    ("--threads", "100000"), ("--threads", "two"), ("--rounds", "0"),
]  # fmt: skip
RUN_IDS = [
    "../../x",
    "/tmp/abs",
    ".",
    "..",
    "a b",
    "x/y",
    "",
    "a\x00b",
    "x" * 300,
    "ünï",
    "a:b",
    "~",
]


def bad_inputs() -> list[tuple[str, list[str]]]:
    cases: list[tuple[str, list[str]]] = []
    cases += [(f"problem {p[:40]!r}", ["verify", "--shape", p]) for p in PROBLEMS]
    cases += [(f"run {o} {v}", ["run", *SHAPE, o, v]) for o, v in NUMBERS]
    cases += [(f"run id {i[:20]!r}", ["run", *SHAPE, "--run-id", i]) for i in RUN_IDS]
    cases += [
        ("resume outside", ["run", "--resume", "../elsewhere"]),
        ("resume missing", ["run", "--resume", "no-such-run"]),
        ("unknown backend", ["verify", "--backends", "numpy,nope"]),
        ("unknown strategy", ["verify", "--backends", "numpy", "--strategies", "nope"]),
        ("unknown suite", ["verify", "--suite", "nope"]),
        ("suite and shape", ["verify", "--suite", "smoke", "--shape", PROBLEM]),
        ("unknown mode", ["verify", "--mode", "sideways"]),
        ("unknown dtype", ["verify", "--dtype", "int8"]),
        ("unknown allocator", ["run", *SHAPE, "--malloc", "nope"]),
        ("unknown executor", ["run", *SHAPE, "--executor", "carrier-pigeon"]),
        ("seed budget nan", ["seed", "--budget", "nan"]),
        ("compare alpha nan", ["compare", "a", "b", "--alpha", "nan"]),
        ("compare missing runs", ["compare", "no-a", "no-b"]),
        ("report missing run", ["report", "no-such-run"]),
        ("report top 0", ["report", "no-such-run", "--top", "0"]),
        ("recommend bad shape", ["recommend", "--shape", "C=3,H=8,N=2"]),
        ("recommend budget -1", ["recommend", "--shape", PROBLEM, "--measure", "--budget", "-1"]),
        ("import missing file", ["import", "no-such-file.json"]),
        ("strategies unknown", ["strategies", "--backends", "nope"]),
        ("suites extra argument", ["suites", "extra"]),
        ("unknown option", ["backends", "--nope"]),
    ]
    return cases


def import_files(tmp: Path) -> list[tuple[str, list[str]]]:
    """pytest-benchmark files that are not: garbage, wrong types, a folder."""
    files = {
        "import garbage": "{not json",
        "import a list": "[1, 2, 3]",
        "import wrong types": json.dumps(
            {"benchmarks": [{"extra_info": {"problem": 5}, "stats": "fast"}]}
        ),
        "import no benchmarks": json.dumps({"machine_info": {}}),
        "import binary": "\x00\xff\xfe garbage",
    }
    cases = []
    for name, text in files.items():
        path = tmp / f"{name.replace(' ', '-')}.json"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        cases.append((name, ["import", str(path)]))
    cases.append(("import a folder", ["import", str(tmp)]))
    return cases


def attempt_bad_input(name: str, args: list[str], tmp: Path) -> dict[str, Any]:
    from sharedconv.harness.cli import cli

    results = tmp / "results"
    if results.exists():
        shutil.rmtree(results)
    if args[0] in ("run", "compare", "report", "recommend", "import"):
        args = [*args, "--results", str(results)]
    result = CliRunner().invoke(cli, args)
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    written = results.exists() and any(p.is_file() for p in results.rglob("*"))
    return {
        "name": name,
        "traceback": crashed or "Traceback" in result.output,
        "accepted": result.exit_code == 0,
        "written": written,
        "detail": "".join(traceback.format_exception(result.exception))[-300:]
        if crashed
        else result.output.strip().splitlines()[-1][:160]
        if result.output.strip()
        else "",
    }


# --------------------------------------------------------------------------- damaged results

HOSTILE = ["[/x]", "[link=https://example.com]click[/link]", "<script>alert(1)</script>",
           "![x](https://example.com/x.png)", "\x1b[31mred\x1b[0m", "a\u202eb"]  # fmt: skip


def _line_damages() -> list[tuple[str, Callable[[list[bytes]], list[bytes]]]]:
    def set_field(path: str, value: Any) -> Callable[[list[bytes]], list[bytes]]:
        def apply(lines: list[bytes]) -> list[bytes]:
            record = json.loads(lines[0])
            node = record
            *parents, last = path.split(".")
            for key in parents:
                node = node.setdefault(key, {})
                if not isinstance(node, dict):
                    return lines
            node[last] = value
            return [(json.dumps(record) + "\n").encode(), *lines[1:]]

        return apply

    fields = [
        ("case_schema", "1"), ("status", 3), ("status", "fast"), ("backend", ["torch"]),
        ("strategy", None), ("problem", 5), ("problem", "B=0"), ("mode", 7), ("malloc", {}),
        ("timing", "fast"), ("timing.stats.median", "fast"), ("timing.stats.median", -1),
        ("timing.block_times", ["x"]), ("memory", [1]), ("memory.peak_bytes", "big"),
        ("flops", "many"), ("verify", [1, 2]), ("params", "x"), ("threads", "two"),
        ("case", 12),
    ]  # fmt: skip
    damages = [(f"field {f} = {v!r}", set_field(f, v)) for f, v in fields]
    damages += [(f"hostile strategy name {h[:20]!r}", set_field("strategy", h)) for h in HOSTILE]
    damages += [
        ("truncated last line", lambda ls: [*ls[:-1], ls[-1][: len(ls[-1]) // 2]]),
        ("half line in the middle", lambda ls: [ls[0][:40] + b"\n", *ls[1:]]),
        ("empty lines", lambda ls: [b"\n", *ls, b"\n\n"]),
        ("non-UTF-8 byte", lambda ls: [ls[0].replace(b'"numpy"', b'"nu\xffpy"', 1), *ls[1:]]),
        ("NUL bytes", lambda ls: [b"\x00" * 64 + b"\n", *ls]),
        ("a JSON list line", lambda ls: [b"[1, 2, 3]\n", *ls]),
        ("a JSON number line", lambda ls: [b"42\n", *ls]),
        ("a duplicated line", lambda ls: [ls[0], *ls]),
        ("a 2 MB line", lambda ls: [json.dumps({"x": "y" * 2_000_000}).encode() + b"\n", *ls]),
        ("deep nesting", lambda ls: [b"[" * 100_000 + b"]" * 100_000 + b"\n", *ls]),
        ("NaN literal", lambda ls: [ls[0].replace(b'"flops": ', b'"flops": NaN, "x": ', 1), *ls[1:]]),
        ("Infinity literal", lambda ls: [ls[0].replace(b'"flops": ', b'"flops": Infinity, "x": ', 1), *ls[1:]]),
        ("byte order mark", lambda ls: [b"\xef\xbb\xbf" + ls[0], *ls[1:]]),
        ("CRLF line ends", lambda ls: [line.replace(b"\n", b"\r\n") for line in ls]),
        ("no final newline", lambda ls: [*ls[:-1], ls[-1].rstrip(b"\n")]),
        ("all lines garbage", lambda ls: [b"garbage\n"] * len(ls)),
        ("empty file", lambda ls: []),
    ]  # fmt: skip
    return damages


def _meta_damages() -> list[tuple[str, Callable[[bytes], bytes | None]]]:
    def set_meta(key: str, value: Any) -> Callable[[bytes], bytes]:
        def apply(raw: bytes) -> bytes:
            meta = json.loads(raw)
            meta[key] = value
            return json.dumps(meta).encode()

        return apply

    damages: list[tuple[str, Callable[[bytes], bytes | None]]] = [
        (f"run.json {k} = {v!r}", set_meta(k, v))
        for k, v in [
            ("schema", "1"), ("schema", 99), ("machine", "x"), ("malloc", 5),
            ("roofline", {"peak_flops": "fast", "copy_bytes_per_s": 1}), ("workers", []),
            ("status", "weird"), ("run_id", 5), ("problems", "all"), ("machine", {"cpu_model": HOSTILE[3]}),
            ("suite", HOSTILE[1]), ("project", {"commit": HOSTILE[0]}),
        ]
    ]  # fmt: skip
    damages += [
        ("run.json invalid JSON", lambda raw: raw[: len(raw) // 2]),
        ("run.json empty", lambda raw: b""),
        ("run.json a list", lambda raw: b"[1, 2]"),
        ("run.json a number", lambda raw: b"7"),
        ("run.json non-UTF-8", lambda raw: b"\xff\xfe" + raw),
        ("run.json without run_id", lambda raw: json.dumps({k: v for k, v in json.loads(raw).items() if k != "run_id"}).encode()),
        ("run.json deep nesting", lambda raw: b"[" * 100_000 + b"]" * 100_000),
        ("run.json missing", lambda raw: None),
    ]  # fmt: skip
    return damages


def damaged_results(tmp: Path) -> list[dict[str, Any]]:
    from sharedconv.harness.cli import cli
    from sharedconv.harness.store import find_runs, read_run

    healthy = tmp / "healthy"
    for run_id, mode in (("good-a", "forward"), ("good-b", "both")):
        done = subprocess.run(
            [str(BIN / "sharedconv"), "run", "-b", "numpy", "--shape", PROBLEM, "--mode", mode,
             "--budget", "0.02", "--results", str(healthy), "--run-id", run_id],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            sys.exit(
                f"could not make the healthy runs:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )
    stored = {
        run_id: [ln for ln in (healthy / run_id / "cases.jsonl").read_bytes().splitlines(keepends=True) if ln.strip()]
        for run_id in ("good-a", "good-b")
    }  # fmt: skip
    attempts: list[dict[str, Any]] = []
    damages: list[tuple[str, Callable[[Path], None]]] = []
    for name, change in _line_damages():

        def lines(folder: Path, change=change) -> None:
            (folder / "cases.jsonl").write_bytes(b"".join(change(list(stored["good-b"]))))

        damages.append((f"cases.jsonl: {name}", lines))
    for name, change in _meta_damages():

        def meta(folder: Path, change=change) -> None:
            raw = change((folder / "run.json").read_bytes())
            if raw is None:
                (folder / "run.json").unlink()
            else:
                (folder / "run.json").write_bytes(raw)

        damages.append((name, meta))

    def folder_for_file(folder: Path) -> None:
        (folder / "cases.jsonl").unlink()
        (folder / "cases.jsonl").mkdir()

    damages.append(("cases.jsonl is a folder", folder_for_file))
    damages.append(("cases.jsonl missing", lambda folder: (folder / "cases.jsonl").unlink()))

    for name, damage in damages:
        root = tmp / "root"
        if root.exists():
            shutil.rmtree(root)
        shutil.copytree(healthy, root)
        shutil.copytree(healthy / "good-b", root / "damaged")
        meta_path = root / "damaged" / "run.json"
        meta = json.loads(meta_path.read_text())
        meta["run_id"] = "damaged"
        meta_path.write_text(json.dumps(meta))
        damage(root / "damaged")
        problems: list[str] = []
        tracebacks = 0
        readers = [
            ["runs"],
            ["compare", "good-a", "damaged"],
            ["recommend", "--shape", PROBLEM],
            ["report", "good-a"],
            ["report", "damaged"],
            ["run", "--resume", "damaged"],
        ]
        for args in readers:
            result = CliRunner().invoke(cli, [*args, "--results", str(root)])
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                tracebacks += 1
                problems.append(
                    f"{' '.join(args)}: {type(result.exception).__name__}: {result.exception}"[:200]
                )
            elif "Traceback" in result.output:
                tracebacks += 1
                problems.append(f"{' '.join(args)}: a traceback in the output")
        try:
            from sharedconv.dashboard import data

            data.load([root])
        except ImportError:
            pass
        except Exception as e:  # noqa: BLE001 - counted, that is the point
            tracebacks += 1
            problems.append(f"dashboard loader: {type(e).__name__}: {e}"[:200])
        lost = duplicated = 0
        try:
            runs, _ = find_runs([root])
            by_id = {r.run_id: r for r in runs}
            for run_id in ("good-a", "good-b"):
                got = [c.case for c in by_id[run_id].cases] if run_id in by_id else []
                lost += len(stored[run_id]) - len(set(got))
                duplicated += len(got) - len(set(got))
            if (root / "damaged" / "run.json").is_file():
                try:
                    got = [c.case for c in read_run(root / "damaged").cases]
                    duplicated += len(got) - len(set(got))
                except Exception:  # noqa: BLE001 - a refused run is not a duplicate
                    pass
        except Exception as e:  # noqa: BLE001
            tracebacks += 1
            problems.append(f"find_runs: {type(e).__name__}: {e}"[:200])
        attempts.append(
            {
                "name": name,
                "traceback": tracebacks > 0,
                "lost": lost,
                "duplicated": duplicated,
                "problems": problems,
            }
        )
    return attempts


# --------------------------------------------------------------------------- report


def render(bad: list[dict[str, Any]], damaged: list[dict[str, Any]]) -> str:
    tb_bad = [a for a in bad if a["traceback"]]
    accepted = [a for a in bad if a["accepted"] and not a["traceback"]]
    written = [a for a in bad if a["written"]]
    tb_dam = [a for a in damaged if a["traceback"]]
    lost = sum(a["lost"] for a in damaged)
    dup = sum(a["duplicated"] for a in damaged)
    lines = [
        MARK,
        "Measured with `python scripts/bench_reliability.py --write-doc docs/reliability.md`:",
        "",
        "| attempts | tried | traceback (goal 0) | accepted (exit 0) | wrote a file | stored cases lost / duplicated (goal 0) |",
        "|---|---:|---:|---:|---:|---:|",
        f"| bad input on the command line | {len(bad)} | {len(tb_bad)} | {len(accepted)} | {len(written)} | - |",
        f"| damaged results, every reader | {len(damaged)} | {len(tb_dam)} | - | - | {lost} / {dup} |",
        f"| **all** | **{len(bad) + len(damaged)}** | **{len(tb_bad) + len(tb_dam)}** | | | **{lost} / {dup}** |",
        "",
    ]
    failures = [
        *(f"- bad input, {a['name']}: traceback: {a['detail']}" for a in tb_bad),
        *(f"- bad input, {a['name']}: accepted: {a['detail']}" for a in accepted),
        *(f"- bad input, {a['name']}: wrote into the results folder" for a in written),
        *(f"- damaged, {a['name']}: {'; '.join(a['problems'])}" for a in tb_dam),
        *(f"- damaged, {a['name']}: {a['lost']} lost, {a['duplicated']} duplicated" for a in damaged if a["lost"] or a["duplicated"]),
    ]  # fmt: skip
    lines += (
        ["Every attempt that missed a goal:", "", *failures]
        if failures
        else ["No attempt missed a goal."]
    )
    lines += [
        "",
        "<details><summary>Every attempt</summary>",
        "",
        *(f"- bad input: {a['name'].replace('|', '/')} → {a['detail'].replace('|', '/')}" for a in bad),
        *(f"- damaged results: {a['name'].replace('|', '/')}" for a in damaged),
        "",
        "</details>",
        MARK,
    ]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write-doc", type=Path, help="Replace the section in this Markdown file.")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sharedconv-reliability-"))
    try:
        inputs = bad_inputs() + import_files(tmp)
        bad = [attempt_bad_input(name, argv, tmp) for name, argv in inputs]
        damaged = damaged_results(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = render(bad, damaged)
    print(text)
    if args.write_doc:
        write_section(args.write_doc, MARK, text)


if __name__ == "__main__":
    main()
