"""The results store: one SQLite row per run or evaluation, shared by every notebook.

The database lives at `<scale dir>/results.sqlite`, in WAL mode with a busy
timeout, and every write is one short transaction on its own connection, so
several processes (notebooks, command-line runs) can write at once and a fork
never inherits an open connection. `cached_run` makes a run whose config and
data hashes already have a row return that row instead of training again.

A store in a folder this process cannot write (a shared or archived copy of a
study) is opened read-only: cached rows read as usual, and a run that would
need a new row is refused before it starts. sqlite's errors about the file
itself (damaged, unwritable, locked for too long) are LabErrors naming it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import sqlite3
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np
import pandas as pd

from ..errors import LabError
from ..paths import REPO, scale_dir
from ..scales import Scale


@dataclass(frozen=True)
class ResultRow(Mapping):
    """One stored result: a pretraining checkpoint (domain "generic") or a specialization.

    The one row type of the lab: the store returns it, every method's `specialize` returns
    it, the study and the notebooks read it. It also reads as a mapping (`row["ppl_after"]`,
    `{**row}`), so tables take it as they take a dict. What a method measures beyond the
    columns is in `extra`.
    """
    method: str
    scale: str
    domain: str
    set_tokens: int | None = None
    pretrain_tokens: int | None = None
    pretrain_flops: float | None = None
    specialize_tokens: int | None = None
    specialize_flops: float | None = None
    inference_flops_per_token: float | None = None
    seconds: float | None = None
    ppl_before: float | None = None
    """Test perplexity on the domain before specialization (generic validation perplexity for a
    pretraining row)."""
    ppl_after: float | None = None
    seed: int | None = None
    config_hash: str | None = None
    data_hash: str | None = None
    code_version: str | None = None
    device: str | None = None
    extra: dict = field(default_factory=dict)
    id: int | None = None
    created: float | None = None
    cache_key: str | None = None
    cached: bool = False
    """Whether it came from the store rather than from a run just now."""

    REPORTED = ("method", "scale", "domain", "set_tokens", "seed", "ppl_before", "ppl_after", "pretrain_flops",
                "specialize_flops", "inference_flops_per_token", "pretrain_tokens", "specialize_tokens", "seconds",
                "device", "cached")

    def __getitem__(self, key: str):
        if key in _ROW_FIELDS:
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self):
        return iter(_ROW_FIELDS)

    def __len__(self) -> int:
        return len(_ROW_FIELDS)

    def report(self) -> dict:
        """The fields a user reads (the command line's JSON): costs, perplexities, identity."""
        return {k: self[k] for k in self.REPORTED}


_ROW_FIELDS = tuple(f.name for f in dataclasses.fields(ResultRow))
_SQL = {"int": "INTEGER", "float": "REAL", "str": "TEXT", "dict": "TEXT"}
COLUMNS: dict[str, str] = {f.name: _SQL[f.type.split(" |")[0]] for f in dataclasses.fields(ResultRow)
                           if f.name not in ("id", "created", "cache_key", "cached")}
"""Stored columns and their SQL types. Anything else given to `add` goes into `extra` (JSON)."""

BUSY_TIMEOUT_S = 60.0


def _jsonable(obj: Any):
    if isinstance(obj, Scale):  # a scale enters keys by name; its numbers enter through the configs it makes
        return obj.name
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, set, frozenset)):
        return str(obj) if isinstance(obj, Path) else sorted(obj)
    raise TypeError(f"cannot hash or store {type(obj).__name__}")


