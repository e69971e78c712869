"""pytest-benchmark JSON: merging per-backend files, and importing them as runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .store import RunWriter, StoreError

REQUIRED_EXTRA = (
    "sharedconv_case",
    "backend",
    "strategy",
    "problem",
    "mode",
    "flops",
    "fewest_bytes",
)


class ImportRefused(ValueError):
    """A file that is not pytest-benchmark JSON carrying sharedconv's extra_info."""


def merge(files: list[Path]) -> dict[str, Any]:
    """One pytest-benchmark document from several (machine and commit info of the first)."""
    merged: dict[str, Any] | None = None
    for path in files:
        doc = json.loads(Path(path).read_text())
        if merged is None:
            merged = {k: v for k, v in doc.items() if k != "benchmarks"}
            merged["benchmarks"] = []
        merged["benchmarks"].extend(doc.get("benchmarks", []))
    if merged is None:
        raise ValueError("nothing to merge")
    return merged


def load_document(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ImportRefused(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ImportRefused(
            f"{path} is not JSON ({e}); expected a file written by pytest --benchmark-json"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise ImportRefused(
            f"{path} is not a pytest-benchmark file (no 'benchmarks' list); write one with pytest --benchmark-json FILE"
        )
    return doc


def to_records(doc: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Case records for the benchmarks that carry sharedconv's extra_info, and how many were
    foreign (skipped)."""
    records = []
    foreign = 0
    for bench in doc["benchmarks"]:
        extra = bench.get("extra_info") or {}
        stats = bench.get("stats") or {}
        if any(k not in extra for k in REQUIRED_EXTRA) or "median" not in stats:
            foreign += 1
            continue
        data = stats.get("data") or []
        # pytest-benchmark times in the pytest process, under its environment's allocator
        malloc = extra.get("malloc", "system")
        records.append(
            {
                "schema": 1,
                "case": f"{extra['sharedconv_case']}/{malloc}",
                "malloc": malloc,
                "backend": extra["backend"],
                "strategy": extra["strategy"],
                "problem": extra["problem"],
                "params": extra.get("params", {}),
                "mode": extra["mode"],
                "device": extra.get("device", "cpu"),
                "dtype": extra.get("dtype"),
                "threads": extra.get("threads"),
                "flops": extra["flops"],
                "fewest_bytes": extra["fewest_bytes"],
                "seed_option": extra.get("seed_option"),
                "input_layout": extra.get("input_layout"),
                "output_layout": extra.get("output_layout"),
                "timed_region": extra.get("timed_region", ""),
                "setup_s": extra.get("setup_s"),
                "first_call_s": extra.get("first_call_s"),
                "status": "pass",
                "verify": extra.get("verify"),
                "timed": True,
                "timing": {
                    "block_size": 1,
                    "block_times": data,
                    "source": f"pytest-benchmark ({bench.get('fullname', bench.get('name'))})",
                    "stats": {
                        "n": stats.get("rounds"),
                        "median": stats["median"],
                        "q1": stats.get("q1"),
                        "q3": stats.get("q3"),
                        "iqr": stats.get("iqr"),
                        "min": stats.get("min"),
                        "max": stats.get("max"),
                        "mean": stats.get("mean"),
                        "std": stats.get("stddev"),
                        "ci_low": None,
                        "ci_high": None,
                        "noisy": bool(
                            stats.get("iqr")
                            and stats["median"]
                            and stats["iqr"] / stats["median"] > 0.1
                        ),
                    },
                },
            }
        )
    return records, foreign


def import_file(path: Path, root: Path, run_id: str) -> tuple[RunWriter, int, int]:
    doc = load_document(path)
    records, foreign = to_records(doc)
    if not records:
        raise ImportRefused(
            f"{path} has {len(doc['benchmarks'])} benchmark(s) but none carries sharedconv's extra_info "
            f"({', '.join(REQUIRED_EXTRA)}); only benchmarks written with the sharedconv_case fixture can be imported"
        )
    machine = doc.get("machine_info") or {}
    meta = {
        "command": f"sharedconv import {path}",
        "suite": "pytest-benchmark import",
        "problems": sorted({r["problem"] for r in records}),
        "backends": sorted({r["backend"] for r in records}),
        "modes": sorted({r["mode"] for r in records}),
        "threads": records[0].get("threads"),
        "malloc": sorted({r["malloc"] for r in records}),
        "machine": {
            "hostname": machine.get("node"),
            "cpu_model": (machine.get("cpu") or {}).get("brand_raw")
            or machine.get("processor")
            or machine.get("machine"),
            "python": machine.get("python_version"),
            "gpu": None,
        },
        "project": {"commit": (doc.get("commit_info") or {}).get("id")},
        "imported_from": str(path),
        "datetime": doc.get("datetime"),
        "workers": {},
    }
    try:
        writer = RunWriter.create(root, run_id, meta)
    except StoreError:
        raise
    for r in records:
        writer.append(r)
    writer.finish()
    return writer, len(records), foreign
