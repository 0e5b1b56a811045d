"""The base URL: checked once before any connection, and joined with endpoint paths.

A base URL may carry a query string (Azure-style `?api-version=…`); every request keeps it, so
paths go before the query rather than being appended to the whole string.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from voicecli.errors import ConfigError, UsageError

WHERE = "--base-url, OPENAI_BASE_URL or the profile's connection.base_url"


def check_base_url(url: str) -> None:
    """A usage error, with a hint, for a base URL no transport can use (before any retry)."""
    shown = _masked(url)
    if not url or any(c.isspace() or ord(c) < 32 for c in url):
        raise UsageError(f"base URL '{shown}' is empty or contains spaces or control characters", hint=f"check {WHERE}")
    if "://" not in url:
        scheme = "http" if _is_local(_split("//" + url, shown).hostname) else "https"
        raise UsageError(f"base URL '{shown}' has no scheme",
                         hint=f"did you mean {_masked(f'{scheme}://{url}')}? (set in {WHERE})")
    parts = _split(url, shown)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        rest = shown.split("://", 1)[1]
        guess = {"ws": "http", "wss": "https"}.get(scheme) or ("http" if _is_local(parts.hostname) else "https")
        raise UsageError(f"base URL '{shown}' has an unsupported scheme '{parts.scheme}' (use http or https)",
                         hint=f"did you mean {guess}://{rest}? voicecli derives WebSocket URLs from the HTTP one")
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        raise UsageError(f"base URL '{shown}' has an invalid port", hint=f"check {WHERE}") from None
    if not parts.hostname:
        raise UsageError(f"base URL '{shown}' has no host", hint="e.g. https://api.openai.com/v1")
    try:
        parts.hostname.encode("idna")  # how a non-ASCII name goes on the wire
    except UnicodeError:
        raise UsageError(f"base URL '{shown}' has an invalid host name", hint=f"check {WHERE}") from None


def _split(url: str, shown: str):
    try:
        return urlsplit(url)
    except ValueError as exc:  # an unclosed IPv6 bracket: 'http://[::1'
        raise UsageError(f"base URL '{shown}' is not a valid URL ({exc})", hint=f"check {WHERE}") from None


def endpoint_url(base_url: str, path: str, params: dict[str, str] | None = None, *, websocket: bool = False) -> str:
    """`path` joined onto the base URL's path; the base URL's query kept, `params` appended to it.

    endpoint_url("https://x/openai/v1?api-version=1", "/responses", websocket=True)
      == "wss://x/openai/v1/responses?api-version=1"
    """
    parts = urlsplit(base_url)
    scheme = parts.scheme
    if websocket:
        scheme = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme)
    query = parts.query
    if params:
        extra = urlencode(params, quote_via=quote, safe="")
        query = f"{query}&{extra}" if query else extra
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + path, query, ""))


def lacks_v1(base_url: str) -> bool:
    """True when no segment of the base URL's path is `v1` (most OpenAI-style roots end in /v1)."""
    return "v1" not in urlsplit(base_url).path.split("/")


def with_v1(base_url: str) -> str:
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/v1", parts.query, ""))


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1 or localhost: this machine itself."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_local(host: str | None) -> bool:
    """Loopback or private address: a local server, which usually speaks plain http."""
    if not host:
        return False
    if host == "localhost" or host.endswith((".localhost", ".local")):
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_private
    except ValueError:
        return False


def _masked(url: str) -> str:
    """The URL with any password replaced, for messages (one without a scheme too)."""
    from voicecli.sanitize import mask_url_password

    if "://" in url:
        return mask_url_password(url)
    return mask_url_password("x://" + url)[len("x://"):]


def refuse_socks_for_websocket(url: str) -> None:
    """A configuration error naming the variable when the environment would send a WebSocket to `url`
    through a SOCKS proxy: websockets needs python-socks for that, which voicecli does not install.
    The variables are looked up as websockets does (ws/wss_proxy, socks_proxy, https_proxy, then
    http_proxy; lower case first, as urllib), then all_proxy, which websockets would silently ignore."""
    import os

    if not any(k.lower().endswith("_proxy") and v for k, v in os.environ.items()):
        return
    parts = urlsplit(url)
    secure = parts.scheme.lower() == "wss"
    import urllib.request

    if urllib.request.proxy_bypass(f"{parts.hostname}:{parts.port or (443 if secure else 80)}"):
        return
    for scheme in (["wss", "socks", "https"] if secure else ["ws", "socks", "https", "http"]) + ["all"]:
        for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY"):
            value = os.environ.get(name)
            if not value:
                continue
            kind = value.split("://", 1)[0].lower() if "://" in value else ""
            if scheme == "socks" or kind.startswith("socks"):
                raise ConfigError(f"{name} names a SOCKS proxy ({kind or 'socks'}://…), which WebSocket "
                                  "connections (-t ws, talk) cannot use",
                                  hint="unset it for voicecli, or use an HTTP proxy (http://host:port)"
                                       + ("" if scheme == "socks" else f" in {name}"))
            if scheme != "all":
                return  # the first proxy websockets finds is an HTTP one: it is used