def stable_hash(obj: Any) -> str:
    """Hash of a JSON-able value (dataclasses, numpy scalars and paths allowed); key order does not matter."""
    text = json.dumps(obj, sort_keys=True, default=_jsonable, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def data_hash(*arrays: np.ndarray) -> str:
    """Hash of token streams' contents (memmaps are read in 64 MiB slices)."""
    h = hashlib.blake2b(digest_size=8)
    for a in arrays:
        a = np.asarray(a)
        h.update(f"{a.dtype}:{a.shape}".encode())
        flat = a.reshape(-1)
        step = max(1, (64 << 20) // max(a.itemsize, 1))
        for i in range(0, len(flat), step):
            h.update(np.ascontiguousarray(flat[i:i + step]).tobytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def code_version() -> str:
    """`git describe` of the repository (or "nogit") plus a hash of the lab's own sources,
    so that uncommitted edits to lab/ change the version too."""
    try:
        describe = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True,
                                  text=True, timeout=10).stdout.strip() or "nogit"
    except (OSError, subprocess.SubprocessError):
        describe = "nogit"
    h = hashlib.sha256()
    lab = Path(__file__).resolve().parent.parent
    for path in sorted(lab.rglob("*.py")):
        h.update(str(path.relative_to(lab)).encode())
        h.update(path.read_bytes())
    return f"{describe}+{h.hexdigest()[:10]}"


class Merged(NamedTuple):
    added: int
    present: int
    """Rows whose cache key was already here (kept as they were)."""
    checkpoints: list[str]
    """The checkpoint folders the other store's rows name, as paths on the machine that wrote them."""


class ResultStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LabError(f"cannot create the folder of the results store {self.path} ({e}); "
                           "point LAB_DATA at a writable folder") from None
        self.read_only = not os.access(self.path.parent, os.W_OK) or (
            self.path.exists() and not os.access(self.path, os.W_OK))
        if self.read_only:
            if not self.path.exists():
                raise LabError(f"{self.path.parent} is not writable and holds no results store; make it "
                               "writable or point LAB_DATA at a writable folder")
            return
        # Switching a new database to WAL ignores the busy timeout, so two processes
        # opening it at the same moment retry here instead.
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        with self._errors():
            while True:
                try:
                    self._create_schema()
                    break
                except sqlite3.OperationalError as e:
                    if "locked" not in str(e) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.DatabaseError, pd.errors.DatabaseError) as e:
            raise LabError(self._explain(e)) from None

    def _explain(self, e: Exception) -> str:
        """What sqlite's error `e` (or pandas' wrapping of it) means for the user, in one line."""
        if isinstance(e, pd.errors.DatabaseError) and e.__cause__ is not None:
            e = e.__cause__
        if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
            return (f"{self.path} stayed locked by another process for over {BUSY_TIMEOUT_S:.0f} s ({e}); "
                    "run again when that process is done")
        if isinstance(e, sqlite3.OperationalError):
            return (f"{self.path} cannot be read or written ({e}): check that it and its folder are writable "
                    "and the disk has space, or point LAB_DATA at a writable copy")
        return (f"{self.path} is damaged or not a results store ({e}): move it aside and run again to start a "
                "new one (runs are then computed again), or restore a copy; `python -m lab results merge` "
                "copies in the rows of a readable copy")

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._errors():
            db = self._connect()
            try:
                yield db
            finally:
                db.close()

    def check_writable(self) -> None:
        if self.read_only:
            raise LabError(f"{self.path} is read-only here (it or its folder cannot be written), so no result "
                           "can be stored; make it writable or point LAB_DATA at a writable copy")

    def _create_schema(self) -> None:
        db = self._connect()
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS results (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                       "created REAL NOT NULL, cache_key TEXT UNIQUE)")
            present = {row[1] for row in db.execute("PRAGMA table_info(results)")}
            for name, kind in COLUMNS.items():
                if name not in present:  # new columns reach old databases
                    try:
                        db.execute(f"ALTER TABLE results ADD COLUMN {name} {kind}")
                    except sqlite3.OperationalError as e:  # another process added it first
                        if "duplicate column" not in str(e):
                            raise
        finally:
            db.close()

    @classmethod
    def for_scale(cls, scale: str) -> "ResultStore":
        return cls(scale_dir(scale) / "results.sqlite")

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            return self._connect_read_only()
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        return db

    def _connect_read_only(self) -> sqlite3.Connection:
        uri = self.path.resolve().as_uri()
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            db.execute("SELECT count(*) FROM sqlite_master")
            return db
        except sqlite3.OperationalError:
            # A WAL database opens read-only only beside its shared-memory file, which
            # this folder cannot hold; no writer is running then (it would have made
            # that file), so the database is immutable while we read it.
            db.close()
            return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)

    def add(self, *, cache_key: str | None = None, extra: Mapping[str, Any] | None = None, **fields) -> int:
        """Insert a row; returns its id. Fields that are not columns go into `extra`. With a
        `cache_key` already present, inserts nothing and returns the existing row's id. A
        perplexity that is not finite (a run that diverged) is refused: it would read as a result."""
        self.check_writable()
        for name in ("ppl_before", "ppl_after"):
            value = fields.get(name)
            if value is not None and not math.isfinite(value):
                raise LabError(f"{fields.get('method')} on {fields.get('domain')}: {name} is {value}, not a "
                               "finite perplexity (the run diverged); nothing was stored, so running it again "
                               "retries it")
        extra = {**(extra or {}), **{k: fields.pop(k) for k in list(fields) if k not in COLUMNS}}
        fields.setdefault("code_version", code_version())
        fields["extra"] = json.dumps(extra, sort_keys=True, default=_jsonable)
        fields = {k: v.item() if isinstance(v, np.generic) else v for k, v in fields.items()}
        names = ["created", "cache_key", *fields]
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            cur = db.execute(f"INSERT OR IGNORE INTO results ({', '.join(names)}) "
                             f"VALUES ({', '.join('?' * len(names))})", [time.time(), cache_key, *fields.values()])
            row_id = cur.lastrowid if cur.rowcount else \
                db.execute("SELECT id FROM results WHERE cache_key = ?", [cache_key]).fetchone()[0]
            db.execute("COMMIT")
        return row_id

    def get(self, cache_key: str) -> ResultRow | None:
        with self._db() as db:
            db.row_factory = sqlite3.Row
            row = db.execute("SELECT * FROM results WHERE cache_key = ?", [cache_key]).fetchone()
        if row is None:
            return None
        out = dict(row)
        out["extra"] = json.loads(out["extra"] or "{}")
        return ResultRow(**{k: v for k, v in out.items() if k in _ROW_FIELDS})

    def merge(self, other: str | Path) -> "Merged":
        """Copy in the rows of another results store (e.g. part of a study run on a GPU machine
        against the same corpus): rows whose cache key is already here are kept as they are, so
        merging twice adds nothing."""
        other = Path(other)
        if not other.is_file():
            raise LabError(f"{other} does not exist; give the path of another results.sqlite")
        try:
            src = sqlite3.connect(f"file:{other}?mode=ro", uri=True)
            rows = src.execute("SELECT * FROM results ORDER BY id")
            names = [d[0] for d in rows.description]
            rows = rows.fetchall()
            src.close()
        except sqlite3.DatabaseError as e:
            raise LabError(f"{other} is not a results store ({e}); give the results.sqlite "
                           "that a study or specialize run wrote") from None
        unknown = [n for n in names if n not in COLUMNS and n not in ("id", "created", "cache_key")]
        if unknown:
            raise LabError(f"{other} has columns this lab does not know ({', '.join(unknown)}); "
                           "update the lab before merging it")
        # Rows without a key are not results a study reuses; ids are this store's own.
        records = [r for r in (dict(zip(names, row)) for row in rows) if r["cache_key"] is not None]
        names = [n for n in names if n != "id"]
        self.check_writable()
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            added = 0
            for r in records:
                added += db.execute(f"INSERT OR IGNORE INTO results ({', '.join(names)}) "
                                    f"VALUES ({', '.join('?' * len(names))})", [r[n] for n in names]).rowcount
            db.execute("COMMIT")
        extras = [json.loads(r.get("extra") or "{}") for r in records]
        return Merged(added, len(records) - added,
                      sorted({e["checkpoint_path"] for e in extras if e.get("checkpoint_path")}))

    def load(self) -> pd.DataFrame:
        """All rows, oldest first; `extra` parsed into dicts."""
        with self._db() as db:
            df = pd.read_sql_query("SELECT * FROM results ORDER BY id", db)
        df["extra"] = [json.loads(e or "{}") for e in df["extra"]]
        return df


