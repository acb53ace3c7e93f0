"""FastSqliteStore: RunStore's behaviour on the stdlib ``sqlite3`` module, for the CLI's hot path.

Importing SQLAlchemy costs more than a whole ``aicd run`` may take, so for an
existing SQLite database already at the schema head :func:`aicd.store.open_store`
hands out this store instead of :class:`aicd.store.repository.RunStore`. It
never creates or migrates a database (that needs SQLAlchemy and Alembic).

Same tables and columns as :mod:`aicd.store.schema`, which stays the definition
(a test compares the column lists below with it); same connection settings
(:mod:`aicd.store.sqlite_pragmas`); same transactions (BEGIN IMMEDIATE for
writes; the iid counter is one atomic upsert); and the same stored values as
SQLAlchemy's types on SQLite (JSON as ``json.dumps`` text, NULL for None;
booleans as 0/1), so either store reads the other's rows.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from types import TracebackType
from typing import Any

from aicd.errors import NotFoundError, StoreError
from aicd.store import sqlite_pragmas
from aicd.store.base import JOB_FIELDS, JOB_UPDATABLE, PIPELINE_FIELDS, PIPELINE_UPDATABLE, checked_fields
from aicd.store.migrations import HEAD, VERSION_TABLE
from aicd.store.records import JobRecord, NewJob, PipelineRecord

# Every column of the tables in aicd.store.schema, in table order (a test keeps them equal).
PROJECT_COLUMNS = (
    "id",
    "path",
    "last_pipeline_iid",
    "created_at",
    "name",
    "repo_url",
    "default_branch",
    "pipeline_file",
    "poll_interval_s",
    "webhook_secret",
    "protected_aliases",
)
PIPELINE_COLUMNS = (
    "id",
    "project_id",
    "iid",
    "project_dir",
    "ref",
    "sha",
    "source",
    "file",
    "status",
    "name",
    "variables",
    "created_at",
    "started_at",
    "finished_at",
    "run_dir",
    "error",
)
JOB_COLUMNS = (
    "id",
    "pipeline_id",
    "name",
    "stage",
    "status",
    "when",
    "allow_failure",
    "attempt",
    "retried",
    "exit_code",
    "failure_reason",
    "created_at",
    "started_at",
    "finished_at",
    "log_path",
    "artifacts_dir",
    "tests_total",
    "tests_passed",
    "tests_failed",
    "tests_skipped",
    "coverage",
    "metrics",
)
JSON_COLUMNS = frozenset({"variables", "metrics", "protected_aliases"})  # schema.Json
BOOLEAN_COLUMNS = frozenset({"allow_failure", "retried"})  # sqlalchemy.Boolean

_URL_PREFIXES = ("sqlite:///", "sqlite+pysqlite:///")


def _q(name: str) -> str:
    return f'"{name}"'  # "when" is an SQL keyword


def _columns(names: Sequence[str]) -> str:
    return ", ".join(_q(n) for n in names)


_SELECT_PIPELINES = f"SELECT {_columns(PIPELINE_FIELDS)} FROM pipelines"
_SELECT_JOBS = f"SELECT {_columns(JOB_FIELDS)} FROM jobs"
_NEXT_IID = (
    "INSERT INTO projects (path, last_pipeline_iid, created_at) VALUES (?, 1, ?) "
    "ON CONFLICT (path) DO UPDATE SET last_pipeline_iid = projects.last_pipeline_iid + 1 "
    "RETURNING id, last_pipeline_iid"
)


def _insert(table: str, names: Sequence[str], returning: str = "") -> str:
    values = ", ".join(f":{n}" for n in names)
    return f"INSERT INTO {table} ({_columns(names)}) VALUES ({values}){returning}"


_INSERT_PIPELINE = _insert(
    "pipelines",
    [
        "project_id",
        "iid",
        "project_dir",
        "ref",
        "sha",
        "source",
        "file",
        "status",
        "name",
        "variables",
        "created_at",
        "run_dir",
    ],
    " RETURNING id",
)
_INSERT_JOB = _insert(
    "jobs",
    ("pipeline_id", "name", "stage", "status", "when", "allow_failure", "attempt", "retried", "created_at"),
)
_MARK_RETRIED = (
    "UPDATE jobs SET retried = 1 WHERE pipeline_id = ? AND name = ? AND attempt < ? AND retried = 0"
)


def sqlite_path(url: str) -> str | None:
    """The file of a plain ``sqlite:///path`` URL (as SQLAlchemy reads it); None for
    anything else (other databases, in-memory, URLs with query options)."""
    prefix = next((p for p in _URL_PREFIXES if url.startswith(p)), None)
    if prefix is None or "?" in url:
        return None
    path = url[len(prefix) :]
    if "%" in path:
        from urllib.parse import unquote

        path = unquote(path)
    if path in ("", ":memory:"):
        return None
    return path


def _decoder(names: Sequence[str]) -> Callable[[Sequence[Any]], list[Any]]:
    """Stored row -> record values, as SQLAlchemy's JSON and Boolean types read them."""
    json_at = [i for i, n in enumerate(names) if n in JSON_COLUMNS]
    bool_at = [i for i, n in enumerate(names) if n in BOOLEAN_COLUMNS]

    def decode(row: Sequence[Any]) -> list[Any]:
        values = list(row)
        for i in json_at:
            if values[i] is not None:
                values[i] = json.loads(values[i])
        for i in bool_at:
            if values[i] is not None:
                values[i] = bool(values[i])
        return values

    return decode


