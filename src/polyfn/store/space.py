"""Disk space of the embedded SQLite store: how much it uses, and giving freed pages back.

SQLite never shrinks its file by itself: after retention deleted 3.4 GB of activation rows, `polyfn.db` stayed
3.4 GB and 99 % empty. With `auto_vacuum=INCREMENTAL` the pages deletes free can be returned to the file system
in steps (`PRAGMA incremental_vacuum(N)`), each a short write transaction, instead of a `VACUUM` that rewrites
the whole file and blocks every write meanwhile. New databases are made that way; an older file is converted
once at start (a `VACUUM`, which copies only the live data).

Plain `sqlite3` functions for the activation writer's own thread (`store/activations.py`), so none of it runs on the
event loop. PostgreSQL reclaims with its own (auto)vacuum (docs/operations.md, "Disk space").
"""

from __future__ import annotations

import logging
import sqlite3
import time

log = logging.getLogger("polyfn.store")

INCREMENTAL = 2  # PRAGMA auto_vacuum value
#: free pages returned per transaction (16 MB of 4 KB pages): short enough not to hold up activation writes
RECLAIM_STEP = 4096
#: free pages left alone (a few MB the next inserts reuse at once)
RECLAIM_SLACK = 256
#: the activation writer's page cache (KiB): its hot index pages (store/activations.py)
WRITER_CACHE_KIB = 32768
#: ... and while a reclaim moves pages: the vacuum touches thousands of pages once, and through the writer's
#: full-size cache it filled it (+13–18 MB of server RSS at the first retention pass of a soak, kept for good
#: by the writer thread's malloc arena); a small cache moves them as well
RECLAIM_CACHE_KIB = 2048


def cache_kib(conn: sqlite3.Connection, kib: int) -> None:
    """Set the connection's page cache (lowering it frees the pages beyond the new size)."""
    conn.execute(f"PRAGMA cache_size=-{int(kib)}")


def ensure_incremental(conn: sqlite3.Connection, path: str) -> None:
    """Make the database file incrementally vacuumable, with a `VACUUM` (instant on a new file; on an older
    one a one-time copy of its live data, logged with how long it took)."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == INCREMENTAL:
        return
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
        conn.execute("VACUUM")  # a new file: instant, and it makes the setting stick before tables exist
        return
    t0 = time.monotonic()
    log.info("%s: converting to incremental vacuum (once; the file's free pages are returned)", path)
    conn.execute("VACUUM")
    log.info("%s: converted in %.1f s", path, time.monotonic() - t0)


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of the file that hold data (its pages minus the free ones)."""
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int((pages - free) * page)


def reclaim_step(conn: sqlite3.Connection) -> int:
    """Return up to RECLAIM_STEP free pages to the file system, in one transaction; how many were returned
    (0: nothing worth it, or the file is not incrementally vacuumable)."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != INCREMENTAL:
        return 0
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    if free <= RECLAIM_SLACK:
        return 0
    n = min(free - RECLAIM_SLACK // 2, RECLAIM_STEP)
    # (executescript steps the pragma to the end; `execute` would free one page per step)
    conn.executescript(f"BEGIN IMMEDIATE; PRAGMA incremental_vacuum({int(n)}); COMMIT;")
    return int(free - conn.execute("PRAGMA freelist_count").fetchone()[0])


def checkpoint(conn: sqlite3.Connection) -> None:
    """Copy the WAL into the file now (PASSIVE: never waits for readers), so the file's end that the vacuum
    freed is cut off the file itself, not only in the WAL."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
