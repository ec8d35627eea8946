"""The reader study's grades on disk: one SQLite file in WAL mode, every grade committed durably.

``STUDY/study.sqlite`` holds four tables:

* ``readers``: name, role (``reader`` or ``admin``), the SHA-256 of the personal token (the token
  itself is never stored) and the reader's current position (``cursor``), so a reload or a new
  session resumes where the reader stopped;
* ``reads``: the blinded work list, ``read_id`` (an opaque random id), reader, position and the
  opaque image file; nothing here names a method, study or patient (that key is ``key.json``,
  which the server never opens);
* ``grades``: one row per (reader, read), ``UNIQUE(reader_id, read_id)``, so posting a read again
  revises its grades (``revisions`` counts how often) instead of adding a row;
* ``grade_log``: every grade ever posted, append-only, the audit trail of revisions.

Every connection sets ``journal_mode=WAL``, ``synchronous=FULL`` (a commit is on disk before it
returns, so a grade acknowledged to the browser survives a crash or ``SIGKILL``), foreign keys and
a busy timeout; writes take the write lock up front (``BEGIN IMMEDIATE``). Open one connection per
request or per thread (:func:`connect`); connections are not shared between threads.
"""

from __future__ import annotations

import datetime
import hashlib
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DB_NAME = "study.sqlite"
GRADES = (0, 1, 2, 3)

SCHEMA = """
CREATE TABLE IF NOT EXISTS readers (
    reader_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('reader', 'admin')),
    token_sha256 TEXT NOT NULL UNIQUE,
    cursor INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS reads (
    read_id TEXT PRIMARY KEY,
    reader_id INTEGER NOT NULL REFERENCES readers (reader_id),
    position INTEGER NOT NULL,
    image TEXT NOT NULL,
    UNIQUE (reader_id, position)
);
CREATE TABLE IF NOT EXISTS grades (
    reader_id INTEGER NOT NULL REFERENCES readers (reader_id),
    read_id TEXT NOT NULL REFERENCES reads (read_id),
    grade_left INTEGER NOT NULL CHECK (grade_left BETWEEN 0 AND 3),
    grade_right INTEGER NOT NULL CHECK (grade_right BETWEEN 0 AND 3),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    revisions INTEGER NOT NULL DEFAULT 0,
    UNIQUE (reader_id, read_id)
);
CREATE TABLE IF NOT EXISTS grade_log (
    id INTEGER PRIMARY KEY,
    reader_id INTEGER NOT NULL,
    read_id TEXT NOT NULL,
    grade_left INTEGER NOT NULL,
    grade_right INTEGER NOT NULL,
    at TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Reader:
    """An authenticated user: database id, name and role (``reader`` or ``admin``)."""

    reader_id: int
    name: str
    role: str


def hash_token(token: str) -> str:
    """SHA-256 (hex) of a personal token: what the database stores instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def connect(path: str | Path) -> sqlite3.Connection:
    """Open the study database: WAL, ``synchronous=FULL``, foreign keys, 30 s busy timeout.

    ``isolation_level=None`` (autocommit): transactions are explicit (``BEGIN IMMEDIATE`` ...
    ``COMMIT``) so that nothing stays open between requests.
    """
    path = Path(path)
    if path.is_dir():
        path = path / DB_NAME
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=True)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def init_db(
    path: str | Path,
    readers: Iterable[tuple[str, str, str]],
    reads: Iterable[tuple[str, str, int, str]],
) -> Path:
    """Create the database with its readers and work lists; returns its path.

    Args:
        path: The database file (must not exist yet).
        readers: ``(name, role, token_sha256)`` per user.
        reads: ``(read_id, reader name, position, image file name)`` per read.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; a study database is never overwritten")
    conn = connect(path)
    try:
        conn.executescript(SCHEMA)
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO readers (name, role, token_sha256) VALUES (?, ?, ?)", list(readers)
        )
        ids = {
            r["name"]: r["reader_id"] for r in conn.execute("SELECT reader_id, name FROM readers")
        }
        conn.executemany(
            "INSERT INTO reads (read_id, reader_id, position, image) VALUES (?, ?, ?, ?)",
            [(rid, ids[name], pos, image) for rid, name, pos, image in reads],
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return path


def reader_by_token(conn: sqlite3.Connection, token: str | None) -> Reader | None:
    """The user whose token hashes to a stored hash, or ``None``."""
    if not token or len(token) > 256:
        return None
    row = conn.execute(
        "SELECT reader_id, name, role FROM readers WHERE token_sha256 = ?", (hash_token(token),)
    ).fetchone()
    return None if row is None else Reader(row["reader_id"], row["name"], row["role"])


def state(conn: sqlite3.Connection, reader: Reader) -> dict[str, Any]:
    """Where ``reader`` stands: position (0-based), total, reads graded, and the current read.

    Returns:
        ``{"reader", "position", "total", "done", "finished", "read_id", "left", "right"}``;
        ``read_id`` is ``None`` when the position is past the last read (``finished``), ``left``
        and ``right`` are the grades already given to the current read (``None`` if none).
    """
    cur = conn.execute("SELECT cursor FROM readers WHERE reader_id = ?", (reader.reader_id,))
    cursor = cur.fetchone()["cursor"]
    total, done = conn.execute(
        "SELECT COUNT(*), COUNT(g.read_id) FROM reads r LEFT JOIN grades g "
        "ON g.read_id = r.read_id AND g.reader_id = r.reader_id WHERE r.reader_id = ?",
        (reader.reader_id,),
    ).fetchone()
    row = conn.execute(
        "SELECT r.read_id, g.grade_left, g.grade_right FROM reads r LEFT JOIN grades g "
        "ON g.read_id = r.read_id AND g.reader_id = r.reader_id "
        "WHERE r.reader_id = ? AND r.position = ?",
        (reader.reader_id, cursor),
    ).fetchone()
    return {
        "reader": reader.name,
        "position": cursor,
        "total": total,
        "done": done,
        "finished": row is None,
        "read_id": None if row is None else row["read_id"],
        "left": None if row is None else row["grade_left"],
        "right": None if row is None else row["grade_right"],
    }


def image_of(conn: sqlite3.Connection, reader: Reader, read_id: str) -> str | None:
    """The image file of ``read_id`` if it is one of ``reader``'s reads, else ``None``."""
    row = conn.execute(
        "SELECT image FROM reads WHERE read_id = ? AND reader_id = ?", (read_id, reader.reader_id)
    ).fetchone()
    return None if row is None else row["image"]


