"""The results store: ``results/<run-id>/run.json`` and ``cases.jsonl``.

``cases.jsonl`` gets one JSON line per finished case, flushed and fsynced as the case ends,
so killing a run at any moment loses at most the case in flight. Readers skip a damaged line
(a half-written last line, a foreign file) with a warning and keep the rest. Nothing is ever
unpickled. The schema is documented in ``results/README.md``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .records import FINAL

RUN_SCHEMA = 1
CASE_SCHEMA = 1
REQUIRED_CASE_KEYS = ("case", "backend", "strategy", "problem", "mode", "status")
FINAL_STATUSES = FINAL  # a case with one of these is done: --resume does not run it again


class StoreError(ValueError):
    pass


RUN_ID_CHARS = "letters, digits, '.', '_' and '-'"


def run_folder(root: Path, run_id: str) -> Path:
    """``root/run_id``, after checking that the id is a plain name: it cannot climb out of
    ``root`` (``..``, an absolute path, a separator) or name ``root`` itself (``.``)."""
    ok = (
        isinstance(run_id, str)
        and 0 < len(run_id) <= 120
        and run_id not in (".", "..")
        and all(c.isascii() and (c.isalnum() or c in "._-") for c in run_id)
    )
    if not ok:
        raise StoreError(
            f"run id {run_id!r} is not a plain name: use {RUN_ID_CHARS} (at most 120), "
            "not '.' or '..'; a run always lives directly inside the results folder"
        )
    return Path(root) / run_id


def new_run_id(label: str = "") -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    host = socket.gethostname().split(".")[0][:20] or "host"
    parts = [stamp, host] + ([label] if label else [])
    text = "-".join(parts)
    return "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in text)


def record_ident(record: dict[str, Any], run_malloc: str | list[str] | None) -> str:
    """A stored record's case ident with its allocator: records from before the allocator
    was a case dimension carry neither, and were measured under their run's one ``malloc``."""
    if "malloc" in record:
        return record["case"]
    malloc = run_malloc[0] if isinstance(run_malloc, list) and run_malloc else run_malloc
    return f"{record['case']}/{malloc or 'fixed'}"


class RunWriter:
    """Writes one run; create it with :meth:`create` or reopen it with :meth:`resume`."""

    def __init__(self, folder: Path, meta: dict[str, Any]):
        self.folder = folder
        self.meta = meta
        self._cases = open(folder / "cases.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - open for the run

    @classmethod
    def create(cls, root: Path, run_id: str, meta: dict[str, Any]) -> RunWriter:
        folder = run_folder(root, run_id)
        if (folder / "run.json").exists():
            raise StoreError(
                f"run {run_id!r} already exists in {root}; use --resume {run_id} to continue it"
            )
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "schema": RUN_SCHEMA,
            "run_id": run_id,
            "status": "running",
            "started": _now(),
            **meta,
        }
        writer = cls(folder, meta)
        writer.save_meta()
        return writer

    @classmethod
    def resume(cls, root: Path, run_id: str) -> tuple[RunWriter, set[str]]:
        folder = run_folder(root, run_id)
        if not (folder / "run.json").exists():
            raise StoreError(f"no run {run_id!r} in {root}; `sharedconv runs` lists the runs there")
        meta = json.loads((folder / "run.json").read_text())
        records, _ = read_cases(folder / "cases.jsonl")
        malloc = meta.get("malloc")
        done = {record_ident(r, malloc) for r in records if r.get("status") in FINAL_STATUSES}
        _truncate_damaged_tail(folder / "cases.jsonl")
        meta["status"] = "running"
        meta.setdefault("resumed", []).append(_now())
        writer = cls(folder, meta)
        writer.save_meta()
        return writer, done

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps({"case_schema": CASE_SCHEMA, **record}, default=_jsonable)
        self._cases.write(line + "\n")
        self._cases.flush()
        os.fsync(self._cases.fileno())

    def save_meta(self) -> None:
        tmp = self.folder / "run.json.tmp"
        tmp.write_text(json.dumps(self.meta, indent=1, default=_jsonable))
        os.replace(tmp, self.folder / "run.json")

    def finish(self, status: str = "complete") -> None:
        self.meta["status"] = status
        self.meta["ended"] = _now()
        self.save_meta()
        self._cases.close()


