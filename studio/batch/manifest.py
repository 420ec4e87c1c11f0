"""The batch manifest: one SQLite row per item, so a batch survives kill -9 and resumes where it stopped.

Why SQLite (WAL mode): every state change is one transaction, so a kill at any moment leaves each item
either in its old state or its new one, never between; several worker processes on one machine can
claim items from one file without a server (`BEGIN IMMEDIATE` serialises the claims); and users can read
it with any SQLite tool. The batch owns one folder: the manifest sits beside the outputs.

Item states: pending -> running -> done | failed. An item is marked done only after its output is
complete on disk (written atomically by the caller), in the same transaction that records the output's
path and SHA-256. On resume, items caught running are redone, done items are skipped, and failed items
are retried only when asked. A manifest made for another spec (its fingerprint differs) is refused
rather than mixed with it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from studio.errors import InputError

MANIFEST_NAME = "manifest.sqlite"
SCHEMA_VERSION = 1
STATES = ("pending", "running", "done", "failed")
BUSY_TIMEOUT_MS = 60_000  # workers wait for each other's short transactions rather than fail

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    key TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    error TEXT,
    output TEXT,
    sha256 TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    started REAL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS items_by_state ON items (state, position);
"""


class ManifestError(InputError):
    """A manifest that belongs to another spec, is corrupt, or is from a newer studio."""


@dataclass(frozen=True)
class ItemRecord:
    key: str
    position: int
    state: str
    error: str | None
    output: str | None
    sha256: str | None
    attempts: int


class Manifest:
    """One batch's manifest. Open it with `Manifest.open`; every method is one short transaction."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, folder: Path, fingerprint: str, *, force_new: bool = False) -> Manifest:
        """Open (or create) the manifest in `folder` for the spec whose fingerprint is `fingerprint`.

        An existing manifest for another fingerprint is refused, unless `force_new` starts it over.
        """
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / MANIFEST_NAME
        try:
            connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = FULL")  # a done mark survives power loss, not only kill -9
            manifest = cls(connection, path)
            with manifest._write():
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    connection.execute(statement)
                manifest._claim_fingerprint(fingerprint, force_new)
        except sqlite3.DatabaseError as exc:
            raise ManifestError(f"{path}: not a usable batch manifest ({exc})") from exc
        return manifest

    @classmethod
    def open_existing(cls, folder: Path) -> Manifest:
        """Open the manifest already in `folder` to read it (`studio batch status`), whatever its spec."""
        path = folder / MANIFEST_NAME
        if not path.is_file():
            raise ManifestError(f"{folder}: no batch manifest here ({MANIFEST_NAME})")
        try:
            connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("SELECT COUNT(*) FROM items").fetchone()
        except sqlite3.DatabaseError as exc:
            raise ManifestError(f"{path}: not a usable batch manifest ({exc})") from exc
        return cls(connection, path)

    def _claim_fingerprint(self, fingerprint: str, force_new: bool) -> None:
        rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        version = int(rows.get("version", SCHEMA_VERSION))
        if version > SCHEMA_VERSION:
            raise ManifestError(f"{self.path}: written by a newer studio (manifest version {version}); upgrade")
        existing = rows.get("fingerprint")
        if existing is not None and existing != fingerprint:
            if not force_new:
                raise ManifestError(
                    f"{self.path.parent}: holds a batch made from a different spec; use another output folder,"
                    " or --force-new to start this folder over"
                )
            self._db.execute("DELETE FROM items")
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('fingerprint', ?)", (fingerprint,))
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (str(SCHEMA_VERSION),))

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction, taken at once (`BEGIN IMMEDIATE`) so concurrent writers queue instead of deadlock."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- items -------------------------------------------------------------------------------------------

    def add(self, keys: Iterable[str]) -> int:
        """Add items in order, keeping any already there (and their state); returns how many were new."""
        with self._write():
            start = self._db.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM items").fetchone()[0]
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO items (key, position, state) VALUES (?, ?, 'pending')",
                ((key, start + i) for i, key in enumerate(keys)),
            )
            return self._db.total_changes - before

    def resume(self, *, retry_failed: bool = False) -> int:
        """Return interrupted items (and, if asked, failed ones) to pending; call before any worker starts."""
        states = ("running", "failed") if retry_failed else ("running",)
        with self._write():
            marks = ",".join("?" * len(states))
            cursor = self._db.execute(
                f"UPDATE items SET state = 'pending', worker = NULL WHERE state IN ({marks})", states
            )
            return cursor.rowcount

    def claim(self, worker: str) -> str | None:
        """Take the first pending item for `worker` (marking it running); None when none is left."""
        with self._write():
            row = self._db.execute(
                "SELECT key FROM items WHERE state = 'pending' ORDER BY position LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            self._db.execute(
                "UPDATE items SET state = 'running', worker = ?, attempts = attempts + 1, started = ?,"
                " error = NULL WHERE key = ?",
                (worker, time.time(), row[0]),
            )
            return str(row[0])

    def start(self, key: str, worker: str) -> bool:
        """Mark one given item running for `worker` if it is pending; False if it is not (another took it)."""
        with self._write():
            cursor = self._db.execute(
                "UPDATE items SET state = 'running', worker = ?, attempts = attempts + 1, started = ?,"
                " error = NULL WHERE key = ? AND state = 'pending'",
                (worker, time.time(), key),
            )
            return cursor.rowcount == 1

    def release(self, key: str) -> None:
        """Put a running item back to pending (its run was abandoned, e.g. on Ctrl-C)."""
        with self._write():
            self._db.execute(
                "UPDATE items SET state = 'pending', worker = NULL WHERE key = ? AND state = 'running'", (key,)
            )

    def mark_done(self, key: str, output: str, sha256: str) -> None:
        """Record a finished item; call only after its output file is complete under its final name."""
        self._set(key, "done", output=output, sha256=sha256, error=None)

    def mark_failed(self, key: str, error: str) -> None:
        self._set(key, "failed", output=None, sha256=None, error=error.replace("\n", " "))

    def _set(self, key: str, state: str, *, output: str | None, sha256: str | None, error: str | None) -> None:
        with self._write():
            cursor = self._db.execute(
                "UPDATE items SET state = ?, output = ?, sha256 = ?, error = ?, finished = ? WHERE key = ?",
                (state, output, sha256, error, time.time(), key),
            )
            if cursor.rowcount != 1:
                raise ManifestError(f"{self.path}: no item {key!r}")

    # ---- reading -----------------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        found = dict(self._db.execute("SELECT state, COUNT(*) FROM items GROUP BY state").fetchall())
        return {state: int(found.get(state, 0)) for state in STATES}

    def items(self, state: str | None = None) -> list[ItemRecord]:
        query = "SELECT key, position, state, error, output, sha256, attempts FROM items"
        rows = (
            self._db.execute(query + " WHERE state = ? ORDER BY position", (state,))
            if state
            else self._db.execute(query + " ORDER BY position")
        )
        return [ItemRecord(*row) for row in rows.fetchall()]
