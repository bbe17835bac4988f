"""One OpenAI-compatible chat-completions endpoint, called with the standard library, that keeps its key secret.

The key (a bearer token) goes to the configured address only:

- no proxy from the environment (`http_proxy`, `https_proxy`, ...): urllib would send the request, `Authorization`
  header included, to whatever such a variable names, in clear for an `http://` address. A proxy is used only when
  given as `proxy`, and an `http://` address (whose request the proxy reads in clear) only through a loopback proxy;
- redirects are never followed: urllib would re-send the `Authorization` header to wherever a 3xx points (another
  port, another host); a redirect stops the run with the address to configure instead;
- plain `http://` is refused for a host that is not loopback unless `allow_insecure_http=True`;
- every text shown or stored (server bodies, which may echo the key, included) passes through `redact`, which
  removes the key and anything shaped like a key, and shows every URL without its user:password and query string
  (`shown_url`); a URL carrying credentials, well-formed or not, is refused without being shown; `repr(Endpoint)`
  leaves the key out.

Retries (ours): 429 and 5xx and connection errors and timeouts are retried with exponential backoff and jitter,
honouring `Retry-After`; 401, 403 and 404 mean every request would fail the same way (a bad key, a wrong URL or model
name), so they raise `FatalEndpointError`, which stops a whole annotation run at the first one. Other 4xx fail the
one request.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import math
import random
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from functools import lru_cache

from slam_trainer.errors import ConfigError
from slam_trainer.redaction import carries_credentials, redact, shown_url


RETRY_STATUS = (429, 500, 502, 503, 504)
FATAL_STATUS = (401, 403, 404)
DEFAULT_TIMEOUT = 60.0  # ours: long enough for a long chain of thought, short enough that a dead server shows soon
_MAX_ERROR_BODY = 200  # characters of a server's error body kept in a failure reason (after redaction)


class EndpointError(Exception):
    """A request that failed for good; the message is safe to show (redacted)."""


class FatalEndpointError(EndpointError):
    """A failure every request would share (bad key, redirect, wrong URL or model): the run stops at the first."""


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine: plain HTTP (and a key sent over it) is only allowed there."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_url(name: str, url) -> urllib.parse.SplitResult:
    """The parts of an http(s) URL without credentials; refused (never shown whole) otherwise."""
    if not isinstance(url, str):
        raise ConfigError(f"`{name}` must be a string, got {type(url).__name__}.")
    if carries_credentials(url):  # the URL itself is secret, well-formed or not: not shown
        raise ConfigError(
            f"`{name}` carries credentials (user:password@host); remove them and pass the key as `api_key` "
            "(on the command line: in the environment variable named by --api_key_env)."
        )
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or "\\" in url or not url.isprintable():
        raise ConfigError(f"`{name}` must be an http(s) URL such as http://localhost:8000/v1, got {shown_url(url)!r}.")
    return parts


@dataclass
class Endpoint:
    """An OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, SGLang, TGI).

    Parameters:
        base_url (`str`):
            E.g. `https://api.openai.com/v1` or `http://localhost:8000/v1`; `/chat/completions` is appended. Plain
            `http://` is accepted for loopback hosts only, unless `allow_insecure_http`.
        model (`str`):
            The model name the server expects.
        api_key (`str`, *optional*):
            Sent as a bearer token to `base_url` and nowhere else; never shown by `repr`, in errors or in files.
        temperature (`float`, *optional*, defaults to `0.0`):
            Sampling temperature of each request, 0 to 2 (the OpenAI API's range).
        timeout (`float`, *optional*, defaults to `60.0`):
            Seconds to wait for one answer; a request that times out is retried like a 5xx (ours).
        allow_insecure_http (`bool`, *optional*, defaults to `False`):
            Allow plain `http://` to a host that is not loopback, where the key and the data cross the network
            unencrypted (e.g. a vLLM server on a trusted private network).
        proxy (`str`, *optional*):
            An `http://host:port` proxy to send the requests through. Proxy environment variables are ignored (ours:
            they would silently reroute the key); give one here to use it. An `https://` base URL reaches its host
            through the proxy in an encrypted tunnel; an `http://` one is read by the proxy in clear, so it is
            allowed through a loopback proxy only.
    """

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    temperature: float = 0.0
    timeout: float = DEFAULT_TIMEOUT
    allow_insecure_http: bool = False
    proxy: str | None = None

    def __post_init__(self):
        parts = _check_url("base_url", self.base_url)
        if parts.scheme == "http" and not is_loopback(parts.hostname) and not self.allow_insecure_http:
            raise ConfigError(
                f"`base_url` {shown_url(self.base_url)!r} is plain http to {parts.hostname}, which is not a loopback "
                "address: the key and the data would cross the network unencrypted. Use https, or allow it "
                "explicitly with `allow_insecure_http=True` (--allow_insecure_http) on a network you trust."
            )
        if self.proxy is not None:
            self._check_proxy(parts)
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"`model` must be the model name the endpoint serves, got {self.model!r}.")
        self._check_key()
        if not _is_number(self.temperature) or not 0 <= self.temperature <= 2:
            raise ConfigError(f"`temperature` must be a number from 0 to 2, got {self.temperature!r}.")
        if not _is_number(self.timeout) or self.timeout <= 0:
            raise ConfigError(f"`timeout` must be a positive number of seconds, got {self.timeout!r}.")

    def _check_proxy(self, target: urllib.parse.SplitResult) -> None:
        proxy = _check_url("proxy", self.proxy)
        if proxy.scheme != "http":
            raise ConfigError(
                f"`proxy` must be an http://host:port address (urllib's), got {shown_url(self.proxy)!r}."
            )
        if target.scheme == "http" and not is_loopback(proxy.hostname):
            raise ConfigError(
                f"`proxy` {shown_url(self.proxy)!r} is not a loopback address, and the base URL is plain http: the "
                "proxy would read the key in clear. Use an https base URL through it, or no proxy."
            )

    def _check_key(self) -> None:
        if self.api_key is not None and not isinstance(self.api_key, str):
            raise ConfigError(f"`api_key` must be a string or None, got {type(self.api_key).__name__}.")
        self.api_key = self.api_key or None
        if self.api_key is None:
            return
        if any(c.isspace() or not c.isprintable() for c in self.api_key):
            raise ConfigError("`api_key` contains whitespace or control characters; check where it came from.")
        if not self.api_key.isascii():
            raise ConfigError(
                "`api_key` contains non-ASCII characters, which an HTTP header cannot carry (a quote or dash copied "
                "with it?); check where it came from."
            )

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Follow no redirect: the 3xx reaches the caller as an `HTTPError` instead of re-sending the key elsewhere."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


@lru_cache(maxsize=8)
def _opener(proxy: str | None) -> urllib.request.OpenerDirector:
    """An opener that follows no redirect and uses `proxy` or none (never the environment's: an explicit, empty
    `ProxyHandler` replaces the default one, which reads `http_proxy` and friends)."""
    proxies = {"http": proxy, "https": proxy} if proxy else {}
    return urllib.request.build_opener(_RefuseRedirects, urllib.request.ProxyHandler(proxies))


def _content(raw: bytes, shown: str, secret: str | None):
    """The assistant `content` of a 200 reply; `EndpointError` (with a redacted excerpt) when it has none."""
    try:
        return json.loads(raw)["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError, ValueError):
        excerpt = redact(raw.decode(errors="replace"), secret)[:_MAX_ERROR_BODY]  # redact, then cut
        raise EndpointError(f"malformed chat-completions response from {shown}: {excerpt!r}") from None


def _sleep(seconds: float, stop: threading.Event | None) -> None:
    (stop or threading.Event()).wait(seconds)


def chat_completion(
    endpoint: Endpoint,
    messages: list[dict],
    *,
    max_retries: int = 6,
    backoff: float = 1.0,
    max_backoff: float = 60.0,
    stop: threading.Event | None = None,
):
    """The assistant `content` of one request (as the server sent it: a string, or None).

    Retries 429, 5xx, connection errors and timeouts up to `max_retries` times with exponential backoff and jitter
    (honouring `Retry-After`, capped at `max_backoff`); gives up early when `stop` is set. Raises `EndpointError`
    (`FatalEndpointError` for 401/403/404 and redirects), with the key redacted from the message.
    """
    body = json.dumps({"model": endpoint.model, "messages": messages, "temperature": endpoint.temperature}).encode()
    headers = {"Content-Type": "application/json"}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    url = endpoint.url
    shown = shown_url(url)
    reason = "no attempt made"
    for attempt in range(max_retries + 1):
        if stop is not None and stop.is_set():
            raise EndpointError("not sent: the run stopped at a fatal error")
        delay = min(max_backoff, backoff * 2**attempt) * (0.5 + random.random() / 2)
        try:
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            with _opener(endpoint.proxy).open(request, timeout=endpoint.timeout) as response:
                raw = response.read()
            return _content(raw, shown, endpoint.api_key)
        except urllib.error.HTTPError as error:
            try:
                raw = error.read(4096)
            except OSError:
                raw = b""
            detail = redact(raw.decode(errors="replace"), endpoint.api_key)[:_MAX_ERROR_BODY]  # redact, then cut
            if 300 <= error.code < 400:
                target = urllib.parse.urlsplit(urllib.parse.urljoin(url, error.headers.get("Location", "")))
                where = redact(shown_url(target.geturl()), endpoint.api_key)
                raise FatalEndpointError(
                    f"HTTP {error.code} from {shown} redirects to {where}: not followed, so that the key goes to "
                    "no other address. Set the base URL to the address that answers."
                ) from None
            if error.code in FATAL_STATUS:
                raise FatalEndpointError(
                    f"HTTP {error.code} from {shown}: {detail!r}. Stopped at the first such answer: every request "
                    "would get it (check the key, the base URL and the model name)."
                ) from None
            if error.code not in RETRY_STATUS:
                raise EndpointError(f"HTTP {error.code} from {shown}: {detail!r}") from None
            reason = f"HTTP {error.code}"
            retry_after = error.headers.get("Retry-After") if error.headers else None
            if retry_after and retry_after.replace(".", "", 1).isdigit():
                delay = min(max_backoff, float(retry_after))
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:  # incl. a reply cut short
            cause = getattr(error, "reason", error)
            if isinstance(cause, TimeoutError):
                reason = f"no answer within {endpoint.timeout:g} s"
            else:
                reason = f"connection error: {redact(str(cause), endpoint.api_key)}"
        if attempt < max_retries:
            _sleep(delay, stop)
    raise EndpointError(f"gave up after {max_retries + 1} attempts ({reason})")
