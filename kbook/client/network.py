"""The way to the venue: TLS contexts, proxies, request headers, and failed handshakes in words.

Both the WebSocket connections (:mod:`kbook.client.connection`) and the REST token request
(:mod:`kbook.trading.auth`) take their TLS context, proxy and ``User-Agent`` from here, so the
two paths to Kraken follow one set of rules.

Proxy precedence, highest first:

1. an explicit ``proxy=`` (``Client``, ``TokenProvider``) or ``--proxy URL``; an empty string
   means "no proxy", whatever the environment says;
2. the environment, as curl and Python's ``urllib`` read it: ``HTTPS_PROXY`` for ``wss://`` and
   ``https://``, ``HTTP_PROXY`` for ``ws://`` and ``http://``, then ``ALL_PROXY``; the
   lower-case names win over the upper-case ones; a host matched by ``NO_PROXY`` goes direct;
3. otherwise a direct connection.

What it is not: a proxy or TLS implementation. picows tunnels through the proxy (HTTP
``CONNECT``, or SOCKS) and httpx does the same for REST; this module only decides what to ask
them for.
"""

from __future__ import annotations

import socket
import ssl
import urllib.parse
import urllib.request
from collections.abc import Mapping

from kbook._version import __version__
from kbook.errors import ConnectFailed, HandshakeRefused, TLSFailed

__all__ = [
    "BODY_EXCERPT",
    "DEFAULT_USER_AGENT",
    "connect_error",
    "proxy_for",
    "request_headers",
    "retry_after_seconds",
    "tls_context",
]

#: The ``User-Agent`` of every WebSocket upgrade and REST request unless overridden: CDNs in
#: front of exchanges commonly refuse requests without one.
DEFAULT_USER_AGENT = f"kbook/{__version__}"
#: Characters of a refused upgrade's body kept in :class:`HandshakeRefused` (an HTML page).
BODY_EXCERPT = 200


def proxy_for(url: str, proxy: str | None = None) -> str | None:
    """The proxy URL to reach ``url`` through, or None for a direct connection.

    :param url: the endpoint (``wss://``, ``ws://``, ``https://`` or ``http://``)
    :param proxy: an explicit proxy URL (wins over the environment); ``""`` forces a direct
        connection; None reads the environment (see the module docstring for the order)

    >>> proxy_for("wss://ws.kraken.com/v2", "http://127.0.0.1:3128")
    'http://127.0.0.1:3128'
    >>> proxy_for("wss://ws.kraken.com/v2", "") is None
    True
    """
    if proxy is not None:
        return proxy or None
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    environment = urllib.request.getproxies_environment()
    secure = parts.scheme in ("wss", "https")
    chosen = environment.get("https" if secure else "http") or environment.get("all")
    if not chosen:
        return None
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # not in typeshed
    if host and bypass(host, environment):
        return None
    return chosen


def tls_context(cafile: str | None = None, *, insecure: bool = False) -> ssl.SSLContext:
    """A client TLS context: the system's trust store, plus ``cafile``'s certificates.

    Certificates and the host name are verified unless ``insecure``, which turns both off
    (the CLI's ``--insecure``; the caller warns about it).

    :param cafile: a PEM file of extra certificate authorities to trust (a corporate or test CA)
    :param insecure: no verification at all
    """
    context = ssl.create_default_context()
    if cafile is not None:
        context.load_verify_locations(cafile=cafile)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def request_headers(user_agent: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    """The headers of an upgrade or REST request: ``User-Agent`` first, then ``extra``.

    An empty ``user_agent`` sends none (unless ``extra`` has one); None sends
    :data:`DEFAULT_USER_AGENT`.
    """
    headers: dict[str, str] = {}
    agent = DEFAULT_USER_AGENT if user_agent is None else user_agent
    if agent:
        headers["User-Agent"] = agent
    for name, value in (extra or {}).items():
        for existing in [k for k in headers if k.lower() == name.lower()]:
            del headers[existing]
        headers[name] = value
    return headers


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` in seconds (delta seconds, or an HTTP date from now); None if absent.

    >>> retry_after_seconds("7")
    7.0
    >>> retry_after_seconds("soon") is None
    True
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    import email.utils
    import time

    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _excerpt(body: bytes | None) -> str:
    """The start of a body as one line of text: HTML pages from CDNs are long."""
    if not body:
        return ""
    text = " ".join(body[: 4 * BODY_EXCERPT].decode("utf-8", "replace").split())
    return text if len(text) <= BODY_EXCERPT else text[: BODY_EXCERPT - 1] + "…"


def connect_error(url: str, exc: BaseException) -> ConnectFailed | None:
    """The typed error for a failed connect, or None when ``exc`` is no handshake failure.

    A refused upgrade becomes :class:`HandshakeRefused` (permanent for a 4xx other than 408 and
    429: the same request gets the same answer); a TLS failure :class:`TLSFailed` (permanent
    when the certificate or host name does not verify); an unknown host a permanent
    :class:`ConnectFailed`.
    """
    host = urllib.parse.urlsplit(url).hostname or url
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TLSFailed(
            url, host, f"certificate verification failed: {exc.verify_message}", permanent=True
        )
    if isinstance(exc, ssl.CertificateError):
        return TLSFailed(url, host, f"host name mismatch: {exc}", permanent=True)
    if isinstance(exc, ssl.SSLError):
        return TLSFailed(url, host, str(exc.reason or exc), permanent=False)
    if isinstance(exc, socket.gaierror):
        return ConnectFailed(url, f"host name lookup failed: {exc.strerror or exc}", permanent=True)
    response = getattr(exc, "response", None)
    status = getattr(response, "status", None)
    if status is not None and int(status) >= 300:
        code = int(status)
        raw = getattr(response, "headers", None) or {}
        headers = {str(k).lower(): str(v) for k, v in raw.items()}
        body = getattr(exc, "raw_body", None) or getattr(response, "body", None)
        return HandshakeRefused(
            url,
            code,
            headers,
            _excerpt(body),
            retry_after_seconds(headers.get("retry-after")),
            permanent=400 <= code < 500 and code not in (408, 429),
        )
    return None
