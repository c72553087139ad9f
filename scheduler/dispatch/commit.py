"""Writing a batch: every row one tick changed, in bulk statements inside one transaction.

Rows are written with SQLAlchemy Core ``executemany`` on the tables (UPDATE by primary key,
INSERT for usage records and events): a batch costs a handful of statements whatever its size,
and no ORM object is loaded or tracked to change a column.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, Connection, DateTime, Table, bindparam

from farm.db import events as event_log
from farm.db import models as m
from farm.states import TERMINAL
from scheduler.dispatch.book import Changes

TILES: Table = m.Tile.__table__  # type: ignore[assignment]
FRAMES: Table = m.Frame.__table__  # type: ignore[assignment]
LAYERS: Table = m.Layer.__table__  # type: ignore[assignment]
JOBS: Table = m.Job.__table__  # type: ignore[assignment]
USAGE: Table = m.UsageRecord.__table__  # type: ignore[assignment]


def write(
    connection: Connection,
    changes: Changes,
    now: datetime,
    usage: list[dict[str, Any]] | None = None,
) -> None:
    """Write ``changes`` (and the attempts' ``usage`` rows) in the caller's transaction."""
    for table, rows in ((TILES, changes.tiles), (FRAMES, changes.frames), (LAYERS, changes.layers)):
        update_rows(connection, table, rows.values())
    update_rows(
        connection,
        JOBS,
        (
            {"id": job.id, "state": job.state.value, "finished_at": now}
            if job.state in TERMINAL
            else {"id": job.id, "state": job.state.value, "finished_at": None}
            for job in changes.jobs.values()
        ),
    )
    # Last but for usage rows: the events take their studios' lock until the commit
    # (``farm.db.events``: ids must become visible in order), so it is held briefly.
    events = [
        {"studio_id": studio, "job_id": job_id, "kind": kind, "payload": payload, "created_at": now}
        for job_id, studio, kind, payload in _events(changes)
    ]
    event_log.append(connection, events)
    if usage:
        insert_rows(connection, USAGE, usage)
    if changes.voided:
        connection.execute(
            USAGE.update()
            .where(USAGE.c.tile_id == bindparam("t"), USAGE.c.attempt == bindparam("a"))
            .values(succeeded=False),
            [{"t": tile_id, "a": attempt} for tile_id, attempt in changes.voided],
        )


def update_rows(connection: Connection, table: Table, rows: Iterable[dict[str, Any]]) -> None:
    """UPDATE rows by ``id``: one ``executemany`` per set of columns."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(row)), []).append(row)
    for columns, group in groups.items():
        names = [c for c in columns if c != "id"]
        if len(group) >= COPY_MIN_ROWS and _copies(connection) and _plain(table, names):
            _update_by_copy(connection, table, names, group)
            continue
        if _plain(table, names):
            mark = _mark(connection)
            sql = (
                f"UPDATE {table.name} SET {', '.join(f'{c} = {mark}' for c in names)} "
                f"WHERE id = {mark}"
            )
            order = (*names, "id")
            connection.exec_driver_sql(sql, _params(connection, table, order, group))
            continue
        values: dict[str, Any] = {c: bindparam(f"v_{c}") for c in names}
        statement = table.update().where(table.c.id == bindparam("v_id")).values(values)
        connection.execute(statement, [{f"v_{k}": v for k, v in row.items()} for row in group])


def insert_rows(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT rows that all have the same columns, in one ``executemany``."""
    names = list(rows[0])
    if not _plain(table, names):
        connection.execute(table.insert(), rows)
        return
    if len(rows) >= COPY_MIN_ROWS and _copies(connection):
        quoted = ", ".join(f'"{name}"' for name in names)
        driver = connection.connection.driver_connection
        with (
            driver.cursor() as cursor,  # type: ignore[union-attr]
            cursor.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy,
        ):
            for row in rows:
                copy.write_row([row[name] for name in names])
        return
    mark = _mark(connection)
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join(mark for _ in names)})"
    connection.exec_driver_sql(sql, _params(connection, table, names, rows))


COPY_MIN_ROWS = 200
"""On PostgreSQL, groups of at least this many rows go through ``COPY``: a farm-scale tick's
8,000 single-row UPDATEs and 3,800 INSERTs were the server's time (730-1,079 ms a tick)."""


def _copies(connection: Connection) -> bool:
    """Whether bulk rows may go through PostgreSQL's COPY (psycopg 3)."""
    return connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg"


def _update_by_copy(
    connection: Connection, table: Table, names: list[str], rows: list[dict[str, Any]]
) -> None:
    """UPDATE by id from rows COPYed into a temporary table of the same column types: one
    COPY and one joined UPDATE instead of a statement per row. The temporary table lives with
    the connection and is emptied after each use (two groups in one transaction never mix)."""
    columns = ", ".join(f'"{c}"' for c in ["id", *names])
    temp = f"_bulk_{table.name}_{'_'.join(sorted(names))}"[:63]
    assignments = ", ".join(f'"{name}" = s."{name}"' for name in names)
    driver = connection.connection.driver_connection
    with driver.cursor() as cursor:  # type: ignore[union-attr]
        cursor.execute(
            f'CREATE TEMP TABLE IF NOT EXISTS "{temp}" ON COMMIT DELETE ROWS AS '
            f'SELECT {columns} FROM "{table.name}" WITH NO DATA'
        )
        with cursor.copy(f'COPY "{temp}" ({columns}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row([row["id"], *(row[name] for name in names)])
        cursor.execute(f'ANALYZE "{temp}"')  # else a guess of its size may scan the table
        # One index lookup per row, never a hash join over the whole table: with a tick's
        # 7,600 tile rows against 400,000 tiles, PostgreSQL's costs chose a sequential scan
        # of every tile (42 of 70 ms for the join, growing with the farm's history).
        cursor.execute("SET LOCAL enable_hashjoin = off")
        cursor.execute("SET LOCAL enable_mergejoin = off")
        cursor.execute(
            f'UPDATE "{table.name}" AS t SET {assignments} FROM "{temp}" AS s WHERE t.id = s.id'
        )
        cursor.execute("SET LOCAL enable_hashjoin TO DEFAULT")
        cursor.execute("SET LOCAL enable_mergejoin TO DEFAULT")
        cursor.execute(f'DELETE FROM "{temp}"')


# Plain columns (numbers, strings, times) skip SQLAlchemy's per-value processing, which cost
# more than SQLite itself at thousands of rows a tick; JSON columns keep it.
def _plain(table: Table, names: Iterable[str]) -> bool:
    return not any(isinstance(table.c[name].type, JSON) for name in names)


def _mark(connection: Connection) -> str:
    return "?" if connection.dialect.paramstyle == "qmark" else "%s"


def _params(
    connection: Connection, table: Table, names: Sequence[str], rows: list[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    """Positional parameters; on SQLite, times written as SQLAlchemy writes them.

    A batch stamps its rows with one or two times, so each distinct time is formatted once.
    """
    pick = itemgetter(*names)  # names has two or more: it returns tuples
    params: list[tuple[Any, ...]] = [pick(row) for row in rows]
    if connection.dialect.name != "sqlite":
        return params
    times = [i for i, c in enumerate(names) if _is_time(table.c[c].type)]
    if not times:
        return params
    formatted: dict[datetime, str] = {}
    out = []
    for row in params:
        values = list(row)
        for i in times:
            value = values[i]
            if isinstance(value, datetime):
                text = formatted.get(value)
                if text is None:  # SQLAlchemy's SQLite DATETIME form, in UTC (UTCDateTime)
                    utc = value.astimezone(UTC) if value.tzinfo else value
                    text = formatted[value] = utc.strftime("%Y-%m-%d %H:%M:%S.%f")
                values[i] = text
        out.append(tuple(values))
    return out


def _is_time(column_type: Any) -> bool:
    """A DateTime column, or one decorating it (``farm.db.types.UTCDateTime``).

    The decorated kind was missed once: its values then went to sqlite3's own adapter, 11,000
    ``isoformat`` calls a tick at farm scale, stored as ``...+00:00`` beside the rest."""
    return isinstance(column_type, DateTime) or isinstance(
        getattr(column_type, "impl", None), DateTime
    )


def _events(changes: Changes) -> list[tuple[int, int, str, dict[str, Any]]]:
    """The batch's events, per job in causal order: the commands applied, the tiles planned,
    the tiles, frames and layers that changed, then each job state change.

    Every state change of a tile, frame, layer or job is in exactly one of them, in the order
    it happened (:class:`farm.schemas.EventOut` describes the payloads).
    """
    out: list[tuple[int, int, str, dict[str, Any]]] = list(changes.job_events)
    planned: dict[int, list[list[Any]]] = {}
    for tile in changes.new_tiles:
        frame = tile.frame
        job = frame.layer.job
        changes.studio_of[job.id] = job.studio_id
        planned.setdefault(job.id, []).append(
            [tile.id, frame.layer.name, frame.number, tile.index, *tile.rect]
        )
    for kind, key, per_job in (
        ("tiles_planned", "tiles", planned),
        ("tiles", "tiles", changes.events),
        ("frames", "frames", changes.frame_events),
        ("layers", "layers", changes.layer_events),
    ):
        for job_id, entries in per_job.items():
            out.append((job_id, changes.studio_of[job_id], kind, {key: entries}))
    for job_id, studio, state in changes.job_states:
        out.append((job_id, studio, "job_state", {"state": state}))
    return out
