"""Prompt templates: where they are read from, and how an alert is rendered into them.

``PromptRepository`` reads templates relative to the config file's directory; ``PromptRenderer``
compiles each once in a sandboxed Jinja environment and turns (card, notification) into a
``RenderedPrompt``: the rendered template is the agent's instructions, the fenced alert data its
input message. ``app.py`` builds both; workers of one event loop share them. After the first
use of a path, rendering does no I/O.

Why alert text is handled this way: labels and annotations are written by anyone who can write
a Prometheus rule or push an alert, and they reach the model, so they must never read as
instructions.

* Every string from the alert enters the context as ``UntrustedText``; the ``finalize`` hook
  prints it as one JSON string: quoted, capped at ``max_value_chars`` (ending in "…"), with
  newlines, ``<``, ``>``, ``&`` and invisible or line-breaking Unicode escaped as ``\\uXXXX``.
  It cannot start a line, fake a heading, close a fence or hide text. A JSON string is also a
  PromQL string, so templates write matchers as ``up{instance={{ alert.labels.instance }}}``.
* The rule at output is inverted rather than keyed on the marker, because a filter, a method
  or ``~`` applied to an ``UntrustedText`` returns a plain ``str`` and sheds it: *every* string
  an expression yields is quoted. Only what the renderer marks as template-controlled
  (``card.*``, ``alert_data``) prints verbatim; numbers print as they are, datetimes as ISO 8601
  UTC, None as nothing, mappings and lists as one line of escaped JSON. So ``{{ "text" }}`` and
  macro output print quoted: shared text goes in ``{% include %}`` files.
* ``alert_data`` is the notification as pretty JSON between ``<alert-data untrusted="true">``
  and ``</alert-data>``. JSON escapes quotes and newlines; escaping ``<``, ``>`` and ``&`` too
  means no value can contain ``</alert-data>``, so the fence ends once, on the last line.
* ``ImmutableSandboxedEnvironment``: no dunder access, no mutating the context.
  ``StrictUndefined``: a misspelt name fails loudly instead of printing "".
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mcp_sentinel.errors import PermanentError
from mcp_sentinel.models import IncidentCard, IncidentNotification

#: The names a template may use; anything else fails (``StrictUndefined``).
CONTEXT_NAMES = frozenset({"alert", "group", "card", "alert_data"})
ALERT_DATA_OPEN = '<alert-data untrusted="true">'
ALERT_DATA_CLOSE = "</alert-data>"
ELLIPSIS = "…"


class PromptError(PermanentError):
    """A prompt template cannot be used; retrying will not help until someone fixes it."""


class PromptNotFoundError(PromptError):
    """The template file (or a file it includes) does not exist or cannot be read."""


class PromptRenderError(PromptError):
    """The template has a syntax error or failed while rendering; the message names both."""


class UntrustedText(str):
    """A string taken from an alert: data for the model, never instructions."""

    __slots__ = ()


class _Verbatim(str):
    """Template-controlled text (card fields, the fenced ``alert_data``): printed as is."""

    __slots__ = ()


# Characters worth a second look: <, > and & plus everything outside printable ASCII except
# newline (json.dumps escapes newlines inside strings, so a raw one is its own indentation).
_SUSPECT = re.compile(r"[^\x20-\x7e\n]|[<>&]")


def _escape_char(found: re.Match[str]) -> str:
    char = found.group()
    if char.isprintable() and char not in "<>&":
        return char  # ordinary non-ASCII text (é, ü, 日本) stays readable
    units = char.encode("utf-16-be", "surrogatepass")  # beyond U+FFFF: a surrogate pair
    return "".join(f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2))


def escape_json_text(text: str) -> str:
    """Escape ``<``, ``>``, ``&`` and non-printable characters of JSON text as ``\\uXXXX``.

    Only valid for text produced by ``json.dumps``: there these characters occur only inside
    strings (or as the indentation newline, which is kept), so the result is still valid JSON.
    """
    return _SUSPECT.sub(_escape_char, text)


def fence_alert_data(notification: IncidentNotification) -> str:
    """The notification as pretty, escaped JSON between ``ALERT_DATA_OPEN`` and ``_CLOSE``."""
    body = json.dumps(notification.as_dict(), indent=2, ensure_ascii=False)
    return f"{ALERT_DATA_OPEN}\n{escape_json_text(body)}\n{ALERT_DATA_CLOSE}"


def _utc(moment: datetime) -> datetime:
    """The same instant in UTC; a naive datetime is taken to be UTC already."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC to the second, e.g. ``2026-11-22T03:33:20Z``."""
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    """What the agent receives: ``instructions`` (system prompt) and ``alert_data`` (input)."""

    instructions: str
    alert_data: str
    template: str


