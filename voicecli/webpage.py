"""`-f URL` and chat's `/file URL`: fetch a web page or text file as text for the prompt.

http and https only; at most `ui.max_input_mib` (the Content-Length is checked first, the body is
read no further than one byte over); the profile's connect and read timeouts; at most
`MAX_REDIRECTS` redirects. Text, JSON, XML and Markdown are taken as they are; HTML becomes
readable text with the standard library's parser (no new dependency); images are recognised by
their first bytes, whatever the server calls them. No API key or profile header is ever sent.

Errors: a network failure (DNS, connection, TLS, timeout, too many redirects, a 5xx) exits 6; a
URL that is not http(s), a 4xx, a body over the limit or that is not text exits 2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

from voicecli import __version__
from voicecli.errors import ExitCode, UsageError, VoicecliError

MAX_REDIRECTS = 5
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
TEXT_TYPES = ("application/json", "application/xml", "application/xhtml+xml", "application/x-yaml",
              "application/yaml", "application/toml", "application/javascript", "application/x-ndjson")
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(spec: str) -> bool:
    """`-f` values that are URLs (any scheme, so `ftp://…` is refused rather than read as a file)."""
    return bool(URL_SCHEME.match(spec))


_PROGRESS_BYTES = 16384  # a page trickling less than this within read_timeout counts as silent


@dataclass
class Page:
    url: str  # after redirects
    data: bytes  # the body, at most one byte over the limit
    content_type: str  # "text/html", "" when the server gave none
    charset: str | None


def fetch(url: str, *, limit_mib: float, connect_timeout: float, read_timeout: float, what: str) -> Page:
    """GET `url`; `what` names it in errors (e.g. "cannot attach https://…")."""
    if not url.lower().startswith(("http://", "https://")):
        raise UsageError(f"{what}: only http:// and https:// URLs can be fetched")
    import asyncio

    from voicecli.transport.client import Client, InvalidURL, Timeout, TransportError

    client = Client(connect_timeout=connect_timeout, read_timeout=read_timeout)
    try:
        return asyncio.run(_fetch(client, url, int(limit_mib * 1024 * 1024), limit_mib, what))
    except Timeout as exc:
        which = "connect_timeout" if exc.phase == "connect" else "read_timeout"  # write, reply, read
        seconds = connect_timeout if which == "connect_timeout" else read_timeout
        raise _network(what, f"timed out after {seconds:g} s (connection.{which})") from None
    except InvalidURL as exc:
        raise UsageError(f"{what}: not a valid URL ({exc})") from None
    except TransportError as exc:
        raise _network(what, str(exc)) from None


async def _fetch(client, url: str, limit_bytes: int, limit_mib: float, what: str) -> Page:
    from urllib.parse import urljoin

    headers = {"User-Agent": f"voicecli/{__version__}", "Accept": "text/*, application/json, application/xml, */*;q=0.5"}
    try:
        for _ in range(MAX_REDIRECTS + 1):
            async with client.stream("GET", url, headers=headers) as response:
                location = response.headers.get("location")
                if response.status_code in REDIRECT_STATUSES and location:
                    url = urljoin(url, location)
                    if not url.lower().startswith(("http://", "https://")):
                        raise UsageError(f"{what}: redirected to {url.split(':')[0]}:, not http(s)")
                    continue
                _check_status(response, what)
                size = response.headers.get("content-length", "")
                if size.isdigit() and int(size) > limit_bytes:
                    raise _too_big(what, limit_mib)
                body = bytearray()
                async for chunk in response.aiter_bytes(limit=limit_bytes + (1 << 20), progress_bytes=_PROGRESS_BYTES):
                    body += chunk
                    if len(body) > limit_bytes:
                        break  # one byte over tells "over the limit" from "at it"
                kind, _, params = response.headers.get("content-type", "").partition(";")
                charset = re.search(r"charset=\"?([\w.:-]+)", params, re.I)
                return Page(url, bytes(body[:limit_bytes + 1]), kind.strip().lower(),
                            charset.group(1) if charset else None)
        raise _network(what, f"more than {MAX_REDIRECTS} redirects")
    finally:
        await client.aclose()


def _check_status(response, what: str) -> None:
    code = response.status_code
    if code < 400:
        return
    phrase = response.reason_phrase or ""
    message = f"{what}: the server answered {code} {phrase}".rstrip()
    if code >= 500:
        raise VoicecliError(message, exit_code=ExitCode.NETWORK, hint="try again later")
    raise UsageError(message)


def _too_big(what: str, limit_mib: float) -> UsageError:
    return UsageError(f"{what}: it is over the {limit_mib:g} MiB input limit (ui.max_input_mib)",
                      hint="raise the limit: -o ui.max_input_mib=N, or max_input_mib in the profile's [ui] table")


def _network(what: str, reason: str) -> VoicecliError:
    return VoicecliError(f"{what}: {reason}", exit_code=ExitCode.NETWORK)


def is_text_type(content_type: str) -> bool:
    """Content types taken as text; "" (none given) is decided by the bytes."""
    return (not content_type or content_type.startswith("text/") or content_type in TEXT_TYPES
            or content_type.endswith(("+json", "+xml")))


def is_html(page: Page) -> bool:
    if page.content_type in ("text/html", "application/xhtml+xml"):
        return True
    head = page.data[:512].lstrip().lower()
    return not page.content_type and head.startswith((b"<!doctype html", b"<html"))


# ---- HTML → readable text ------------------------------------------------------------------

SKIP = {"script", "style", "noscript", "template", "svg", "canvas", "iframe", "object", "head", "nav", "form", "button"}
BLOCK = {"p", "div", "section", "article", "main", "header", "footer", "aside", "blockquote", "figure", "figcaption",
         "table", "tr", "ul", "ol", "dl", "dt", "dd", "hr", "br", "address", "details", "summary", "body", "html"}
HEADINGS = {"h1": "# ", "h2": "## ", "h3": "### ", "h4": "#### ", "h5": "##### ", "h6": "###### "}


class _Text(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0  # depth inside elements whose text is not content
        self.pre = 0
        self.title: list[str] = []
        self.in_title = False

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self.in_title = True
        if tag in SKIP:
            self.skip += 1
        elif tag in HEADINGS:
            self.out.append("\n\n" + HEADINGS[tag])
        elif tag == "li":
            self.out.append("\n- ")
        elif tag == "pre":
            self.pre += 1
            self.out.append("\n\n```\n")
        elif tag in ("td", "th"):
            self.out.append(" | ")
        elif tag in BLOCK:
            self.out.append("\n" if tag in ("br", "tr") else "\n\n")

    def handle_startendtag(self, tag, attrs):
        if tag in ("br", "hr"):
            self.out.append("\n")

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False
        if tag in SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
            self.out.append("\n```\n\n")
        elif tag == "tr":
            self.out.append("\n")
        elif tag in HEADINGS or tag in BLOCK:
            self.out.append("\n\n")

    def handle_data(self, data):
        if self.in_title:
            self.title.append(data)
        if self.skip:
            return
        self.out.append(data if self.pre else re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """The readable text of a page: title, headings (#), paragraphs, list items (-), code blocks;
    scripts, styles, navigation and forms left out."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    lines, code = [], False
    for line in "".join(parser.out).split("\n"):
        if line.strip() == "```":
            code = not code
        lines.append(line.rstrip() if code else line.strip())  # code keeps its indentation
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    title = re.sub(r"\s+", " ", "".join(parser.title)).strip()
    if title and not text.startswith(f"# {title}"):
        text = f"# {title}\n\n{text}" if text else f"# {title}"
    return text