class RoundLog:
    """``rounds.jsonl``: every round's record of a run measured in rounds, appended and
    flushed as each finishes, read back on --resume."""

    def __init__(self, path: Path):
        self.path = Path(path)
        _truncate_damaged_tail(self.path)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - open for the run

    def read(self) -> list[dict[str, Any]]:
        records, _ = read_cases(self.path)
        return [r for r in records if isinstance(r.get("round"), int)]

    def append(self, record: dict[str, Any]) -> None:
        self._file.write(
            json.dumps({"case_schema": CASE_SCHEMA, **record}, default=_jsonable) + "\n"
        )
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def _truncate_damaged_tail(path: Path) -> None:
    """Drop a half-written last line so the next append starts on a fresh line."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        path.write_bytes(data[:cut])


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


# ---- reading -------------------------------------------------------------------------------
def read_cases(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every valid case line of a ``cases.jsonl``, and a warning per skipped line."""
    records: list[dict[str, Any]] = []
    warnings: list[str] = []
    if not Path(path).exists():
        return records, [f"{path}: missing"]
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                warnings.append(f"{path}:{number}: skipped a damaged line ({e.msg})")
                continue
            if not isinstance(record, dict) or any(k not in record for k in REQUIRED_CASE_KEYS):
                warnings.append(
                    f"{path}:{number}: skipped a line that is not a sharedconv case record"
                )
                continue
            if record.get("case_schema", CASE_SCHEMA) > CASE_SCHEMA:
                warnings.append(
                    f"{path}:{number}: skipped a record of a newer schema; upgrade sharedconv"
                )
                continue
            records.append(record)
    return records, warnings


@dataclass
class Run:
    run_id: str
    folder: Path
    meta: dict[str, Any]
    cases: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        machine = self.meta.get("machine", {})
        device = machine.get("gpu") or machine.get("cpu_model") or "unknown machine"
        if self.meta.get("device", "cpu") != "cpu" and self.meta.get("precision"):
            device += f", {self.meta['precision']}"  # e.g. the GPU check's TF32 on/off runs
        return f"{self.run_id} ({device}, {self.meta.get('suite') or 'ad hoc'})"


def read_run(folder: Path) -> Run:
    folder = Path(folder)
    meta_path = folder / "run.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise StoreError(f"{folder} has no run.json; not a sharedconv run") from None
    except json.JSONDecodeError as e:
        raise StoreError(f"{meta_path} is damaged ({e.msg})") from None
    if not isinstance(meta, dict) or "run_id" not in meta:
        raise StoreError(f"{meta_path} is not a sharedconv run description")
    if meta.get("schema", RUN_SCHEMA) > RUN_SCHEMA:
        raise StoreError(
            f"{meta_path} has schema {meta.get('schema')}; this sharedconv reads {RUN_SCHEMA}"
        )
    cases, warnings = read_cases(folder / "cases.jsonl")
    for r in cases:
        if "malloc" not in r:  # from before the allocator was a case dimension
            r["case"] = record_ident(r, meta.get("malloc"))
            m = meta.get("malloc")
            r["malloc"] = (m[0] if isinstance(m, list) and m else m) or "fixed"
    return Run(meta["run_id"], folder, meta, cases, warnings)


def find_runs(roots: Iterable[Path]) -> tuple[list[Run], list[str]]:
    """Every run under the given folders (a folder may itself be a run), newest first, and
    what was skipped with the reason."""
    runs: list[Run] = []
    skipped: list[str] = []
    seen: set[Path] = set()
    for root in roots:
        root = Path(root)
        if not root.exists():
            skipped.append(f"{root}: no such folder")
            continue
        candidates = (
            [root]
            if (root / "run.json").exists()
            else sorted(p for p in root.iterdir() if p.is_dir())
        )
        for folder in candidates:
            if folder.resolve() in seen:
                continue
            seen.add(folder.resolve())
            if not (folder / "run.json").exists():
                if any(folder.iterdir()):
                    skipped.append(f"{folder}: no run.json (not a sharedconv run)")
                continue
            try:
                runs.append(read_run(folder))
            except StoreError as e:
                skipped.append(str(e))
    runs.sort(key=lambda r: r.meta.get("started", ""), reverse=True)
    return runs, skipped