def save_grade(
    conn: sqlite3.Connection, reader: Reader, read_id: str, left: int, right: int
) -> bool:
    """Store (or revise) ``reader``'s grades of one read and move the reader on; durable on return.

    The cursor moves to the first ungraded read after this one (else the first ungraded read,
    else past the end). Returns ``False``, changing nothing, if ``read_id`` is not ``reader``'s.

    Raises:
        ValueError: a grade outside 0-3.
    """
    for g in (left, right):
        if isinstance(g, bool) or g not in GRADES:
            raise ValueError(f"a grade must be one of {GRADES}, got {g!r}")
    now = _now()
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute(
            "SELECT position FROM reads WHERE read_id = ? AND reader_id = ?",
            (read_id, reader.reader_id),
        ).fetchone()
        if row is None:
            conn.execute("ROLLBACK")
            return False
        conn.execute(
            "INSERT INTO grades (reader_id, read_id, grade_left, grade_right, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (reader_id, read_id) DO UPDATE SET "
            "grade_left = excluded.grade_left, grade_right = excluded.grade_right, "
            "updated_at = excluded.updated_at, revisions = revisions + 1",
            (reader.reader_id, read_id, left, right, now, now),
        )
        conn.execute(
            "INSERT INTO grade_log (reader_id, read_id, grade_left, grade_right, at) "
            "VALUES (?, ?, ?, ?, ?)",
            (reader.reader_id, read_id, left, right, now),
        )
        ungraded = (
            "SELECT MIN(r.position) FROM reads r LEFT JOIN grades g ON g.read_id = r.read_id "
            "AND g.reader_id = r.reader_id WHERE r.reader_id = ? AND g.read_id IS NULL"
        )
        nxt = conn.execute(
            ungraded + " AND r.position > ?", (reader.reader_id, row["position"])
        ).fetchone()[0]
        if nxt is None:
            nxt = conn.execute(ungraded, (reader.reader_id,)).fetchone()[0]
        if nxt is None:
            nxt = conn.execute(
                "SELECT COUNT(*) FROM reads WHERE reader_id = ?", (reader.reader_id,)
            ).fetchone()[0]
        conn.execute("UPDATE readers SET cursor = ? WHERE reader_id = ?", (nxt, reader.reader_id))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return True


def step_back(conn: sqlite3.Connection, reader: Reader) -> None:
    """Move ``reader`` one read back (to revise it); stays at 0 at the start."""
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "UPDATE readers SET cursor = MAX(cursor - 1, 0) WHERE reader_id = ?", (reader.reader_id,)
    )
    conn.execute("COMMIT")


def progress(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Per reader: reads in the list, reads graded, revisions and the time of the last grade."""
    rows = conn.execute(
        "SELECT d.name, COUNT(r.read_id) AS total, COUNT(g.read_id) AS done, "
        "COALESCE(SUM(g.revisions), 0) AS revisions, MAX(g.updated_at) AS last_grade "
        "FROM readers d LEFT JOIN reads r ON r.reader_id = d.reader_id "
        "LEFT JOIN grades g ON g.read_id = r.read_id AND g.reader_id = r.reader_id "
        "WHERE d.role = 'reader' GROUP BY d.reader_id ORDER BY d.reader_id"
    ).fetchall()
    return [dict(r) for r in rows]


def grade_rows(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every stored grade, blinded: reader, read id, position, grades, timestamps, revisions."""
    rows = conn.execute(
        "SELECT d.name AS reader, g.read_id, r.position, g.grade_left, g.grade_right, "
        "g.created_at, g.updated_at, g.revisions FROM grades g "
        "JOIN reads r ON r.read_id = g.read_id JOIN readers d ON d.reader_id = g.reader_id "
        "ORDER BY d.reader_id, r.position"
    ).fetchall()
    return [dict(r) for r in rows]
