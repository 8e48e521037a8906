"""The investigator, loaded after intake is up: ``sentinel run`` is ready in about a second.

Importing the agents SDK (with openai and mcp) takes seconds and most of the daemon's memory;
receiving alerts needs none of it. So the app serves the webhook first and then starts
``DeferredInvestigator``, which imports the SDK on a worker thread (the event loop keeps
answering meanwhile) and builds the investigation core with the daemon's own wiring. Accepted
alerts wait in the queue as they would for a busy worker; a worker that calls ``investigate``
before the core is built waits for it.

If building the core fails, ``problem`` names why (the dispatcher then refuses intake and
``/readyz`` answers 503) and every investigation ends as ``analysis_failed`` with that reason,
so nothing already accepted goes unreported.

This module must not import the SDK itself: only ``mcp_sentinel.wiring`` does, on the thread.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from types import TracebackType

from loguru import logger

from mcp_sentinel.investigation import IncidentInvestigator
from mcp_sentinel.models import Incident, IncidentReport, Outcome
from mcp_sentinel.prompts import RenderedPrompt

CoreBuilder = Callable[[AsyncExitStack], Awaitable[IncidentInvestigator]]
"""Builds the investigator on the given stack (its MCP connections and model client close
with it). Called once, after the modules in ``preload`` are imported."""


class DeferredInvestigator:
    """Stands in for the investigator until the real one is built in the background.

    Lifecycle: ``async with`` owns the core's resources; ``start()`` begins loading (call it
    once intake is serving); leaving cancels a load still running and closes the core.
    """

    def __init__(self, build: CoreBuilder, *, preload: tuple[str, ...] = ()) -> None:
        self._build = build
        self._preload = preload
        self._stack = AsyncExitStack()
        self._loaded = asyncio.Event()
        self._investigator: IncidentInvestigator | None = None
        self._failure: str | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def problem(self) -> str | None:
        """Why no investigation can run (the core failed to build), else None."""
        return self._failure

    @property
    def ready(self) -> bool:
        return self._investigator is not None

    async def __aenter__(self) -> DeferredInvestigator:
        return self

    def start(self) -> None:
        """Begin building the core in the background. Idempotent."""
        if self._task is None:
            self._task = asyncio.create_task(self._load(), name="load-investigation-core")

    async def wait_loaded(self) -> None:
        """Return once the core is built or has failed to build."""
        await self._loaded.wait()

    async def _load(self) -> None:
        started = time.monotonic()
        try:
            for module in self._preload:
                # The import is CPU-bound Python: on a thread it shares the GIL with the
                # loop instead of stopping it for seconds.
                await asyncio.to_thread(importlib.import_module, module)
            self._investigator = await self._build(self._stack)
        except Exception as exc:
            self._failure = f"the agent failed to start: {type(exc).__name__}: {exc}"
            logger.opt(exception=exc).error("{problem}", problem=self._failure)
        else:
            logger.info(
                "agent ready in {seconds:.2f}s after intake", seconds=time.monotonic() - started
            )
        finally:
            self._loaded.set()

    async def investigate(self, incident: Incident, prompt: RenderedPrompt) -> IncidentReport:
        """The real investigator's report, once it is built; ``analysis_failed`` if it cannot be."""
        self.start()
        await self._loaded.wait()
        if self._investigator is not None:
            return await self._investigator.investigate(incident, prompt)
        now = datetime.now(UTC)
        return IncidentReport(
            incident_id=incident.incident_id,
            card=incident.card.resource,
            alert=incident.notification.as_dict(),
            outcome=Outcome.ANALYSIS_FAILED,
            error=self._failure,
            started_at=now,
            finished_at=now,
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            # wait(), not await: a cancellation of the caller itself must still propagate.
            await asyncio.wait([self._task])
        await self._stack.aclose()
