"""The results store: ``results/<run-id>/run.json`` and ``cases.jsonl``.

``cases.jsonl`` gets one JSON line per finished case, flushed and fsynced as the case ends,
so killing a run at any moment loses at most the case in flight. Readers skip a damaged line
(a half-written last line, a foreign file) with a warning and keep the rest. Nothing is ever
unpickled. The schema is documented in ``results/README.md``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .records import CASE_SCHEMA, FINAL, RUN_SCHEMA, CaseRecord, RecordError, RunMeta


class StoreError(ValueError):
    """A run cannot be created, read or continued as asked (the message says why)."""


class StorageFailure(StoreError):
    """The file system refused a write (read-only, full, a file in the way): the message
    names the path and the operating system's reason."""


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


class RunWriter:
    """Writes one run; create it with :meth:`create` or reopen it with :meth:`resume`."""

    def __init__(self, folder: Path, meta: dict[str, Any]):
        self.folder = folder
        self.meta = meta
        self._lock = OwnerLock.acquire(folder)  # before anything is written
        try:
            self._cases = open(folder / "cases.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - open for the run
        except OSError as e:
            self._lock.release()
            raise StorageFailure(f"cannot write {folder / 'cases.jsonl'}: {e.strerror}") from None

    @classmethod
    def create(cls, root: Path, run_id: str, meta: dict[str, Any]) -> RunWriter:
        folder = run_folder(root, run_id)
        try:
            Path(root).mkdir(parents=True, exist_ok=True)
        except OSError as e:  # read-only, a file in the way, no such device, ...
            raise StorageFailure(f"cannot create {root}: {e.strerror}") from None
        try:
            folder.mkdir()  # atomic: of two processes creating one run, exactly one succeeds
        except FileExistsError:
            if (folder / "run.json").exists():
                raise StoreError(
                    f"run {run_id!r} already exists in {root}; use --resume {run_id} to continue it"
                ) from None
            raise StoreError(
                f"{folder} exists and is not a run (or another process is creating it); "
                "choose another --run-id"
            ) from None
        except OSError as e:  # read-only, a file in the way, no such device, ...
            raise StorageFailure(f"cannot create {folder}: {e.strerror}") from None
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
        # the same validation as every reader: a damaged, foreign or newer run.json is refused
        # with its reason, and never written into
        run = read_run(folder)
        meta = run.meta.to_dict()  # the writer's own copy, extended as the run goes on
        done = {r.case for r in run.cases if r.status in FINAL}  # idents as read_run made them
        _truncate_damaged_tail(folder / "cases.jsonl")
        meta["status"] = "running"
        meta.setdefault("resumed", []).append(_now())
        writer = cls(folder, meta)
        writer.save_meta()
        return writer, done

    def append(self, record: CaseRecord | dict[str, Any]) -> CaseRecord:
        """Write one case's record; returns it as every reader will read it."""
        line, stored = case_line(record)
        write_whole_line(self._cases, line)
        return stored

    def save_meta(self) -> None:
        text = to_json(self.meta, indent=1)
        try:  # what is written reads back as a RunMeta: a writer's bug is caught here
            RunMeta.from_dict(json.loads(text))
        except RecordError as e:
            raise StoreError(
                f"sharedconv made a run.json its readers refuse: the field {e}"
            ) from None
        tmp = self.folder / "run.json.tmp"
        try:
            tmp.write_text(text)
            os.replace(tmp, self.folder / "run.json")
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise StorageFailure(f"cannot write {self.folder / 'run.json'}: {e.strerror}") from None

    def finish(self, status: str = "complete") -> None:
        """Mark the run ended (best effort when the disk is what failed: the lock is still
        released, and a run whose writer is gone reads as interrupted anyway)."""
        self.meta["status"] = status
        self.meta["ended"] = _now()
        try:
            self.save_meta()
        finally:
            with contextlib.suppress(OSError):
                self._cases.close()
            self._lock.release()


def case_line(record: CaseRecord | dict[str, Any]) -> tuple[str, CaseRecord]:
    """One line of ``cases.jsonl``/``rounds.jsonl`` (strict JSON of the record, schema first)
    and the record as a reader will read that line.

    A record made in this process may be a dict still (the worker's parts merged); it is written
    only when it reads back as a :class:`CaseRecord`, so a writer's bug is caught here, not by
    every reader later: the line becomes the case's ``error`` with the field named."""
    data = record.to_dict() if isinstance(record, CaseRecord) else record
    line = to_json({"case_schema": CASE_SCHEMA, **data})
    try:
        return line, CaseRecord.from_dict(json.loads(line))
    except RecordError as e:
        keep = {k: str(data.get(k)) for k in ("case", "backend", "strategy", "problem", "mode")}
        keep.update({k: data[k] for k in ("device", "malloc") if isinstance(data.get(k), str)})
        line = to_json(
            {
                "case_schema": CASE_SCHEMA,
                **keep,
                "status": "error",
                "reason": f"sharedconv could not store this case's record: its field {e}",
            }
        )
    return line, CaseRecord.from_dict(json.loads(line))


def write_whole_line(f: Any, line: str) -> None:
    """Append ``line`` and make it durable, or leave the file as it was: a write that fails
    (disk full, I/O error) is cut back, so no half line is ever left behind."""
    start = f.tell()
    try:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
    except OSError as e:
        with contextlib.suppress(OSError):
            f.truncate(start)
            f.seek(start)
        raise StorageFailure(f"cannot write {f.name}: {e.strerror}") from None


class OwnerLock:
    """The writer's exclusive ``flock`` on ``<run>/owner.lock``, held while it writes.

    The kernel drops it when the process dies, however it dies, so "running" in run.json with
    no lock held means the writer is gone: readers show such a run as interrupted. A second
    writer (``--resume`` of a live run) is refused at once, naming the owner's pid.
    """

    NAME = "owner.lock"

    def __init__(self, file: Any):
        self._file = file

    @classmethod
    def acquire(cls, folder: Path) -> OwnerLock:
        import fcntl

        path = Path(folder) / cls.NAME
        try:
            f = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the writer's life
        except OSError as e:
            raise StorageFailure(f"cannot write {path}: {e.strerror}") from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip() or "?"
            f.close()
            raise StoreError(
                f"run {Path(folder).name!r} is being written by another process (pid {owner}); "
                "wait for it to finish, or stop it and resume"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        return cls(f)

    def release(self) -> None:
        if not self._file.closed:
            self._file.close()  # closing drops the flock

    @staticmethod
    def held(folder: Path) -> bool:
        """Whether a live process holds the run's lock (False when there is no lock file)."""
        import fcntl

        path = Path(folder) / OwnerLock.NAME
        try:
            f = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError:
            return False
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            f.close()
        return False


class RoundLog:
    """``rounds.jsonl``: every round's record of a run measured in rounds, appended and
    flushed as each finishes, read back on --resume."""

    def __init__(self, path: Path):
        self.path = Path(path)
        _truncate_damaged_tail(self.path)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - open for the run

    def read(self) -> list[dict[str, Any]]:
        """Every round's record, as the dicts the runner merges."""
        records, _ = read_cases(self.path)
        return [r.to_dict() for r in records if r.round is not None]

    def append(self, record: dict[str, Any]) -> None:
        write_whole_line(self._file, case_line(record)[0])

    def close(self) -> None:
        self._file.close()


def _truncate_damaged_tail(path: Path) -> None:
    """Drop a half-written last line so the next append starts on a fresh line."""
    if not path.exists():
        return
    try:
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            path.write_bytes(data[:cut])
    except OSError as e:  # a folder where the file should be, no permission, a full disk
        raise StorageFailure(f"cannot use {path}: {e.strerror or e}") from None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _finite(value: Any, path: str, found: list[str]) -> Any:
    """``value`` with every non-finite number replaced by None (JSON has no NaN or Infinity;
    Python's json would write them, and other readers reject the file); ``found`` collects
    where they were."""
    if hasattr(value, "tolist") and not isinstance(value, (list, dict, str)):
        value = value.tolist()  # NumPy scalars and arrays
    if isinstance(value, float) and not math.isfinite(value):
        found.append(path or "(the value)")
        return None
    if isinstance(value, dict):
        return {k: _finite(v, f"{path}.{k}" if path else str(k), found) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v, f"{path}[{i}]", found) for i, v in enumerate(value)]
    return value


def to_json(value: dict[str, Any], **kwargs: Any) -> str:
    """What every writer of results writes: strict JSON (``allow_nan=False``), a non-finite
    number written as null and its place named in ``non_finite``."""
    found: list[str] = []
    clean = _finite(value, "", found)
    if found:
        clean["non_finite"] = found[:20]
    return json.dumps(clean, default=_jsonable, allow_nan=False, **kwargs)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


# ---- reading -------------------------------------------------------------------------------
def read_cases(path: Path) -> tuple[list[CaseRecord], list[str]]:
    """Every valid case line of a ``cases.jsonl``, and a warning per skipped line.

    A line is skipped, with a warning naming the file, line and reason, when it is not JSON
    (a kill during a write), not UTF-8, not a sharedconv record, of a newer schema, or holds a
    field of the wrong type. A case written twice counts once: the last line wins (a resumed
    round, a hand-merged file), and the warning says so.
    """
    records: dict[str, CaseRecord] = {}
    warnings: list[str] = []
    if not Path(path).exists():
        return [], [f"{path}: missing"]
    try:
        return _read_case_lines(path, records, warnings)
    except OSError as e:  # a folder where the file should be, no permission, an I/O error
        return list(records.values()), [*warnings, f"{path}: cannot be read ({e.strerror or e})"]


def _read_case_lines(
    path: Path, records: dict[str, CaseRecord], warnings: list[str]
) -> tuple[list[CaseRecord], list[str]]:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                warnings.append(f"{where}: skipped a line that is not UTF-8 text")
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as e:
                why = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply"
                warnings.append(f"{where}: skipped a damaged line ({why})")
                continue
            if not isinstance(record, dict):
                warnings.append(f"{where}: skipped a line that is not a sharedconv case record")
                continue
            if _newer(record):
                warnings.append(f"{where}: skipped a record of a newer schema; upgrade sharedconv")
                continue
            _rename(record)
            try:
                case = CaseRecord.from_dict(record)
            except RecordError as e:
                what = str(e)
                warnings.append(
                    f"{where}: skipped a line that is not a sharedconv case record"
                    if what.startswith("(")
                    else f"{where}: skipped a record whose field {what}"
                )
                continue
            # rounds.jsonl holds one line per round of a case: each round is its own record
            key = f"{case.case}#{'' if case.round is None else case.round}"
            if key in records:
                warnings.append(f"{where}: case {case.case!r} again; the last line counts")
                del records[key]  # keep the file order of the line that counts
            records[key] = case
    return list(records.values()), warnings


def _newer(record: dict[str, Any]) -> bool:
    schema = record.get("case_schema", CASE_SCHEMA)
    return isinstance(schema, int) and not isinstance(schema, bool) and schema > CASE_SCHEMA


def _rename(record: dict[str, Any]) -> None:
    """A record of a renamed built-in strategy, read under its current name (the old one is
    kept as ``formerly``); its case id follows, so a resumed run does not measure it again."""
    from sharedconv.backends.registry import former_names

    backend, old = record.get("backend"), record.get("strategy")
    named = isinstance(backend, str) and isinstance(old, str)
    new = former_names().get((backend, old)) if named else None
    if new is None:
        return
    record["strategy"], record["formerly"] = new, old
    prefix = f"{backend}/{old}/"
    if str(record.get("case")).startswith(prefix):
        record["case"] = f"{backend}/{new}/" + record["case"][len(prefix) :]


@dataclass
class Run:
    run_id: str
    folder: Path
    meta: RunMeta
    cases: list[CaseRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        device = self.meta.machine.name if self.meta.machine else "unknown machine"
        if self.meta.device != "cpu" and self.meta.precision:
            device += f", {self.meta.precision}"  # e.g. the GPU check's TF32 on/off runs
        return f"{self.run_id} ({device}, {self.meta.suite or 'ad hoc'})"


def read_run(folder: Path) -> Run:
    folder = Path(folder)
    meta_path = folder / "run.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"{folder} has no run.json; not a sharedconv run") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        why = e.msg if isinstance(e, json.JSONDecodeError) else "not UTF-8 JSON"
        raise StoreError(f"{meta_path} is damaged ({why})") from None
    except OSError as e:
        raise StoreError(f"{meta_path} cannot be read ({e.strerror})") from None
    if not isinstance(meta, dict) or "run_id" not in meta:
        raise StoreError(f"{meta_path} is not a sharedconv run description")
    schema = meta.get("schema", RUN_SCHEMA)
    if isinstance(schema, int) and not isinstance(schema, bool) and schema > RUN_SCHEMA:
        raise StoreError(f"{meta_path} has schema {schema}; this sharedconv reads {RUN_SCHEMA}")
    if meta.get("status") == "running" and not OwnerLock.held(folder):
        # its writer is gone (killed, crashed, the machine restarted): resumable
        meta["status"] = "interrupted"
        meta.setdefault(
            "status_note", "its writer stopped without finishing; --resume continues it"
        )
    try:
        typed = RunMeta.from_dict(meta)
    except RecordError as e:
        what = str(e)
        if what.startswith("("):
            raise StoreError(f"{meta_path} is not a sharedconv run description") from None
        raise StoreError(f"{meta_path}: the field {what}; the run is skipped") from None
    cases, warnings = read_cases(folder / "cases.jsonl")
    if any(r.malloc is None for r in cases):  # from before the allocator was a case dimension
        malloc = typed.mallocs[0]  # the run's one
        cases = [
            r if r.malloc is not None else r.replace(malloc=malloc, case=f"{r.case}/{malloc}")
            for r in cases
        ]
    return Run(typed.run_id, folder, typed, cases, warnings)


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
    runs.sort(key=lambda r: r.meta.started or "", reverse=True)
    return runs, skipped
