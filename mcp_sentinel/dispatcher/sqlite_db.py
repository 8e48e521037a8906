"""The daemon's state database: one SQLite file (WAL), one connection, one thread.

``SqliteDatabase`` is an async context manager owned by the app. Entering takes an exclusive
lock on ``<path>.lock`` (one daemon per state file: a second one would release the first one's
claims), opens the connection on the dedicated thread ``sentinel-sqlite`` and creates or checks
the schema. Every statement runs on that thread, in submission order, one transaction at a
time: the event loop only awaits futures and never touches the disk. Leaving waits for what was
submitted, closes the connection and releases the lock.

The tables, their schema version and the migrations of older files: ``sqlite_schema``.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL``, so a commit is fsynced before
``transaction`` returns: what the webhook answered 200 for survives a crash of the process and
of the machine. Writes are committed in groups: what is submitted while a commit is under
way shares the next one (each write in its own savepoint, so one that fails is rolled back
alone), so under load many payloads share one fsync, and an idle write is committed at once. The
WAL is checkpointed from a connection and thread of its own (``sqlite_checkpoint``), so no
commit waits for a checkpoint.

A write submitted with ``durable=False`` is one whose loss in a crash of the machine costs
nothing that the next start does not mend or that a sink does not already expect: a claim (every
claim is released at start), a release, a finished payload's tidying (the start finishes it
again), a delivery's acknowledgement or failed attempt (at worst one repeated delivery, which
the outbox's contract allows). A group made only of such writes is committed with
``synchronous=NORMAL``: into the WAL, readable at once and kept through a crash of the process,
but not fsynced; the next durable commit's fsync, which covers the whole WAL, makes it durable
too. Per investigated incident that leaves one fsync (the outbox's), not three or four: on a
disk whose fsync takes milliseconds, the database thread's time goes to intake's commits. A
group holding any durable write is committed with ``synchronous=FULL``, as before.

Health: a failed write (disk full, an I/O error, the file locked by another program) sets
``problem``; the dispatcher then refuses intake (503) and ``/readyz`` answers 503. While a
problem is set, a probe write is tried every ``probe_interval`` seconds; the first write that
succeeds, probe or not, clears it.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from loguru import logger

from mcp_sentinel.dispatcher import sqlite_schema
from mcp_sentinel.dispatcher.sqlite_checkpoint import (
    BACKSTOP_PAGES,
    JOURNAL_SIZE_LIMIT,
    WalCheckpointer,
)
from mcp_sentinel.dispatcher.sqlite_thread import close_on_thread
from mcp_sentinel.errors import SentinelError

T = TypeVar("T")


class StorageError(SentinelError, OSError):
    """The state database cannot be opened or written; the message names the file and the
    cause. An ``OSError`` too, so ``sentinel run`` reports it as "cannot start: ..." rather
    than with a traceback."""


@dataclass(frozen=True, slots=True)
class _Committed:
    value: Any


_Outcome = _Committed | BaseException


@dataclass(frozen=True, slots=True)
class _Job:
    work: Callable[[sqlite3.Connection], Any]
    what: str
    on_commit: Callable[[Any], None] | None
    future: asyncio.Future[Any]
    durable: bool = True


class SqliteDatabase:
    """The state file. ``transaction`` and ``submit`` may be called from the event loop only."""

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout: float = 5.0,
        probe_interval: float = 2.0,
        checkpoint_interval: float = 0.1,
    ) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._probe_interval = probe_interval
        self._checkpointer = WalCheckpointer(
            path,
            commits=lambda: self.commits,
            interval=checkpoint_interval,
            busy_timeout=busy_timeout,
        )
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._problem: str | None = None
        self._unhealthy = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None
        self._prober: asyncio.Task[None] | None = None
        self._pending: list[_Job] = []
        self._writing = False
        self._drained = asyncio.Event()  # set while nothing is pending or being written
        self._drained.set()
        #: Transactions committed since opening, and of them those fsynced (read by tests and
        #: benchmarks).
        self.commits = 0
        self.durable_commits = 0
        self._synchronous_full = True  # the connection's setting; the database thread's own

    @property
    def path(self) -> Path:
        return self._path

    @property
    def checkpointer(self) -> WalCheckpointer:
        return self._checkpointer

    @property
    def problem(self) -> str | None:
        """Why the last write failed, while no write has succeeded since; else None."""
        return self._problem

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> SqliteDatabase:
        self._lock_fd = await asyncio.to_thread(_take_lock, self._path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sentinel-sqlite")
        try:
            await asyncio.wrap_future(self._executor.submit(self._open))
            try:
                await self._checkpointer.__aenter__()
            except sqlite3.Error as exc:
                raise StorageError(
                    f"cannot open the state database {self._path} for checkpoints: {exc}"
                ) from None
        except BaseException:
            executor, self._executor = self._executor, None
            await close_on_thread(executor, self._close)
            os.close(self._lock_fd)  # also releases the lock
            self._lock_fd = None
            raise
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._prober = self._group.create_task(self._probe(), name="sentinel-sqlite-probe")
        logger.info("state database: {path}", path=self._path)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._prober is not None:
                self._prober.cancel()
            if self._group is not None:
                await self._group.__aexit__(None, None, None)
        finally:
            # Also when the caller was cancelled while the probe stopped (the cancellation
            # goes on after this): a database left open would keep its lock, and the next
            # open in this process would find the file "in use by another sentinel process".
            await self._close_all()

    async def _close_all(self) -> None:
        # Closed first (a no-op when it never started): the writer's close, the last one,
        # checkpoints what is left and removes the WAL.
        await self._checkpointer.__aexit__(None, None, None)
        executor = self._executor
        if executor is not None:
            await self._drained.wait()  # what was submitted is written before the close
            self._executor = None
            await close_on_thread(executor, self._close)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _open(self) -> None:
        """On the database thread: connect, set the pragmas, create or check the schema."""
        try:
            # Alert data lives here: readable by the daemon's user only (WAL files inherit it).
            os.close(os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as exc:
            raise StorageError(
                f"cannot open the state database {self._path}: {exc.strerror or exc}"
            ) from None
        try:
            connection = sqlite3.connect(
                self._path, timeout=self._busy_timeout, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the state database {self._path}: {exc}") from None
        try:
            mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StorageError(
                    f"the state database {self._path} cannot use WAL mode (got {mode}); "
                    "put it on a local file system"
                )
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
            connection.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
            try:
                migrated_from = sqlite_schema.ensure(connection)
            except sqlite_schema.NewerSchemaError as exc:
                raise StorageError(f"the state database {self._path} {exc}") from None
            if migrated_from is not None:
                logger.info(
                    "state database {path}: schema {found} migrated to {version}",
                    path=self._path,
                    found=migrated_from,
                    version=sqlite_schema.SCHEMA_VERSION,
                )
        except sqlite3.Error as exc:
            connection.close()
            raise StorageError(f"cannot open the state database {self._path}: {exc}") from None
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # -- work ------------------------------------------------------------------------------

    def _in_transaction(
        self, work: Callable[[sqlite3.Connection], T], *, durable: bool = True
    ) -> T:
        """On the database thread: ``work`` inside BEGIN IMMEDIATE ... COMMIT, or rolled back;
        fsynced unless ``durable`` is False."""
        connection = self._connection
        if connection is None:
            raise sqlite3.ProgrammingError("the state database is closed")
        self._set_synchronous(connection, full=durable)
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = work(connection)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        self._count_commit(durable)
        return result

    def _set_synchronous(self, connection: sqlite3.Connection, *, full: bool) -> None:
        """On the database thread, outside a transaction (SQLite refuses to change it inside
        one): FULL for a commit that must survive a crash of the machine, else NORMAL."""
        if full != self._synchronous_full:
            connection.execute(f"PRAGMA synchronous={'FULL' if full else 'NORMAL'}")
            self._synchronous_full = full

    def _count_commit(self, durable: bool) -> None:
        self.commits += 1
        if durable:
            self.durable_commits += 1

    async def read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` (reads only) on the database thread."""
        executor = self._require_open()

        def call() -> T:
            assert self._connection is not None
            return work(self._connection)

        try:
            return await asyncio.wrap_future(executor.submit(call))
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the state database {self._path}: {exc}") from None

    async def transaction(
        self,
        work: Callable[[sqlite3.Connection], T],
        *,
        what: str,
        on_commit: Callable[[T], None] | None = None,
    ) -> T:
        """Run ``work`` in one transaction on the database thread; raise ``StorageError`` when
        it fails (nothing of it is kept then).

        ``on_commit`` runs on the event loop once the commit is done, before this returns, and
        also when the caller was cancelled meanwhile: whatever memory mirrors the database is
        updated exactly when the rows exist.
        """
        future = self._start(work, what, on_commit)
        try:
            return await future
        except sqlite3.Error as exc:
            raise StorageError(self._describe(what, exc)) from None

    def submit(
        self, work: Callable[[sqlite3.Connection], object], *, what: str, durable: bool = True
    ) -> None:
        """Run ``work`` in a transaction after everything submitted before, without waiting.
        A failure is logged and marks the database unhealthy. With ``durable=False`` its commit
        need not be fsynced (see the module docstring for which writes may say so)."""
        if self._executor is None:
            logger.warning("state database closed: {what} not written", what=what)
            return
        self._start(work, what, None, durable=durable)

    def _start(
        self,
        work: Callable[[sqlite3.Connection], T],
        what: str,
        on_commit: Callable[[T], None] | None,
        *,
        durable: bool = True,
    ) -> asyncio.Future[T]:
        self._require_open()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(work, what, on_commit, future, durable))
        if not self._writing:
            self._write_pending()
        return future

    def _write_pending(self) -> None:
        """Send every pending job to the database thread as one transaction (group commit).

        While one transaction commits (an fsync), the jobs submitted meanwhile wait here and
        then share the next commit: under load a payload costs a fraction of an fsync, and
        when idle a job goes alone, at once.
        """
        jobs, self._pending = self._pending, []
        self._writing = True
        self._drained.clear()
        executor = self._require_open()
        executor.submit(self._run_and_report, jobs, asyncio.get_running_loop())

    def _run_and_report(self, jobs: list[_Job], loop: asyncio.AbstractEventLoop) -> None:
        """On the database thread: the group's transaction, then its outcomes handed to the
        loop. Directly, not through the executor's future and ``asyncio.wrap_future``: that
        chain costs two more turns of the loop per commit, about a third of the CPU an idle
        payload's commit takes on the loop (measured: benchmarks/dispatch_overhead.py)."""
        try:
            outcomes = self._run_jobs(jobs)
        except BaseException as exc:  # _run_jobs keeps what it can; anything else fails all
            outcomes = [exc] * len(jobs)
        # The loop outlives this call: leaving the database waits until nothing is written.
        loop.call_soon_threadsafe(self._settle, jobs, outcomes)

    def _settle(self, jobs: list[_Job], outcomes: list[_Outcome]) -> None:
        """On the loop: record health, run ``on_commit`` hooks, then wake the callers."""
        self._writing = False
        try:
            for job, outcome in zip(jobs, outcomes, strict=True):
                self._settle_job(job, outcome)
        finally:
            # Whatever a hook did, the next group goes out: a stuck group would stop the writes.
            if self._pending:
                self._write_pending()
            else:
                self._drained.set()

    def _settle_job(self, job: _Job, outcome: _Outcome) -> None:
        if isinstance(outcome, _Committed):
            self._succeeded()
            try:
                if job.on_commit is not None:
                    job.on_commit(outcome.value)
            except Exception:
                logger.exception("state database: after {what}", what=job.what)
            if not job.future.done():
                job.future.set_result(outcome.value)
            return
        if isinstance(outcome, sqlite3.Error):
            self._failed(job.what, outcome)
        elif not isinstance(outcome, asyncio.CancelledError):
            logger.opt(exception=outcome).error("state database: {what} failed", what=job.what)
        if not job.future.done():
            job.future.set_exception(outcome)
        if not job.future.cancelled():
            job.future.exception()  # retrieved: a submit() nobody awaits must not warn

    def _run_jobs(self, jobs: list[_Job]) -> list[_Outcome]:
        """On the database thread: the jobs in one BEGIN IMMEDIATE ... COMMIT, each in its own
        savepoint, so a job that fails is rolled back alone and the others still commit. The
        commit is fsynced when any job of the group is durable."""
        durable = any(job.durable for job in jobs)
        if len(jobs) == 1:
            try:
                return [_Committed(self._in_transaction(jobs[0].work, durable=durable))]
            except Exception as exc:
                return [exc]
        connection = self._connection
        if connection is None:
            return [sqlite3.ProgrammingError("the state database is closed")] * len(jobs)
        outcomes: list[_Outcome] = []
        try:
            self._set_synchronous(connection, full=durable)
            connection.execute("BEGIN IMMEDIATE")
            for job in jobs:
                connection.execute("SAVEPOINT job")
                try:
                    value = job.work(connection)
                except Exception as exc:
                    connection.execute("ROLLBACK TO job")
                    outcomes.append(exc)
                else:
                    outcomes.append(_Committed(value))
                connection.execute("RELEASE job")
            connection.execute("COMMIT")
        except Exception as exc:
            # BEGIN or COMMIT failed (a full disk, an I/O error): nothing of the batch is kept.
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            return [exc] * len(jobs)
        self._count_commit(durable)
        return outcomes

    def _require_open(self) -> ThreadPoolExecutor:
        if self._executor is None:
            raise StorageError(f"the state database {self._path} is not open")
        return self._executor

    # -- health ----------------------------------------------------------------------------

    def _describe(self, what: str, error: sqlite3.Error) -> str:
        return f"cannot write the state database {self._path} ({what}): {error}"

    def _failed(self, what: str, error: sqlite3.Error) -> None:
        message = self._describe(what, error)
        if self._problem is None:
            logger.error(
                "{message}; refusing new alerts (503) until it is writable again",
                message=message,
            )
        self._problem = message
        self._unhealthy.set()

    def _succeeded(self) -> None:
        if self._problem is not None:
            logger.info("state database {path} is writable again", path=self._path)
            self._problem = None
        self._unhealthy.clear()

    async def _probe(self) -> None:
        """While a problem is set, try a small write every ``probe_interval`` seconds."""
        while True:
            await self._unhealthy.wait()
            await asyncio.sleep(self._probe_interval)
            if self._problem is None:
                continue
            try:
                await self.transaction(_probe_write, what="health probe")
            except StorageError:
                continue


def _probe_write(connection: sqlite3.Connection) -> None:
    connection.execute(
        "INSERT INTO meta (key, value) VALUES ('probe', datetime('now')) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    )


def _take_lock(database: Path) -> int:
    """Lock ``<database>.lock`` for this process (the kernel drops it when the process dies,
    ``kill -9`` included); raise ``StorageError`` when another process holds it."""
    path = database.with_name(database.name + ".lock")
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StorageError(
            f"cannot create the state database lock {path}: {exc.strerror or exc}"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StorageError(
            f"the state database {database} is in use by another sentinel process (it holds "
            f"{path}); give each daemon its own dispatcher.sqlite_path"
        ) from None
    return fd