def missing_checkpoints(paths: list[str], scale: str) -> list[str]:
    """Of checkpoint folders named on another machine (under its `checkpoints/`), those this
    scale's `checkpoints/` lacks, relative to it. A row keyed by its own checkpoint's hash
    (SLM-is) is only found again by a study here that has the same files."""
    here = scale_dir(scale) / "checkpoints"
    missing = set()
    for parts in (Path(p).parts for p in paths):
        if "checkpoints" in parts:
            after_last = len(parts) - parts[::-1].index("checkpoints")
            rel = Path(*parts[after_last:])
            if not (here / rel / "meta.json").exists():
                missing.add(str(rel))
    return sorted(missing)


def load_results(scale: str) -> pd.DataFrame:
    return ResultStore.for_scale(scale).load()


def cached_run(store: ResultStore, key: Mapping[str, Any], fn: Callable[[], Mapping[str, Any]], *,
               data_hash: str = "") -> ResultRow:
    """The stored row for `key` and `data_hash`, or run `fn()` and store its row.

    `key` holds everything that decides the result (method, scale, domain,
    configs, seed, ...); fields of it that are columns fill those columns, and
    `config_hash` is its hash. `fn()` returns the measured fields (costs,
    perplexities, anything else goes to `extra`). Two processes that miss at
    the same moment both run `fn`, and the first to finish wins the row.
    The returned row's `cached` says whether it came from the store.
    """
    config_hash = stable_hash(key)
    cache_key = stable_hash([config_hash, data_hash])
    row = store.get(cache_key)
    if row is not None:
        return dataclasses.replace(row, cached=True)
    store.check_writable()  # before the run spends its compute, not after
    result = dict(fn())
    columns = {k: v.name if isinstance(v, Scale) else v for k, v in key.items() if k in COLUMNS and k != "extra"}
    store.add(cache_key=cache_key, **{**columns, **result, "config_hash": config_hash, "data_hash": data_hash})
    return store.get(cache_key)
