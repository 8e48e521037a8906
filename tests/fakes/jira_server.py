"""A fake Jira: Cloud (REST v3, ADF, Basic email + API token) or Server/Data Center (REST v2,
wiki markup, ``Authorization: Bearer <PAT>``), real HTTP.

Contract:

* ``async with FakeJira(mode="cloud") as jira:`` serves on 127.0.0.1, port 0 at
  ``jira.base_url``. Cloud serves ``/rest/api/3`` only (and answers the retired
  ``/rest/api/3/search`` with 410, as Cloud does); Server serves ``/rest/api/2`` only.
* ``POST .../issue`` checks the fields (project, issue type, summary <= 255 chars on one line,
  labels without spaces, a known priority, and a description that is a valid ADF document
  for v3 or a string for v2) and answers 201 ``{"id", "key", "self"}``, else 400
  ``{"errorMessages": [], "errors": {field: message}}``.
* ``POST .../issue/{key}/comment`` (201), ``GET/POST .../issue/{key}/transitions`` (200 / 204).
* Search: ``GET /rest/api/3/search/jql`` (``{"issues", "isLast"}``) or ``GET
  /rest/api/2/search`` (``{"startAt", "maxResults", "total", "issues"}``) understands
  ``project = "X" AND labels = "Y"``. With ``search_lag=True`` created issues are not found
  until ``index()``: Jira's search is eventually consistent. ``seed_issue`` adds an issue
  as if someone (another replica) created it.
* Wrong or missing credentials: 401. ``fail_next(n, status, retry_after=None)``: the next
  ``n`` requests answer ``status``. Every request is recorded in ``jira.requests``.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from aiohttp import web

PRIORITIES = {"Highest", "High", "Medium", "Low", "Lowest"}
ISSUE_TYPES = {"Task", "Bug", "Incident"}
TRANSITIONS = [("11", "To Do"), ("21", "In Progress"), ("31", "Done")]

_BLOCK_NODES = {
    "paragraph",
    "heading",
    "bulletList",
    "orderedList",
    "codeBlock",
    "blockquote",
    "rule",
    "panel",
}
_INLINE_NODES = {"text", "hardBreak", "mention", "emoji", "inlineCard"}
_MARKS = {"strong", "em", "code", "link", "strike", "underline", "textColor"}


def adf_problem(doc: Any) -> str | None:
    """Why Jira would refuse ``doc`` as an Atlassian Document, or None."""
    if not isinstance(doc, dict) or doc.get("type") != "doc" or doc.get("version") != 1:
        return "not a doc with version 1"
    content = doc.get("content")
    if not isinstance(content, list):
        return "doc content is not a list"
    for node in content:
        problem = _block_problem(node)
        if problem:
            return problem
    return None


def _block_problem(node: Any) -> str | None:
    kind = node.get("type") if isinstance(node, dict) else None
    if kind not in _BLOCK_NODES:
        return f"unknown block node {kind!r}"
    children = node.get("content", [])
    if kind in {"paragraph", "heading"}:
        if kind == "heading" and node.get("attrs", {}).get("level") not in range(1, 7):
            return "heading without a level 1-6"
        return next(filter(None, map(_inline_problem, children)), None)
    if kind in {"bulletList", "orderedList"}:
        if not children:
            return f"{kind} without items"
        for item in children:
            if item.get("type") != "listItem" or not item.get("content"):
                return f"{kind} holds a non-listItem or an empty listItem"
            problem = next(filter(None, map(_block_problem, item["content"])), None)
            if problem:
                return problem
    return None


def _inline_problem(node: Any) -> str | None:
    kind = node.get("type") if isinstance(node, dict) else None
    if kind not in _INLINE_NODES:
        return f"unknown inline node {kind!r}"
    if kind == "text":
        if not isinstance(node.get("text"), str) or not node["text"]:
            return "empty text node"
        for mark in node.get("marks", []):
            if mark.get("type") not in _MARKS:
                return f"unknown mark {mark.get('type')!r}"
            if mark["type"] == "link" and not str(mark.get("attrs", {}).get("href", "")):
                return "link mark without href"
    return None


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Issue:
    id: str
    key: str
    fields: dict[str, Any]
    status: str = "To Do"
    comments: list[Any] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return list(self.fields.get("labels", []))


class FakeJira:
    def __init__(
        self,
        *,
        mode: Literal["cloud", "server"] = "cloud",
        email: str = "sentinel@example.com",
        api_token: str = "jira-api-token-fake-7d2e",
        pat: str = "jira-pat-fake-41c9",
        project: str = "OPS",
        search_lag: bool = False,
    ) -> None:
        self.mode = mode
        self.version = 3 if mode == "cloud" else 2
        self.email, self.api_token, self.pat = email, api_token, pat
        self.project = project
        self.search_lag = search_lag
        self.issues: dict[str, Issue] = {}
        self.requests: list[RecordedRequest] = []
        self._indexed: set[str] = set()
        self._failures: list[tuple[int, str | None]] = []
        self._ids = itertools.count(10001)
        self._numbers = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    async def __aenter__(self) -> FakeJira:
        app = web.Application(middlewares=[self._middleware])
        api = f"/rest/api/{self.version}"
        app.router.add_post(f"{api}/issue", self._create)
        app.router.add_post(f"{api}/issue/{{key}}/comment", self._comment)
        app.router.add_get(f"{api}/issue/{{key}}/transitions", self._transitions)
        app.router.add_post(f"{api}/issue/{{key}}/transitions", self._transition)
        if self.version == 3:
            app.router.add_get(f"{api}/search/jql", self._search)
            app.router.add_route("*", f"{api}/search", self._gone)
        else:
            app.router.add_get(f"{api}/search", self._search)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        assert self._port is not None, "FakeJira is not started"
        return f"http://127.0.0.1:{self._port}"

    def fail_next(self, count: int, status: int = 503, *, retry_after: str | None = None) -> None:
        self._failures.extend((status, retry_after) for _ in range(count))

    def index(self) -> None:
        """Make every issue searchable (the search index caught up)."""
        self._indexed = set(self.issues)

    def seed_issue(self, labels: list[str], summary: str = "seeded") -> Issue:
        issue = self._new_issue({"summary": summary, "labels": labels})
        self._indexed.add(issue.key)
        return issue

    def paths(self, method: str | None = None) -> list[str]:
        return [r.path for r in self.requests if method is None or r.method == method]

    # -- plumbing --------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.requests.append(
            RecordedRequest(
                request.method,
                request.path,
                dict(request.query),
                {k.lower(): v for k, v in request.headers.items()},
                body,
            )
        )
        if self._failures:
            status, retry_after = self._failures.pop(0)
            headers = {"Retry-After": retry_after} if retry_after else {}
            return web.json_response(
                {"errorMessages": ["fake failure"], "errors": {}}, status=status, headers=headers
            )
        if not self._authorised(request.headers.get("Authorization", "")):
            return web.json_response(
                {"errorMessages": ["You are not authenticated."], "errors": {}}, status=401
            )
        response: web.StreamResponse = await handler(request)
        return response

    @staticmethod
    async def _json(request: web.Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.read())  # read() is cached: the body was read once
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def _authorised(self, header: str) -> bool:
        if self.mode == "server":
            return header == f"Bearer {self.pat}"
        expected = base64.b64encode(f"{self.email}:{self.api_token}".encode()).decode()
        return header == f"Basic {expected}"

    def _new_issue(self, fields: dict[str, Any]) -> Issue:
        issue_id = str(next(self._ids))
        key = f"{self.project}-{next(self._numbers)}"
        issue = Issue(issue_id, key, fields)
        self.issues[key] = issue
        if not self.search_lag:
            self._indexed.add(key)
        return issue

    def _issue_json(self, issue: Issue) -> dict[str, Any]:
        return {
            "id": issue.id,
            "key": issue.key,
            "self": f"{self.base_url}/rest/api/{self.version}/issue/{issue.id}",
            "fields": {"summary": issue.fields.get("summary", "")},
        }

    @staticmethod
    def _bad(errors: dict[str, str]) -> web.Response:
        return web.json_response({"errorMessages": [], "errors": errors}, status=400)

    def _body_problem(self, body: Any) -> str | None:
        if self.version == 3:
            return adf_problem(body)
        return None if isinstance(body, str) and body.strip() else "not wiki text"

    # -- handlers --------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        fields = (await self._json(request)).get("fields") or {}
        errors: dict[str, str] = {}
        if (fields.get("project") or {}).get("key") != self.project:
            errors["project"] = "valid project is required"
        if (fields.get("issuetype") or {}).get("name") not in ISSUE_TYPES:
            errors["issuetype"] = "valid issue type is required"
        summary = fields.get("summary")
        if not isinstance(summary, str) or not summary or len(summary) > 255 or "\n" in summary:
            errors["summary"] = "summary must be one line of at most 255 characters"
        if "description" in fields and self._body_problem(fields["description"]):
            errors["description"] = f"invalid: {self._body_problem(fields['description'])}"
        labels = fields.get("labels", [])
        if not isinstance(labels, list) or any(" " in str(label) for label in labels):
            errors["labels"] = "labels cannot contain spaces"
        if "priority" in fields and (fields["priority"] or {}).get("name") not in PRIORITIES:
            errors["priority"] = "invalid priority"
        if errors:
            return self._bad(errors)
        issue = self._new_issue(fields)
        body = self._issue_json(issue)
        del body["fields"]
        return web.json_response(body, status=201)

    def _find(self, request: web.Request) -> Issue | None:
        key = request.match_info["key"]
        return self.issues.get(key) or next(
            (issue for issue in self.issues.values() if issue.id == key), None
        )

    @staticmethod
    def _missing() -> web.Response:
        return web.json_response(
            {
                "errorMessages": ["Issue does not exist or you do not have permission to see it."],
                "errors": {},
            },
            status=404,
        )

    async def _comment(self, request: web.Request) -> web.Response:
        issue = self._find(request)
        if issue is None:
            return self._missing()
        body = (await self._json(request)).get("body")
        problem = self._body_problem(body)
        if problem:
            return self._bad({"comment": problem})
        issue.comments.append(body)
        comment_id = str(next(self._ids))
        return web.json_response(
            {"id": comment_id, "self": f"{self.base_url}/comment/{comment_id}", "body": body},
            status=201,
        )

    async def _transitions(self, request: web.Request) -> web.Response:
        issue = self._find(request)
        if issue is None:
            return self._missing()
        offered = [
            {"id": tid, "name": name, "to": {"name": name}}
            for tid, name in TRANSITIONS
            if name != issue.status
        ]
        return web.json_response({"expand": "transitions", "transitions": offered})

    async def _transition(self, request: web.Request) -> web.Response:
        issue = self._find(request)
        if issue is None:
            return self._missing()
        wanted = ((await self._json(request)).get("transition") or {}).get("id")
        names = {tid: name for tid, name in TRANSITIONS if name != issue.status}
        if wanted not in names:
            return self._bad({"transition": "invalid transition"})
        issue.status = names[wanted]
        return web.Response(status=204)

    async def _gone(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"errorMessages": ["The requested API has been removed. Use /rest/api/3/search/jql"]},
            status=410,
        )

    async def _search(self, request: web.Request) -> web.Response:
        jql = request.query.get("jql", "")
        project = re.search(r'project\s*=\s*"([^"]+)"', jql)
        label = re.search(r'labels\s*=\s*"([^"]+)"', jql)
        found = [
            issue
            for key, issue in self.issues.items()
            if key in self._indexed
            and (project is None or issue.key.startswith(project.group(1) + "-"))
            and (label is None or label.group(1) in issue.labels)
        ]
        limit = int(request.query.get("maxResults", "50"))
        issues = [self._issue_json(issue) for issue in found[:limit]]
        if self.version == 3:
            return web.json_response({"issues": issues, "isLast": True})
        return web.json_response(
            {"startAt": 0, "maxResults": limit, "total": len(found), "issues": issues}
        )
