"""Secret redaction: mask credentials before the model or a sink sees them.

Applies to ``ToolOutput.output`` (before the model reads it), ``AgentInput.alert_data`` (the
model provider is a third party too) and a ``ReportCheck`` report: every string of the finding
(summary, probable cause, evidence source and detail, actions), each recorded tool call's
arguments and result, and the report's error. Each secret becomes ``[REDACTED:<kind>]``; for a
``key=value`` or header the key stays readable and only the value is masked. The result is
``Modified`` (the reason counts kinds, never quotes a secret) or ``Approved`` when nothing
matched.

Pattern-based, so it catches the shapes listed in ``RULES`` and nothing else: a secret with no
recognisable prefix and no telling key (a bare random password in prose) passes. Ordinary hex
ids, digests, fingerprints, UUIDs and PromQL do not match any rule.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from mcp_sentinel.models import EvidenceItem, IncidentReport
from mcp_sentinel.validators.actions import Action, ActionKind, AgentInput, ReportCheck, ToolOutput
from mcp_sentinel.validators.pipeline import (
    Approved,
    IncidentContext,
    Modified,
    ValidationResult,
)

_Q = r"""(?:\\?["'])?"""  # an optional quote after a key, escaped or not (JSON in JSON)
_SEP = r"[ \t]*[:=][ \t]*"
# A value: double-quoted (JSON), single-quoted, escaped-quoted, or bare up to a delimiter.
_VALUE = (
    r'''(?:"(?P<s1>(?:[^"\\\n]|\\.){1,512})"'''
    r"""|'(?P<s2>[^'\n]{1,512})'"""
    r'''|\\"(?P<s3>(?:(?!\\")[^\n]){1,512})\\"'''
    r"""|(?P<s4>\$\{[^}\n]{1,200}\})"""  # ${VAR}: a placeholder, then vetoed
    r"""|(?!\d{1,6}[ \t]+bytes\b)(?P<s5>[^\s"'\\,;&<>(){}\[\]|]{1,512}))"""
)
_SECRET_KEY = (
    r"(?:[A-Za-z0-9]+[_.-])*(?:password|passwd|passphrase|secret|secret[_-]?key"
    r"|client[_-]?secret|api[_-]?key|apikey|access[_-]?key|private[_-]?key|auth[_-]?token"
    r"|access[_-]?token|refresh[_-]?token|session[_-]?token|bearer[_-]?token|bot[_-]?token"
    r"|credentials)"
)
# Every key name of _SECRET_KEY that ends in "key" contains one of these.
_KEY_NEEDLES = tuple(
    f"{prefix}{joint}key" for prefix in ("api", "access", "private") for joint in ("", "_", "-")
)
# Values that are obviously not secrets: masks, placeholders, templates, booleans, paths.
_PLACEHOLDER = re.compile(
    r"^(?:\**|x+|\.+|-+|\?+|<[^>]*>|\$\{[^}]*\}|\$[A-Za-z_]\w*|\{\{.*\}\}|%\(?\w*\)?s?"
    r"|null|none|nil|true|false|yes|no|empty|redacted|hidden|masked|secret|password"
    r"|changeme|[|>][-+]?|(?:/|~/|\./).*|\[REDACTED.*)$",
    re.IGNORECASE,
)
_SCHEME = re.compile(
    r"^(?:bearer|basic|token|digest|negotiate|ntlm|apikey|api-key|aws4-hmac-sha256|sharedkey"
    r"|ssws|splunk|key)\s+\S",
    re.IGNORECASE,
)


def _token_like(value: str) -> bool:
    """Looks like a credential rather than words: one run with digits, symbols, or long mixed
    case."""
    value = value.strip()
    if not value or any(char.isspace() for char in value):
        return False
    if any(char.isdigit() for char in value):
        return True
    if len(value) >= 12 and any(char in "-_.+/=~" for char in value):
        return True
    body = value[1:]
    return len(value) >= 20 and any(c.isupper() for c in body) and any(c.islower() for c in body)


def _not_placeholder(value: str) -> bool:
    return not _PLACEHOLDER.match(value.strip())


def _auth_value(value: str) -> bool:
    return _not_placeholder(value) and (bool(_SCHEME.match(value)) or _token_like(value))


def _key_kind(key: str) -> str:
    key = key.lower()
    for needle, kind in (
        ("pass", "password"),
        ("pwd", "password"),
        ("private", "private_key"),
        ("token", "token"),
        ("credential", "credentials"),
        ("secret", "secret"),
    ):
        if needle in key:
            return kind
    return "api_key"


@dataclass(frozen=True, slots=True)
class Rule:
    """One secret shape. Groups named ``s...`` are masked (else the whole match); ``key`` names
    the group whose text picks the kind; ``accept`` vetoes a candidate value."""

    kind: str
    pattern: re.Pattern[str]
    needles: tuple[str, ...]
    accept: Callable[[str], bool] = _not_placeholder
    key: str | None = None


def _rule(
    kind: str,
    pattern: str,
    needles: tuple[str, ...],
    *,
    flags: int = 0,
    accept: Callable[[str], bool] = _not_placeholder,
    key: str | None = None,
) -> Rule:
    return Rule(kind, re.compile(pattern, flags), needles, accept, key)


_I = re.IGNORECASE
RULES: tuple[Rule, ...] = (
    _rule("gcp_private_key", r'"private_key"\s*:\s*"(?P<s>(?:[^"\\]|\\.){8,})"', ("private_key",)),
    _rule("gcp_private_key", r'\\"private_key\\"\s*:\s*\\"(?P<s>.{8,}?)\\"', ("private_key",)),
    _rule(
        "pem_private_key",
        r"-----BEGIN[ A-Z0-9]{0,20}PRIVATE KEY(?: BLOCK)?-----(?:[\s\S]{0,20000}?-----END"
        r"[ A-Z0-9]{0,20}PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=\s\\:,-]*)",
        ("private key",),
    ),
    _rule("gcp_private_key_id", r'"private_key_id"\s*:\s*"(?P<s>[0-9a-f]{16,})"', ("private_key",)),
    _rule(
        "aws_access_key_id", r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])", ("akia", "asia")
    ),
    _rule(
        "aws_secret_access_key",
        r"\b(?:aws_?secret_?access_?key|aws_?secret_?key|secret_?access_?key|aws_?secret)\b"
        + _Q
        + r"\s*[:=]\s*"
        + _Q
        + r"(?P<s>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",
        ("secret",),
        flags=_I,
    ),
    _rule(
        "azure_key",
        r"\b(?:AccountKey|SharedAccessKey|SharedAccessSignature)\s*=\s*(?P<s>[A-Za-z0-9+/=%]{16,})",
        ("accountkey", "sharedaccess"),
        flags=_I,
    ),
    _rule("azure_sas", r"[?&]sig=(?P<s>[A-Za-z0-9%+/=]{20,})", ("sig=",)),
    _rule("anthropic_api_key", r"(?<![\w-])sk-ant-[A-Za-z0-9_-]{20,}", ("sk-ant-",)),
    _rule(
        "openai_api_key",
        r"(?<![\w-])sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}",
        ("sk-",),
        accept=lambda v: _token_like(v[3:]),
    ),
    _rule("stripe_key", r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b", ("_live_", "_test_")),
    _rule("stripe_webhook_secret", r"\bwhsec_[A-Za-z0-9]{24,}\b", ("whsec_",)),
    _rule("slack_token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}", ("xox",)),
    _rule(
        "slack_webhook",
        r"hooks\.slack\.com/(?P<s>(?:services|workflows|triggers)/[A-Za-z0-9/_-]{20,})",
        ("hooks.slack.com",),
    ),
    _rule("github_token", r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b", ("gh",)),
    _rule("github_token", r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b", ("github_pat_",)),
    _rule("gitlab_token", r"\bglpat-[A-Za-z0-9_-]{20,}", ("glpat-",)),
    _rule("npm_token", r"\bnpm_[A-Za-z0-9]{36}\b", ("npm_",)),
    _rule("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}(?![\w-])", ("aiza",)),
    _rule("sendgrid_key", r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}\b", ("sg.",)),
    _rule("jwt", r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*", ("eyj",)),
    _rule(
        "url_credentials",
        r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s/:@\"'<>]{1,128}:(?P<s>[^\s/@\"'<>]{1,256})@",
        ("://",),
    ),
    _rule(
        "authorization_header",
        r"\b(?:proxy-)?authorization\b" + _Q + _SEP + _Q + r"(?P<s>[^\r\n\"'\\]{4,2048})",
        ("authorization",),
        flags=_I,
        accept=_auth_value,
    ),
    _rule(
        "bearer_token",
        r"\bbearer\s+(?P<s>[A-Za-z0-9._~+/=-]{8,})",
        ("bearer",),
        flags=_I,
        accept=lambda v: _not_placeholder(v) and _token_like(v),
    ),
    _rule(
        "api_key_header",
        r"\b(?:x-api-key|api-key|x-auth-token|x-access-token|x-amz-security-token|x-goog-api-key"
        r"|private-token|x-vault-token|x-csrf-token)\b"
        + _Q
        + _SEP
        + _Q
        + r"(?P<s>[^\s\"'\\,;]{6,})",
        ("api-key", "token"),
        flags=_I,
    ),
    _rule(
        "cookie",
        r"\b(?:set-)?cookie\b" + _Q + r"[ \t]*:[ \t]*" + _Q + r"(?P<s>[^\r\n\"'\\]*=[^\r\n\"'\\]*)",
        ("cookie",),
        flags=_I,
    ),
    _rule(
        "cli_secret",
        r"--(?P<key>(?:[a-z0-9]+-)*(?:password|passwd|token|api-key|secret|client-secret))"
        r"(?:[ \t]+|=)(?P<s>[^\s\"'-][^\s\"']*)",
        ("--",),
        flags=_I,
        key="key",
    ),
    _rule(
        "assignment",
        r"(?<!\w)(?P<key>" + _SECRET_KEY + r")\b" + _Q + _SEP + _VALUE,
        # Not a bare "key": the key names above spell it with a prefix (api_key, access-key,
        # privatekey...), and the group key of every alert would run this rule for nothing.
        ("pass", "secret", "token", "credential", *_KEY_NEEDLES),
        flags=_I,
        key="key",
    ),
    # A bare "token" or "pwd" key, but not the tail of next-page-token or a.token.
    _rule(
        "assignment",
        r"(?<![\w.-])(?P<key>token|(?-i:pwd|Pwd))\b" + _Q + _SEP + _VALUE,
        ("token", "pwd"),
        flags=_I,
        key="key",
    ),
)


_NEEDLES = tuple(dict.fromkeys(needle for rule in RULES for needle in rule.needles))


def _present(lowered: str) -> set[str]:
    """The needles that occur in ``lowered``: each looked for once, not once per rule."""
    found = {needle for needle in _NEEDLES if needle in lowered}
    if "key" in lowered and not lowered.isascii():
        # IGNORECASE also matches letters that str.lower keeps apart from ASCII (U+0131
        # dotless i, U+017F long s): such text runs the key rule whenever it holds a "key".
        found.update(_KEY_NEEDLES)
    return found


def redact(text: str) -> tuple[str, Counter[str]]:
    """``text`` with every secret replaced by ``[REDACTED:<kind>]``, and the count per kind."""
    counts: Counter[str] = Counter()
    present = _present(text.lower())
    if not present:
        return text, counts
    for rule in RULES:
        if present.isdisjoint(rule.needles):
            continue  # cheap pre-filter: most rules cannot match most texts
        masked = rule.pattern.sub(partial(_mask, rule=rule, counts=counts), text)
        if masked != text:  # a marker may bring a needle in ("[REDACTED:api_key]")
            text = masked
            present = _present(text.lower())
    return text, counts


def _mask(found: re.Match[str], *, rule: Rule, counts: Counter[str]) -> str:
    spans = [
        found.span(name)
        for name, value in found.groupdict().items()
        if name.startswith("s") and value is not None
    ]
    whole = found.group(0)
    if not spans:
        if not rule.accept(whole):
            return whole
        start, end = found.span()
    else:
        start, end = spans[0]
    secret = found.string[start:end]
    if secret.startswith("[REDACTED") or not rule.accept(secret):
        return whole
    kind = _key_kind(found.group(rule.key)) if rule.key else rule.kind
    counts[kind] += 1
    offset = found.start()
    return f"{whole[: start - offset]}[REDACTED:{kind}]{whole[end - offset :]}"


def _describe(counts: Counter[str]) -> str:
    parts = ", ".join(f"{kind} x{count}" for kind, count in sorted(counts.items()))
    return f"redacted {sum(counts.values())} secret(s): {parts}"


class SecretRedactor:
    """The ``secret_redaction`` validator. Stateless."""

    name = "secret_redaction"
    can_modify = True
    kinds: frozenset[ActionKind] = frozenset({"agent_input", "tool_output", "report"})

    def __init__(self, *, priority: int = 30) -> None:
        self.priority = priority

    def validate(self, action: Action, context: IncidentContext) -> ValidationResult:
        counts: Counter[str] = Counter()

        def clean(text: str) -> str:
            cleaned, found = redact(text)
            counts.update(found)
            return cleaned

        changed: Action
        if isinstance(action, ToolOutput):
            changed = replace(action, output=clean(action.output))
        elif isinstance(action, AgentInput):
            changed = replace(action, alert_data=clean(action.alert_data))
        elif isinstance(action, ReportCheck):
            changed = replace(action, report=redact_report(action.report, clean))
        else:
            return Approved()
        if not counts:
            return Approved()
        return Modified(changed, _describe(counts))


def redact_report(report: IncidentReport, clean: Callable[[str], str]) -> IncidentReport:
    """``report`` with ``clean`` applied to the strings a secret could hide in; only what
    changed is copied (``report`` itself when nothing did)."""
    update: dict[str, object] = {}
    finding = report.finding
    if finding is not None:
        cleaned = {
            "summary": clean(finding.summary),
            "probable_cause": clean(finding.probable_cause),
            "evidence": [
                EvidenceItem(source=clean(item.source), detail=clean(item.detail))
                for item in finding.evidence
            ],
            "recommended_actions": [clean(text) for text in finding.recommended_actions],
        }
        if any(getattr(finding, name) != value for name, value in cleaned.items()):
            update["finding"] = finding.model_copy(update=cleaned)
    calls = [
        call.model_copy(
            update={
                "arguments": clean(call.arguments),
                "result": None if call.result is None else clean(call.result),
            }
        )
        for call in report.tools_called
    ]
    if calls != report.tools_called:
        update["tools_called"] = calls
    if report.error is not None and (error := clean(report.error)) != report.error:
        update["error"] = error
    return report.model_copy(update=update) if update else report
