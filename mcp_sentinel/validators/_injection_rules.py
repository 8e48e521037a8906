"""The injection guard's heuristics: regular expressions over folded text, by category.

Written for low false positives on operational text (alerts, PromQL, logs, JSON, stack traces,
kubectl output): a rule fires on phrasing addressed to a model or an agent ("ignore all
previous instructions", "you are now", "send the credentials to https://..."), not on words
that also occur in logs ("ignored", "override", "token", "system"). Verbs are matched in their
base (imperative) form, so log lines in the past or progressive tense ("Sending logs to",
"ignoring rule") do not match. Every quantifier is bounded, so matching stays linear.

Speed matters (the guard runs on the event loop over every tool output), hence the shape:

* patterns are lowercase and run on a lowercased view, without ``re.IGNORECASE``; the few
  case-sensitive ones (``DAN``, ``END OF ALERT``) say ``cased=True`` and see the original case;
* a leading ``\\b`` is checked in Python (``word_start``) rather than in the pattern, so the
  regex engine can skip ahead to the first letter of the leading alternation;
* ``needs`` lists words (whole ``[a-z]+`` tokens) or literal substrings of which every match
  contains at least one: a rule runs only on a text containing one of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OVERRIDE = "instruction override"
JAILBREAK = "role-play jailbreak"
MARKER = "fake message marker"
COMMAND = "tool or command request"
EXFIL = "exfiltration request"
ADDRESSED = "instruction addressed to the model"
ENCODED = "encoded instruction"
HIDDEN = "hidden instruction"
HIDDEN_CHARS = "hidden characters"


@dataclass(frozen=True, slots=True)
class Rule:
    category: str
    pattern: re.Pattern[str]
    words: frozenset[str]  # any of these tokens present ...
    literals: tuple[str, ...]  # ... or any of these substrings, else the rule cannot match
    word_start: bool = False  # the match must start at a word boundary
    cased: bool = False  # run on the original-case view
    not_after: tuple[str, ...] = ()  # the match must not follow any of these


class RuleSet:
    """Rules indexed by what they need, so a text only pays for the rules it could match."""

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self.rules = rules
        by_word: dict[bytes, list[int]] = {}
        for index, rule in enumerate(rules):
            for word in rule.words:
                by_word.setdefault(word.encode(), []).append(index)
        self._by_word = {word: tuple(indexes) for word, indexes in by_word.items()}
        self._words = frozenset(by_word)
        self._literals = tuple(
            (literal, index) for index, rule in enumerate(rules) for literal in rule.literals
        )

    def candidates(self, tokens: set[bytes], lowered: str) -> list[Rule]:
        """The rules whose needs appear in ``tokens`` (words, as bytes: see ``tokens``) or
        ``lowered`` (literals)."""
        hits: set[int] = set()
        for word in self._words.intersection(tokens):
            hits.update(self._by_word[word])
        for literal, index in self._literals:
            if literal in lowered:
                hits.add(index)
        if not hits:
            return []  # the usual answer, for a label, a status or a URL
        return [self.rules[index] for index in sorted(hits)]


_LETTERS = bytes(byte if 97 <= byte <= 122 else 32 for byte in range(256))


def tokens(lowered: str) -> set[bytes]:
    """The ``[a-z]+`` words of a lowercased text, as bytes (a bytes translate is 2-3x faster
    than a regex; non-ASCII letters only split words, and no rule needs one)."""
    return set(lowered.encode("utf-8", "surrogatepass").translate(_LETTERS).split())


def _r(
    category: str,
    needs: str,
    pattern: str,
    *,
    cased: bool = False,
    not_after: tuple[str, ...] = (),
) -> Rule:
    words = frozenset(need for need in needs.split() if need.isalpha())
    literals = tuple(need for need in needs.split() if not need.isalpha())
    word_start = pattern.startswith(r"\b")
    body = pattern[2:] if word_start else pattern
    return Rule(
        category, re.compile(body, re.MULTILINE), words, literals, word_start, cased, not_after
    )


_S = r"[ \t\r\n]+"  # whitespace between words, newlines included
_SO = r"[ \t\r\n]*"  # optional whitespace
_QUALIFIER = (
    r"(?:all|any|every|each|the|your|my|our|these|those|this|that|of|previous(?:ly)?|prior|above"
    r"|earlier|preceding|foregoing|former|original|initial|old|existing|current|given|system"
    r"|safety|security|developer|operator|standing|other|instead)"
)
_TEMPORAL = (
    r"(?:all|any|your|previous(?:ly)?|prior|above|earlier|preceding|foregoing|former|original"
    r"|initial)"
)
_STRONG_NOUN = (
    r"(?:instructions?|prompts?|directives?|guidelines?|guardrails?|programming|safeguards?"
    r"|system[ \t]+(?:prompt|message)s?)"
)
_WEAK_NOUN = (
    r"(?:rules?|polic(?:y|ies)|constraints?|restrictions?|messages?|commands?|context|orders?"
    r"|limitations?|text|content|conversation|tasks?)"
)
_OVERRIDE_VERBS = "ignore disregard forget override overrule neglect abandon"
_MODEL = (
    r"(?:ai|a\.i\.|llm|language[ \t]+model|assistant|agent|chat ?bot|gpt|chatgpt|claude|gemini"
    r"|copilot|model|bot)"
)
_ADDRESS = (
    r"(?:please|now|you[ \t]+(?:must|should|need[ \t]+to|have[ \t]+to|will|shall|are[ \t]+to))"
)
_SECRETS = (
    r"(?:secrets?|credentials?|keys?|api[ \t_-]?keys?|tokens?|passwords?|env(?:ironment)?"
    r"(?:[ \t]+variables)?|config(?:uration)?|kubeconfig|conversation|chat[ \t]+history|history"
    r"|(?:system[ \t]+)?prompt|instructions|context|ssh[ \t]+keys?|cookies?|session)"
)
_ANYTHING = r"(?:data|logs?|output|results?|everything|all|it|this|findings?|report|alert|incident)"
# A verb after these is not an imperative ("failed to send data to", "could not upload").
_NOT_IMPERATIVE = ("to ", "not ", "n't ", "will ", "ould ", "can ")
_URL = r"(?:https?://|ftp://|s3://|gs://)"
_DESTINATION = (
    rf"(?:{_URL}|[\w.+-]{{1,64}}@[\w-]{{1,63}}\.[\w.]{{2,}}"
    r"|(?:this|the[ \t]+following|my|our|an?[ \t]+external)[ \t]+(?:url|webhook|endpoint|server"
    r"|address|email|bucket))"
)
_EXFIL_VERBS = "send post upload forward transmit exfiltrate leak email mail copy pipe"
_EXFIL_VERB = r"\b(?:send|post|upload|forward|transmit|exfiltrate|leak|email|e-mail|copy|pipe)"

# fmt: off
RULES = RuleSet((
    # ------------------------------------------------------------------ instruction override
    _r(OVERRIDE, f"{_OVERRIDE_VERBS} aside",
       rf"\b(?:ignore|disregard|forget|override|overrule|neglect|abandon|set{_S}aside)"
       rf"{_S}(?:{_QUALIFIER}{_S}){{0,4}}{_STRONG_NOUN}\b"),
    _r(OVERRIDE, _OVERRIDE_VERBS,
       rf"\b(?:ignore|disregard|forget|override|overrule|neglect|abandon)"
       rf"{_S}(?:{_QUALIFIER}{_S}){{0,2}}{_TEMPORAL}{_S}(?:{_QUALIFIER}{_S}){{0,2}}{_WEAK_NOUN}\b"),
    _r(OVERRIDE, "disregard",
       rf"\bdisregard{_S}(?:(?:everything|all|anything){_S})?(?:(?:the|that|of){_S})?"
       r"(?:above|previous|prior|preceding|foregoing|earlier)\b"),
    _r(OVERRIDE, "forget",
       rf"\bforget{_S}(?:everything|all|anything|what){_S}(?:(?:you|that|i|we){_S})?"
       r"(?:were|have|has|was|had|know|said|told|learned|above|before|previously)\b"),
    _r(OVERRIDE, "instruction instructions directive directives prompt orders task",
       rf"\b(?:new|real|actual|true|secret|hidden|revised|updated|override){_S}"
       rf"(?:system{_S})?(?:instructions?|directives?|prompt|orders|task){_SO}[:!-]"),
    _r(OVERRIDE, "from", rf"\bfrom{_S}now{_S}on\b[^.\n]{{0,40}}\b(?:you|your|{_MODEL})\b"),
    _r(OVERRIDE, "your",
       rf"\byour{_S}(?:new|real|actual|true|only){_S}(?:task|role|instructions?|goal"
       r"|objective|purpose|job|mission)\b"),
    _r(OVERRIDE, "follow following obey obeying listen listening comply complying adhere adhering",
       rf"\b(?:do{_S}not|don't|never|stop){_S}(?:follow(?:ing)?|obey(?:ing)?|listen(?:ing)?"
       rf"{_S}to|comply(?:ing)?{_S}with|adher(?:e|ing){_S}to){_S}(?:(?:the|your|any|all){_S})?"
       rf"(?:(?:previous|prior|system|original|above|earlier){_S})?(?:instructions?|rules|prompt"
       r"|guidelines|directives)\b"),
    _r(OVERRIDE, "above previous prior earlier preceding",
       rf"\b(?:above|previous|prior|earlier|preceding){_S}(?:instructions?|text|prompt|rules"
       rf"|messages?){_S}(?:is|are|was|were){_S}(?:(?:a|all){_S})?(?:fake|false|wrong|outdated"
       r"|obsolete|void|cancelled|canceled|revoked|test|lies)\b"),
    _r(OVERRIDE, "override",
       rf"\b(?:system|developer|admin(?:istrator)?|root|sudo|god){_S}override\b"),
    # ------------------------------------------------------------------ role-play jailbreak
    _r(JAILBREAK, "you",
       rf"\byou{_S}are{_S}(?:now|no{_S}longer|henceforth|from{_S}now{_S}on)\b"
       r"(?![ \t]+(?:connected|logged|signed|subscribed|viewing|using|running|authenticated"
       r"|registered|watching|leaving|entering|following|being"
       r"|in[ \t]+(?:the|a)[ \t]+\w+[ \t]+(?:namespace|cluster|context|directory|shell)"
       r"|on[ \t]+(?:the|branch)))"),
    _r(JAILBREAK, "act behave respond answer speak reply function",
       rf"\b(?:act|behave|respond|answer|speak|reply|function){_S}as{_S}(?:if{_S}you"
       rf"{_S}(?:are|were|have|had)|though{_S}you|an?{_S}(?:unrestricted|unfiltered|uncensored"
       rf"|evil|malicious|jailbroken|rogue|different|new){_S}|dan\b|my{_S}(?:grandma|grandmother"
       r"|deceased))"),
    _r(JAILBREAK, "act behave",
       rf"(?:^|[.!?:;][ \t]+|\b{_ADDRESS}[ \t]+)(?:act|behave){_S}as{_S}(?:an?{_S}|the{_S})?"
       r"[\w-]{2,30}\b"),
    _r(JAILBREAK, "pretend imagine",
       rf"\b(?:pretend|imagine){_S}(?:to{_S}be|you{_S}are|you're|that{_S}you){_S}"
       rf"(?!(?:the|a){_S}(?:user|customer){_S}(?:of|who))"),
    _r(JAILBREAK, "role roleplay roleplaying character",
       rf"\brole-?{_SO}play(?:ing)?{_S}as\b|\bstay{_S}in{_S}character\b|\bbreak{_S}character\b"),
    _r(JAILBREAK, "anything", rf"\bdo{_S}anything{_S}now\b"),
    _r(JAILBREAK, "dan",
       rf"\b(?:you{_S}are|act{_S}as|become|called|named|as){_S}DAN\b|\bDAN{_S}(?:mode|prompt"
       r"|jailbreak)\b",
       cased=True),
    _r(JAILBREAK, "mode",
       rf"\b(?:enable|enter|activate|switch{_S}(?:to|into)|turn{_S}on|go{_S}into){_S}"
       rf"(?:the{_S})?(?:developer|dev|god|jailbreak|jailbroken|unrestricted|unfiltered|evil"
       rf"|sudo|admin){_S}mode\b"),
    _r(JAILBREAK, "mode",
       rf"\b(?:jailbreak|jailbroken|god|unrestricted|unfiltered|evil){_S}mode{_S}"
       r"(?:enabled|activated|on|engaged)\b"),
    _r(JAILBREAK, "restrictions limitations limits filters rules guidelines censorship boundaries",
       rf"\byou{_S}(?:have|are){_S}(?:no|free{_S}(?:of|from)|without){_S}(?:\w+{_S})?"
       r"(?:restrictions|limitations|limits|filters|rules|guidelines|censorship|boundaries)\b"),
    # ------------------------------------------------------------------ fake message markers
    _r(MARKER, "<|",
       r"<\|(?:im_start|im_end|im_sep|endoftext|eot_id|eom_id|start_header_id|end_header_id"
       r"|begin_of_text|system|user|assistant|tool|ipython|channel|message)\|>"),
    _r(MARKER, "inst] <<sys <</sys", r"\[/?inst\]|<</?sys>>"),
    _r(MARKER,
       "system assistant developer tool function instruction instructions query human admin "
       "untrusted alert",
       r"</?(?:system|system[_-]prompt|system[_-]message|assistant|developer|tool_result"
       r"|tool_response|tool_output|function_results?|function_call|tool_call|tool_use"
       r"|instructions?|user_query|human|admin|untrusted|alert-data)(?:[ \t][^<>\n]{0,100})?>"),
    _r(MARKER, "system assistant developer human ai",
       r"^[ \t>#*_\[]*(?:system|assistant|developer|human|ai)[ \t_]*(?:message|prompt|note"
       r"|instruction|override)?[ \t]*(?:\][ \t]*:?|\)?[ \t]*:)[ \t]*(?=[^\n]{0,100}?\b(?:you"
       r"|your|ignore|disregard|forget|must|always|never|call|run|execute|send|reveal|respond"
       r"|reply|output|instructions?)\b)"),
    _r(MARKER, "system assistant developer",
       r"\b(?:SYSTEM|System|ASSISTANT|Assistant|DEVELOPER|Developer)[ \t]*(?:PROMPT|Prompt"
       r"|MESSAGE|Message)?[ \t]*:[ \t]*(?=(?i:[^\n]{0,100}?\b(?:you|your|ignore|disregard"
       r"|forget|must|always|never|call|run|execute|send|reveal|respond|reply|output"
       r"|instructions?)\b))",
       cased=True),
    _r(MARKER, "end begin start",
       r"\bEND[ \t]+OF[ \t]+(?:THE[ \t]+)?(?:ALERT|TOOL[ \t]+OUTPUT|UNTRUSTED|DATA|INPUT"
       r"|CONTEXT|DOCUMENT|USER[ \t]+INPUT)\b"
       r"|\b(?:BEGIN|START)[ \t]+(?:OF[ \t]+)?(?:THE[ \t]+)?"
       r"(?:SYSTEM|NEW|REAL|TRUSTED|ADMIN|DEVELOPER)[ \t]+(?:PROMPT|INSTRUCTIONS?|MESSAGE)\b",
       cased=True),
    _r(MARKER, "end",
       rf"\bend{_S}of{_S}(?:the{_S})?(?:untrusted|alert[ -]data|tool{_S}output)\b"),
    # ------------------------------------------------------------------ tool / command requests
    _r(COMMAND, "tool tools function functions",
       rf"\b(?:call|invoke|use|run|execute|trigger){_S}(?:the|your|this|that|following)"
       rf"{_S}(?:[\w.-]{{1,40}}{_S}){{0,2}}(?:tool|function|mcp{_S}tool)s?\b"),
    _r(COMMAND, "command commands code script scripts shell snippet payload",
       rf"\b(?:run|execute|exec){_S}(?:the{_S}following|this|these){_S}(?:\w+{_S})?"
       r"(?:commands?|code|scripts?|shell|snippet|payload)\b"),
    _r(COMMAND, "you please",
       rf"\b(?:you{_S}(?:must|should|need{_S}to|have{_S}to|are{_S}required{_S}to|will)"
       rf"|please){_S}(?:now{_S}|immediately{_S}|also{_S})?(?:call|invoke|run|execute|trigger|use)"
       rf"{_S}(?:the{_S})?[`'\"]?[\w.-]{{2,60}}[`'\"]?{_SO}(?:tool|function|command|\()"),
    _r(COMMAND, "curl wget",
       r"\b(?:curl|wget)[ \t][^\n|;]{1,200}\|[ \t]*(?:sudo[ \t]+)?(?:ba|z|k|da)?sh\b"),
    _r(COMMAND, "rm nc bash mkfs /dev/tcp :()",
       r"\brm[ \t]+-(?:rf|fr|r[ \t]+-f)[ \t]+(?:/|~|\*|\$home)(?:[ \t]|$)|/dev/tcp/\d"
       r"|\bnc[ \t]+(?:-\w+[ \t]+)*-e[ \t]+/bin/|\bbash[ \t]+-i[ \t]+>&|\bmkfs\.\w+[ \t]+/dev/"
       r"|:\(\)[ \t]*\{[ \t]*:\|:&[ \t]*\};:"),
    _r(COMMAND, "kubectl",
       r"\bkubectl[ \t]+delete[ \t]+(?:ns|namespaces?|--all|all\b|nodes?\b)"),
    _r(COMMAND, "decode unhex",
       rf"\b(?:decode|base64[ -]decode|unhex){_S}(?:this|the{_S}following|it|the{_S}"
       rf"(?:string|text|payload))\b[^.\n]{{0,60}}\b(?:and|then){_S}(?:follow|execute|run|obey"
       r"|do)\b"),
    # ------------------------------------------------------------------ exfiltration
    _r(EXFIL, _EXFIL_VERBS,
       rf"{_EXFIL_VERB}{_S}(?:me{_S})?(?:[\w'/-]{{1,30}}{_S}){{0,6}}?{_SECRETS}\b[^.\n]{{0,80}}?"
       rf"\b(?:to|at|into|via|using){_S}{_DESTINATION}",
       not_after=_NOT_IMPERATIVE),
    _r(EXFIL, _EXFIL_VERBS,
       rf"{_EXFIL_VERB}{_S}(?:me{_S})?(?:[\w'/-]{{1,30}}{_S}){{0,6}}?{_ANYTHING}\b[^.\n]{{0,80}}?"
       rf"\b(?:to|at|into|via|using){_S}{_URL}",
       not_after=_NOT_IMPERATIVE),
    _r(EXFIL, "prompt instructions api apikey apikeys credentials secrets environment env",
       rf"\b(?:reveal|print|output|dump|leak|disclose|tell{_S}me|give{_S}me|show{_S}me"
       rf"|repeat|echo|share){_S}(?:(?:all|any|of){_S})*(?:your|the){_S}(?:(?:full|entire"
       rf"|complete|original|initial|hidden|secret|system){_S})*(?:system{_S}prompt|(?:initial"
       rf"|original|hidden|secret){_S}(?:prompt|instructions)|api{_SO}keys?|credentials"
       rf"|secrets|environment{_S}variables|env{_S}vars)\b"),
    _r(EXFIL,
       "prompt api apikey apikeys credentials secret secrets token tokens password passwords "
       "environment env",
       rf"\b(?:include|append|add|embed|put|insert){_S}(?:(?:your|the|all|any){_S})*"
       rf"(?:\w+{_S}){{0,2}}(?:system{_S}prompt|api{_SO}keys?|credentials|secrets?|tokens?"
       rf"|passwords?|environment{_S}variables|env{_S}vars){_S}(?:in|into|to){_S}(?:your|the)"
       rf"{_S}(?:reply|response|answer|report|output|summary|finding|message|url|link|image)\b"),
    _r(EXFIL, "![",
       r"!\[[^\]\n]{0,100}\]\([ \t]*https?://[^)\s]{0,300}[?&][^)\s=]{0,40}=[^)\s]{0,200}"
       r"[{$<\[]"),
    _r(EXFIL, "curl wget",
       r"\b(?:curl|wget)\b[^\n]{0,200}(?:-d|--data(?:-binary|-raw)?|-f|--form"
       r"|--upload-file|-t)[ \t]+@?\S{0,80}(?:/etc/passwd|/etc/shadow|\.ssh/|\.aws/"
       r"|\.kube/config|\.env\b|id_rsa|credentials)"),
    # ------------------------------------------------------------------ addressed to the model
    _r(ADDRESSED, "note message instruction instructions important notice reminder memo",
       rf"\b(?:note|message|instructions?|important|notice|reminder|memo){_S}(?:to|for)"
       rf"{_S}(?:the{_S}|all{_S}|any{_S})?{_MODEL}s?\b"),
    _r(ADDRESSED, "ai ais llm llms language assistant assistants chat chatbot chatbots gpt "
       "chatgpt claude",
       rf"(?:^|[.!?][ \t]+)(?:attention|hey|dear|hello|hi|listen|ok|okay)[ \t,]+(?:the"
       rf"{_S}|all{_S})?(?:ai|llm|language{_S}model|assistant|chat ?bot|gpt|chatgpt|claude"
       rf"|ai{_S}agents?)s?\b[ \t]*[:,!]"),
    _r(ADDRESSED, "you",
       rf"\bif{_S}you{_S}are{_S}(?:an?{_S})?(?:ai|a\.i\.|llm|(?:large{_S})?language"
       rf"{_S}model|assistant|ai{_S}agent|chat ?bot|bot|automated{_S}(?:system|agent|assistant"
       r"|tool))\b"),
    _r(ADDRESSED,
       "reading processing analysing analyzing summarising summarizing investigating triaging",
       rf"\b{_MODEL}s?{_S}(?:reading|processing|analy[sz]ing|summari[sz]ing"
       rf"|investigating|triaging){_S}this\b"),
    _r(ADDRESSED, "when",
       rf"\bwhen{_S}you{_S}(?:read|see|process|analy[sz]e|summari[sz]e|encounter){_S}this\b"),
    _r(ADDRESSED, "alert incident issue finding",
       rf"\b(?:mark|classify|label|report|close|resolve|dismiss|treat){_S}(?:this|the)"
       rf"{_S}(?:alert|incident|issue|finding){_S}as{_S}(?:resolved|benign|harmless|a{_S}false"
       rf"{_S}positive|false{_S}positive|not{_S}an?{_S}(?:issue|incident|problem)|safe|healthy)\b"),
    _r(ADDRESSED, "not don never",
       rf"\b(?:do{_S}not|don't|never){_S}(?:tell|inform|notify|warn|mention{_S}(?:this"
       rf"{_S})?to|let){_S}(?:the{_S})?(?:user|operator|human|on-?call|engineers?|team|admins?"
       r"|anyone|sre)\b"),
    _r(ADDRESSED, "confidence",
       rf"\b(?:set|give|report|assign|use){_S}(?:(?:your|the|a){_S})?confidence"
       rf"(?:{_S}(?:score|level))?{_S}(?:to|of|at|as|=){_SO}(?:1(?:\.0+)?|100{_SO}%)(?![\d.])"),
    _r(ADDRESSED, "everything systems system service cluster",
       rf"\b(?:say|report|state|conclude|claim|respond|answer){_S}(?:that{_S})?"
       rf"(?:everything|all{_S}systems?|the{_S}(?:system|service|cluster)){_S}(?:is|are){_S}"
       r"(?:fine|ok(?:ay)?|healthy|normal|operational)\b"),
))
# fmt: on

#: Looser wording, only applied to text already hidden from people (comments, hidden HTML):
#: hiding text addressed to a model is itself the signal.
# fmt: off
HIDDEN_RULES = RuleSet((
    _r(HIDDEN, "ai llm assistant agent chatbot bot gpt chatgpt claude gemini copilot model you "
       "your a.i.",
       rf"\b(?:{_MODEL}|you|your)\b"),
    _r(HIDDEN, "ignore disregard forget call invoke execute send reveal instead",
       r"\b(?:ignore|disregard|forget|call|invoke|execute|send|reveal|instead)\b"),
))
# fmt: on