class PromptRepository:
    """Reads template files; a relative path is resolved against ``base_dir``.

    ``base_dir`` is the config file's directory, made absolute when the repository is built so
    a later ``chdir`` changes nothing. Absolute paths are used as they are. Each file is read
    once and kept for the life of the repository: changing a prompt means restarting.
    """

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = Path(base_dir).resolve()
        self._sources: dict[Path, str] = {}

    def path(self, relative_path: str) -> Path:
        """The absolute path ``relative_path`` names."""
        return self.base_dir / relative_path

    def source(self, relative_path: str) -> str:
        """The template's text (UTF-8); raise ``PromptNotFoundError`` if it cannot be read."""
        path = self.path(relative_path)
        cached = self._sources.get(path)
        if cached is not None:
            return cached
        try:
            text = path.read_text(encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise PromptNotFoundError(f"{relative_path} not found (looked in {path})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PromptNotFoundError(f"{relative_path} cannot be read ({path}): {exc}") from None
        self._sources[path] = text
        return text


class _RepositoryLoader(jinja2.BaseLoader):
    """Serves templates (and what they include) from a ``PromptRepository``."""

    def __init__(self, repository: PromptRepository) -> None:
        self.repository = repository
        self.names: dict[str, str] = {}  # filename -> name as written, for error messages

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        try:
            source = self.repository.source(template)
        except PromptNotFoundError as exc:
            raise jinja2.TemplateNotFound(template, str(exc)) from exc
        filename = str(self.repository.path(template))
        self.names[filename] = template
        return source, filename, lambda: True


class PromptRenderer:
    """Renders a card's template for a notification, in a sandbox, compiling each path once.

    ``render`` raises ``PromptNotFoundError`` or ``PromptRenderError`` (both ``PermanentError``);
    ``check`` reports the same problems as strings without raising, for ``sentinel check``.
    """

    def __init__(self, repository: PromptRepository, *, max_value_chars: int = 1000) -> None:
        if max_value_chars < 1:
            raise ValueError("max_value_chars must be at least 1")
        self._max_value_chars = max_value_chars
        self._loader = _RepositoryLoader(repository)
        self._environment = ImmutableSandboxedEnvironment(
            loader=self._loader,
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            finalize=self._finalize,
        )
        self._templates: dict[str, jinja2.Template] = {}

    def render(self, card: IncidentCard, notification: IncidentNotification) -> RenderedPrompt:
        """Render ``card.prompt`` with ``alert``, ``group``, ``card`` and ``alert_data``."""
        template = self._template(card.prompt)
        alert_data = fence_alert_data(notification)
        try:
            instructions = template.render(_context(card, notification, alert_data))
        except jinja2.TemplateNotFound as exc:  # a missing {% include %}
            raise PromptNotFoundError(str(exc)) from exc
        except Exception as exc:  # templates are user code: any failure is theirs, and permanent
            raise PromptRenderError(self._describe(card.prompt, exc)) from exc
        return RenderedPrompt(
            instructions=instructions, alert_data=alert_data, template=card.prompt
        )

    def check(self, card: IncidentCard) -> list[str]:
        """Problems with the card's template and what it includes; empty when it is usable.

        Finds missing files, syntax errors (with their line) and names outside
        ``CONTEXT_NAMES`` in the card's own template. It does not render, so a label the
        template indexes without ``.get`` is only found when an alert lacks it.
        """
        problems: list[str] = []
        self._check(card.prompt, problems, seen=set(), top=True)
        return problems

    def _check(self, path: str, problems: list[str], *, seen: set[str], top: bool) -> None:
        if path in seen:
            return
        seen.add(path)
        try:
            source = self._loader.repository.source(path)
            ast = self._environment.parse(source, path, str(self._loader.repository.path(path)))
            self._template(path)
        except PromptError as exc:
            problems.append(str(exc))
            return
        except jinja2.TemplateSyntaxError as exc:
            problems.append(self._describe(path, exc))
            return
        if top:  # an include may use names its includer sets, so only the card's own is checked
            unknown = meta.find_undeclared_variables(ast) - CONTEXT_NAMES
            unknown -= self._environment.globals.keys()
            for node in ast.find_all(nodes.Name):
                if node.ctx == "load" and node.name in unknown:
                    unknown.discard(node.name)  # report the first use of each
                    problems.append(f"{path} line {node.lineno}: unknown variable {node.name!r}")
        for included in meta.find_referenced_templates(ast):
            if included is not None:
                self._check(included, problems, seen=seen, top=False)

    def _template(self, path: str) -> jinja2.Template:
        template = self._templates.get(path)
        if template is None:
            try:
                template = self._environment.get_template(path)
            except jinja2.TemplateNotFound as exc:
                raise PromptNotFoundError(str(exc)) from exc
            except jinja2.TemplateSyntaxError as exc:
                raise PromptRenderError(self._describe(path, exc)) from exc
            self._templates[path] = template
        return template

    def _describe(self, path: str, exc: Exception) -> str:
        """``<file> line <n>: <Kind>: <message>``, naming the included file when it is there."""
        if isinstance(exc, jinja2.TemplateSyntaxError):
            where, problem = f"{exc.name or path} line {exc.lineno}", f"syntax error: {exc.message}"
        else:
            where, problem = path, f"{type(exc).__name__}: {exc}"
            trace = exc.__traceback__
            while trace is not None:  # Jinja rewrites frames to template files and lines
                if name := self._loader.names.get(trace.tb_frame.f_code.co_filename):
                    where = f"{name} line {trace.tb_lineno}"
                trace = trace.tb_next
        suffix = "" if where.startswith(f"{path} ") or where == path else f" (included from {path})"
        return f"{where}: {problem}{suffix}"

    def _finalize(self, value: object) -> object:
        """How every ``{{ ... }}`` prints; see the module docstring for why."""
        if isinstance(value, _Verbatim | int | float | jinja2.Undefined):
            return value  # Undefined is returned so that StrictUndefined raises when printed
        if value is None:
            return ""
        if isinstance(value, datetime):
            return _iso_utc(value)
        capped = self._capped(value if isinstance(value, Mapping | list | tuple) else str(value))
        return escape_json_text(json.dumps(capped, ensure_ascii=False))

    def _capped(self, value: object) -> object:
        if isinstance(value, str):
            limit = self._max_value_chars
            return value if len(value) <= limit else value[:limit] + ELLIPSIS
        if isinstance(value, datetime):
            return _iso_utc(value)
        if isinstance(value, Mapping):
            return {str(self._capped(str(key))): self._capped(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._capped(item) for item in value]
        return value


def _untrusted(value: Any) -> Any:
    """``value`` with every string in it, keys and nested dicts included, as ``UntrustedText``."""
    if isinstance(value, str):
        return UntrustedText(value)
    if isinstance(value, dict):
        return {UntrustedText(key): _untrusted(item) for key, item in value.items()}
    return value


def _context(card: IncidentCard, n: IncidentNotification, alert_data: str) -> dict[str, Any]:
    """The names a template sees (``CONTEXT_NAMES``); nothing from ``n`` is left a plain str."""
    data = n.as_dict()
    keys = ("labels", "annotations", "status", "generator_url", "fingerprint", "runbook_url")
    alert = _untrusted({key: data[key] for key in keys})
    alert["alertname"], alert["severity"] = UntrustedText(n.alertname), UntrustedText(n.severity)
    alert["starts_at"] = _utc(n.starts_at)
    alert["ends_at"] = None if n.ends_at is None else _utc(n.ends_at)
    return {
        "alert": alert,
        "group": _untrusted(data["group"]),
        "card": {
            "resource": _Verbatim(card.resource),
            "tools": tuple(_Verbatim(tool) for tool in card.tools),
            "max_iterations": card.max_iterations,
            "model": None if card.model is None else _Verbatim(card.model),
        },
        "alert_data": _Verbatim(alert_data),
    }
