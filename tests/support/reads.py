"""Counting what a SQLite connection reads: placement costs must not grow with the library."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Reads:
    rows: int = 0  # rows handed to Python
    steps: int = 0  # SQLite virtual-machine steps, in thousands: work done inside queries


@contextmanager
def counting(conn: sqlite3.Connection) -> Iterator[Reads]:
    """Count what the connection reads while the block runs (white box: the store's own)."""
    reads = Reads()

    def row(cursor: sqlite3.Cursor, values: tuple[object, ...]) -> tuple[object, ...]:
        reads.rows += 1
        return values

    def step() -> int:
        reads.steps += 1
        return 0  # 0: go on

    conn.row_factory, previous = row, conn.row_factory
    conn.set_progress_handler(step, 1000)
    try:
        yield reads
    finally:
        conn.row_factory = previous
        conn.set_progress_handler(None, 0)
