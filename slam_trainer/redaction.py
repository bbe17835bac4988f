"""Secrets kept out of every text the package shows or stores: keys, tokens, passwords, signed URLs.

`redact` is applied to whatever came from elsewhere (a server's reply, a URL, a command line) before it reaches a
message, a log or a file. It removes a known secret, anything shaped like a key, `name=value` pairs whose name says
secret, and the query string and user:password of every URL. `looks_like_key` tells a value typed where a name was
expected (`--api_key_env sk-...`) so that an error can say what was wrong without repeating it.
"""

from __future__ import annotations

import json
import re
import urllib.parse


__all__ = ["REDACTED", "carries_credentials", "looks_like_key", "redact", "shown_url"]

REDACTED = "[redacted]"
_TOKEN = re.compile(
    r"(?<![A-Za-z0-9])(?:sk|pk|rk|hf|gsk|r8|ghp|gho|ghs|ghu|github_pat|glpat|xox[abp])[-_]([A-Za-z0-9_\-]{8,})"
    r"|\bAIza([A-Za-z0-9_\-]{20,})|\bAKIA([A-Z0-9]{12,})"
)
_BEARER = re.compile(r"(?i)\b((?:bearer|basic)\s+)[^\s\"',;}]+")
_SECRET_NAMES = r"[a-z_\-]*(?:key|token|secret|password|passwd|sig|signature|credentials?|auth)"
_ASSIGNED = re.compile(rf"(?i)(?<![A-Za-z0-9])({_SECRET_NAMES})([\"']?\s*[:=]\s*[\"']?)[^\s\"',;}}&]+")
_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.\-]*:[/\\]+[^\s\"'<>]+")
_USERINFO = re.compile(r"(?<![^\s\"'(<])[^\s:/@\"']+:[^\s@/\"']+@(?=[A-Za-z0-9\[])")  # user:password@host, no scheme
_SCHEME = re.compile(r"(?i)^[a-z][a-z0-9+.\-]*:[/\\]*")


def _random_looking(match: re.Match) -> bool:
    """A key-prefixed word whose body is random-looking (digits, mixed case, or long), so that names such as
    `hf-internal-testing` (a Hub organisation) stay readable."""
    body = next(group for group in match.groups() if group is not None)
    return any(c.isdigit() for c in body) or (body.lower() != body and body.upper() != body) or len(body) >= 32


def shown_url(url: str) -> str:
    """`url` as it may be shown: without its query string, fragment and anything before an `@` (user:password).

    Works on malformed URLs too (`http:/user:pw@host`, no scheme, backslashes), where a parser finds no user.
    """
    cut = min((index for index in (url.find("?"), url.find("#")) if index >= 0), default=len(url))
    head, tail = url[:cut], url[cut:]
    scheme = _SCHEME.match(head)
    prefix = scheme.group(0) if scheme and scheme.group(0).lower().startswith("http") else ""
    rest = head[len(prefix) :]
    if "@" in rest:
        rest = REDACTED + "@" + rest.rpartition("@")[2]
    return prefix + rest + ("?" + REDACTED if tail.strip("?#") else "")


def carries_credentials(url: str) -> bool:
    """Whether `url`, well-formed or not, may hold a user or password: an `@` before any `?` or `#`."""
    cut = min((index for index in (url.find("?"), url.find("#")) if index >= 0), default=len(url))
    return "@" in url[:cut]


def redact(text: str, secret: str | None = None) -> str:
    """`text` without `secret` (also URL- or JSON-escaped), anything shaped like a key (`sk-...`, `Bearer ...`,
    `api_key=...`, `sig=...`) and the query strings and user:password of the URLs in it."""
    if secret:
        for form in {secret, urllib.parse.quote(secret, safe=""), json.dumps(secret)[1:-1]}:
            text = text.replace(form, REDACTED)
    text = _URL.sub(lambda match: shown_url(match.group(0)), text)
    text = _USERINFO.sub(REDACTED + "@", text)
    text = _TOKEN.sub(lambda match: REDACTED if _random_looking(match) else match.group(0), text)
    text = _BEARER.sub(lambda match: match.group(1) + REDACTED, text)
    return _ASSIGNED.sub(lambda match: match.group(1) + match.group(2) + REDACTED, text)


def looks_like_key(value: str) -> bool:
    """Whether `value` may be a key: shaped like a known one, or a long run of letters and digits (ours: at least 20
    characters of `[A-Za-z0-9_-]` with digits and mixed case, or at least 32 with digits and letters, as random keys
    are; model names and paths hold `/` or `.` or are lowercase words)."""
    if any(map(_random_looking, _TOKEN.finditer(value))) or _BEARER.search(value) or _ASSIGNED.search(value):
        return True
    word = re.fullmatch(r"[A-Za-z0-9_\-]{20,}", value) is not None
    digits, lower, upper = (any(test(c) for c in value) for test in (str.isdigit, str.islower, str.isupper))
    return word and digits and (lower or upper) and ((lower and upper) or len(value) >= 32)