_decode_pipeline = _decoder(PIPELINE_FIELDS)
_decode_job = _decoder(JOB_FIELDS)


def _encode(name: str, value: object) -> object:
    """A value as SQLAlchemy's type for the column binds it on SQLite. Raises ValueError."""
    if value is None:
        return None
    if name in JSON_COLUMNS:
        try:
            return json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}: {exc}") from None
    if name in BOOLEAN_COLUMNS:
        if value not in (True, False):
            raise ValueError(f"{name}: Not a boolean value: {value!r}")
        return 1 if value else 0
    return value


def _connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(
        path, timeout=sqlite_pragmas.BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    try:
        sqlite_pragmas.configure(connection)
    except BaseException:
        connection.close()
        raise
    return connection


def create_sqlite_store(path: str) -> FastSqliteStore | None:
    """A new SQLite database at `path`, made from the head schema snapshot, as a store.

    The store keeps the connection that made the database (no second connection, and no
    checkpoint of the new file's WAL, with its fsync, in between: ~8 ms of a first `aicd run`).
    None when the database is not at head afterwards (the caller falls back to RunStore, which
    explains the problem); a process that raced us and made it first is fine.
    """
    from aicd.store.snapshot import create_from_snapshot

    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        connection = _connect(path)
    except (OSError, sqlite3.Error):
        return None
    try:
        create_from_snapshot(connection)
        revisions = [row[0] for row in connection.execute(f"SELECT version_num FROM {VERSION_TABLE}")]
    except sqlite3.Error:
        revisions = []
    if revisions != [HEAD]:
        connection.close()
        return None
    return FastSqliteStore(path, connection)


class FastSqliteStore:
    """The Store on an existing SQLite file at schema revision HEAD (see the module doc).

    One connection, used under a lock (so one store may serve several threads);
    after :meth:`close` the next call reconnects, as RunStore's engine does.
    """

    def __init__(self, path: str, connection: sqlite3.Connection | None = None) -> None:
        self._path = path
        self._conn = connection
        self._lock = threading.Lock()

    @classmethod
    def try_open(cls, url: str) -> FastSqliteStore | None:
        """The store when `url` is ``sqlite:///path`` of an existing database at HEAD,
        else None (nothing raised: the caller falls back to RunStore, which creates,
        migrates, or explains what is wrong)."""
        path = sqlite_path(url)
        if path is None or not os.path.isfile(path):
            return None
        try:
            connection = _connect(path)
        except sqlite3.Error:
            return None
        try:
            revisions = [row[0] for row in connection.execute(f"SELECT version_num FROM {VERSION_TABLE}")]
        except sqlite3.Error:
            revisions = []
        if revisions != [HEAD]:
            connection.close()
            return None
        return cls(path, connection)

    @classmethod
    def open(cls, url: str) -> FastSqliteStore:
        """Open an existing SQLite database at HEAD; StoreError for anything else."""
        store = cls.try_open(url)
        if store is None:
            raise StoreError(
                f"cannot open database {url}: the fast SQLite store needs an existing SQLite file "
                f"(sqlite:///path) at schema revision {HEAD}; use aicd.store.open_store, which "
                "creates and migrates databases"
            )
        return store

    @property
    def where(self) -> str:
        """The database, as messages name it (its file path, as RunStore says it)."""
        return self._path

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> FastSqliteStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- writes -------------------------------------------------------------

    def create_pipeline(
        self,
        *,
        project_dir: str,
        ref: str,
        sha: str,
        source: str,
        file: str,
        run_dir_root: str,
        name: str | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> PipelineRecord:
        """New pipeline in status 'created'; iid counts per project_dir.
        run_dir is f"{run_dir_root}/{id}"."""
        now = time.time()
        action = "create a pipeline"
        values: dict[str, object] = {
            "project_dir": project_dir,
            "ref": ref,
            "sha": sha,
            "source": source,
            "file": file,
            "status": "created",
            "name": name,
            "variables": self._encode(
                action, "variables", dict(variables) if variables is not None else None
            ),
            "created_at": now,
            "run_dir": "",
        }
        with self._write(action) as conn:
            ((project_id, iid),) = conn.execute(_NEXT_IID, (project_dir, now)).fetchall()
            values.update(project_id=project_id, iid=iid)
            ((pipeline_id,),) = conn.execute(_INSERT_PIPELINE, values).fetchall()
            run_dir = f"{run_dir_root.rstrip('/')}/{pipeline_id}"
            conn.execute("UPDATE pipelines SET run_dir = ? WHERE id = ?", (run_dir, pipeline_id))
            row = conn.execute(f"{_SELECT_PIPELINES} WHERE id = ?", (pipeline_id,)).fetchone()
        return PipelineRecord(*_decode_pipeline(row))

    def add_jobs(self, pipeline_id: int, jobs: Sequence[NewJob]) -> list[int]:
        """Insert job rows in one transaction; ids in the same order.

        A job with attempt > 1 is a retry: earlier attempts of the same name in
        the pipeline are marked ``retried`` in the same transaction.
        """
        if not jobs:
            return []
        now = time.time()
        action = f"add jobs to pipeline {pipeline_id}"
        rows = [
            {
                "pipeline_id": pipeline_id,
                "name": job.name,
                "stage": job.stage,
                "status": job.status,
                "when": job.when,
                "allow_failure": self._encode(action, "allow_failure", job.allow_failure),
                "attempt": job.attempt,
                "retried": 0,
                "created_at": now,
            }
            for job in jobs
        ]
        ids: list[int] = []
        with self._write(action) as conn:
            self._require_pipeline(conn, pipeline_id)
            for row in rows:
                new_id = conn.execute(_INSERT_JOB, row).lastrowid
                assert new_id is not None
                ids.append(new_id)
            for job in jobs:
                if job.attempt > 1:
                    conn.execute(_MARK_RETRIED, (pipeline_id, job.name, job.attempt))
        return ids

    def update_job(self, job_id: int, **fields: object) -> None:
        """Set any JobRecord fields except id/pipeline_id."""
        self._update("jobs", job_id, checked_fields(fields, JOB_UPDATABLE, "job"), f"job {job_id}")

    def update_jobs(self, updates: Sequence[tuple[int, Mapping[str, object]]]) -> None:
        """Several :meth:`update_job` in order, in one transaction (all or none)."""
        statements = []
        for job_id, fields in updates:
            values = checked_fields(dict(fields), JOB_UPDATABLE, "job")
            if values:
                statements.append(self._update_sql("jobs", job_id, values, f"job {job_id}"))
        if not statements:
            return
        action = statements[0][3] if len(statements) == 1 else f"update {len(statements)} jobs"
        with self._write(action) as conn:
            for sql, params, what, _ in statements:
                if conn.execute(sql, params).rowcount == 0:
                    raise NotFoundError(f"{what} does not exist")

    def update_pipeline(self, pipeline_id: int, **fields: object) -> None:
        """Set any PipelineRecord fields except id/iid/project_dir."""
        values = checked_fields(fields, PIPELINE_UPDATABLE, "pipeline")
        self._update("pipelines", pipeline_id, values, f"pipeline {pipeline_id}")

    def _update_sql(
        self, table: str, row_id: int, values: dict[str, object], what: str
    ) -> tuple[str, tuple[object, ...], str, str]:
        """The UPDATE of one row: SQL, parameters, what it is and the action's name (for errors)."""
        action = f"update {what}"
        names = list(values)
        params = [self._encode(action, n, values[n]) for n in names]
        sql = f"UPDATE {table} SET {', '.join(f'{_q(n)} = ?' for n in names)} WHERE id = ?"
        return sql, (*params, row_id), what, action

    def _update(self, table: str, row_id: int, values: dict[str, object], what: str) -> None:
        if not values:
            return
        sql, params, what, action = self._update_sql(table, row_id, values, what)
        with self._write(action) as conn:
            if conn.execute(sql, params).rowcount == 0:
                raise NotFoundError(f"{what} does not exist")

    # -- reads --------------------------------------------------------------

    def get_pipeline(self, pipeline_id: int) -> PipelineRecord:
        """Raises NotFoundError."""
        with self._read(f"read pipeline {pipeline_id}") as conn:
            row = conn.execute(f"{_SELECT_PIPELINES} WHERE id = ?", (pipeline_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"pipeline {pipeline_id} does not exist")
        return PipelineRecord(*_decode_pipeline(row))

    def get_pipeline_by_iid(self, project_dir: str, iid: int) -> PipelineRecord:
        """The pipeline numbered `iid` in the project (CI_PIPELINE_IID). Raises NotFoundError."""
        sql = f"{_SELECT_PIPELINES} WHERE project_dir = ? AND iid = ?"
        with self._read(f"read pipeline #{iid}") as conn:
            row = conn.execute(sql, (project_dir, iid)).fetchone()
        if row is None:
            raise NotFoundError(f"pipeline #{iid} of {project_dir} does not exist")
        return PipelineRecord(*_decode_pipeline(row))

    def list_pipelines(self, *, project_dir: str | None = None, limit: int = 20) -> list[PipelineRecord]:
        """Newest first (highest id first)."""
        where, params = ("", ()) if project_dir is None else (" WHERE project_dir = ?", (project_dir,))
        sql = f"{_SELECT_PIPELINES}{where} ORDER BY id DESC LIMIT ?"
        with self._read("list pipelines") as conn:
            rows = conn.execute(sql, (*params, limit)).fetchall()
        return [PipelineRecord(*_decode_pipeline(row)) for row in rows]

    def get_job(self, job_id: int) -> JobRecord:
        """Raises NotFoundError."""
        with self._read(f"read job {job_id}") as conn:
            row = conn.execute(f"{_SELECT_JOBS} WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"job {job_id} does not exist")
        return JobRecord(*_decode_job(row))

    def list_jobs(self, pipeline_id: int, *, include_retried: bool = True) -> list[JobRecord]:
        """In creation order (id). Raises NotFoundError when the pipeline does not exist."""
        retried = "" if include_retried else " AND retried = 0"
        sql = f"{_SELECT_JOBS} WHERE pipeline_id = ?{retried} ORDER BY id"
        with self._read(f"list jobs of pipeline {pipeline_id}") as conn:
            records = [JobRecord(*_decode_job(row)) for row in conn.execute(sql, (pipeline_id,))]
            if not records:
                self._require_pipeline(conn, pipeline_id)
        return records

    # -- plumbing -----------------------------------------------------------

    @staticmethod
    def _require_pipeline(conn: sqlite3.Connection, pipeline_id: int) -> None:
        if conn.execute("SELECT id FROM pipelines WHERE id = ?", (pipeline_id,)).fetchone() is None:
            raise NotFoundError(f"pipeline {pipeline_id} does not exist")

    def _encode(self, action: str, name: str, value: object) -> object:
        try:
            return _encode(name, value)
        except ValueError as exc:
            raise StoreError(f"database at {self.where}: cannot {action}: {exc}") from None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self._conn = _connect(self._path)
            except sqlite3.Error as exc:
                raise StoreError(
                    f"cannot open database at {self.where}: {sqlite_pragmas.driver_reason(exc)}"
                ) from exc
        return self._conn

    @contextmanager
    def _transaction(self, begin: str, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            try:
                conn.execute(begin)
                try:
                    yield conn
                except BaseException:
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise StoreError(
                    f"database at {self.where}: cannot {action}: {sqlite_pragmas.driver_reason(exc)}"
                ) from exc

    def _write(self, action: str) -> AbstractContextManager[sqlite3.Connection]:
        # Writers take the write lock up front (waiting up to busy_timeout): a deferred
        # transaction that later writes can fail with "database is locked" at once.
        return self._transaction("BEGIN IMMEDIATE", action)

    def _read(self, action: str) -> AbstractContextManager[sqlite3.Connection]:
        return self._transaction("BEGIN", action)
