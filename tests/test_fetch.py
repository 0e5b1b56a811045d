"""`infer -f URL` and chat's `/file PATH|URL` against a local HTTP server (no internet): content
types, HTML made readable, size limit, redirects, timeouts, error exit codes, no secrets sent."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clihelp import run_cli

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
HTML = """<!doctype html><html><head><title>The Page Title</title><style>body { color: red }</style>
<script>var secret = "not content";</script></head>
<body><nav><a href="/">Home</a> | <a href="/about">About</a></nav>
<h1>Heading one</h1><p>First   paragraph with <b>bold</b> and <a href="/x">a link</a>.</p>
<ul><li>item alpha</li><li>item beta</li></ul>
<pre>def f():
    return 1</pre>
<p>Caf&eacute; &amp; cr&egrave;me</p></body></html>"""

ROUTES = {  # path → (status, content type, body, extra headers)
    "/page.html": (200, "text/html; charset=utf-8", HTML.encode(), {}),
    "/notes.txt": (200, "text/plain", b"plain notes here\n", {}),
    "/data.json": (200, "application/json", b'{"answer": 42}', {}),
    "/latin1.txt": (200, "text/plain; charset=iso-8859-1", "na\xefve caf\xe9".encode("latin-1"), {}),
    "/readme.md": (200, "text/markdown", b"# Title\n\nSome *markdown*.\n", {}),
    "/old.html": (200, "text/html", '<html><head><meta charset="windows-1252"></head><p>d\xe9j\xe0 vu</p>'
                  .encode("cp1252"), {}),
    "/untyped": (200, "", b"no content type but text\n", {}),
    "/image.bin": (200, "application/octet-stream", PNG, {}),
    "/doc.pdf": (200, "application/pdf", b"%PDF-1.7 binary", {}),
    "/big.txt": (200, "text/plain", b"x" * 5000, {}),
    "/moved": (302, "text/plain", b"", {"Location": "/notes.txt"}),
    "/loop": (302, "text/plain", b"", {"Location": "/loop"}),
    "/gone": (404, "text/plain", b"not here", {}),
    "/broken": (503, "text/plain", b"down", {}),
}


class Handler(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        Handler.seen.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
        if self.path == "/slow":
            time.sleep(3)
        if self.path == "/stream-big":  # no Content-Length: the limit is found while reading
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            for _ in range(20):
                self.wfile.write(b"y" * 1000)
            return
        status, kind, body, extra = ROUTES.get(self.path, (404, "text/plain", b"", {}))
        self.send_response(status)
        if kind:
            self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def web():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def home(tmp_path):
    (tmp_path / "profiles").mkdir()
    return tmp_path


def infer(home, sim, *args, **env):
    return run_cli(home, "infer", "-p", "offline", "--base-url", sim.base_url, *args, **env)


def sent_prompt(sim) -> str:
    """The text of the last user message the simulator received."""
    bodies = [e.get("body") or e.get("event") for e in sim.log]
    body = [b for b in bodies if isinstance(b, dict) and "input" in b][-1]
    content = body["input"][-1]["content"]
    return content if isinstance(content, str) else content[0]["text"]


def test_a_web_page_becomes_readable_text(home, sim, web):
    r = infer(home, sim, "-f", f"{web}/page.html", "summarise")
    assert r.code == 0, r.err
    prompt = sent_prompt(sim)
    assert prompt.startswith(f"Web page `{web}/page.html`:")
    assert "# The Page Title" in prompt and "# Heading one" in prompt
    assert "First paragraph with bold and a link." in prompt
    assert "- item alpha\n- item beta" in prompt
    assert "def f():\n    return 1" in prompt  # code keeps its indentation
    assert "Café & crème" in prompt
    for noise in ("color: red", "not content", "<b>", "Home", "About"):
        assert noise not in prompt
    assert prompt.endswith("summarise")


@pytest.mark.parametrize("path, expected", [("/notes.txt", "plain notes here"), ("/data.json", '{"answer": 42}'),
                                            ("/latin1.txt", "naïve café"), ("/readme.md", "Some *markdown*."),
                                            ("/untyped", "no content type but text"), ("/old.html", "déjà vu"), ("/moved", "plain notes here")])
def test_text_json_markdown_and_charsets(home, sim, web, path, expected):
    r = infer(home, sim, "-f", f"{web}{path}", "-f", f"{web}/notes.txt", "go")
    assert r.code == 0, r.err
    assert expected in sent_prompt(sim)


@pytest.mark.parametrize("path, code, message", [
    ("/doc.pdf", 2, "it is application/pdf, not text (it looks like a PDF document)"),
    ("/image.bin", 2, "as text: it is a PNG image"),
    ("/big.txt", 2, "over the 0.001 MiB input limit (ui.max_input_mib)"),
    ("/stream-big", 2, "over the 0.001 MiB input limit"),
    ("/gone", 2, "the server answered 404 Not Found"),
    ("/broken", 6, "the server answered 503 Service Unavailable"),
    ("/loop", 6, "more than 5 redirects"),
    ("/slow", 6, "timed out after 0.5 s (connection.read_timeout)"),
])
def test_errors_are_one_line_with_documented_exit_codes(home, sim, web, path, code, message):
    r = infer(home, sim, "-f", f"{web}{path}", "-o", "ui.max_input_mib=0.001", "-o", "connection.read_timeout=0.5", "go")
    assert r.code == code, r.err
    assert f"voicecli: cannot attach {web}{path}" in r.err and message in r.err, r.err
    assert "Traceback" not in r.err
    assert not [e for e in sim.log if isinstance(e.get("body"), dict) and "input" in e["body"]]  # nothing sent
    if path == "/image.bin":
        assert f"use --image {web}{path}" in r.err


def test_only_http_and_https_and_unreachable_hosts(home, sim, web):
    r = infer(home, sim, "-f", "ftp://example.invalid/x.txt", "go")
    assert r.code == 2 and "only http:// and https:// URLs" in r.err
    r = infer(home, sim, "-f", "http://127.0.0.1:9/nothing", "go")  # the discard port: refused
    assert r.code == 6 and "connection refused" in r.err, r.err


def test_no_key_or_profile_header_goes_to_the_page(home, sim, web):
    (home / "profiles" / "p.toml").write_text(
        'extends = "offline"\n[connection]\napi_key_env = "MY_KEY"\nheaders = { X-Secret = "shh" }\n')
    Handler.seen.clear()
    r = run_cli(home, "infer", "-p", "p", "--base-url", sim.base_url, "-f", f"{web}/notes.txt", "go", MY_KEY="sk-abc")
    assert r.code == 0, r.err
    headers = Handler.seen[-1]["headers"]
    assert "authorization" not in headers and "x-secret" not in headers
    assert headers["user-agent"].startswith("voicecli/")


def test_chat_file_attaches_files_images_and_pages_to_the_next_message(home, sim, web, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("local notes\n")
    image = tmp_path / "pic.png"
    image.write_bytes(PNG)
    lines = (f"/file {notes}\n/file {web}/page.html\n/file {image}\n/file\n/file {web}/gone\n"
             "what do these say\nand now without\n")
    r = run_cli(home, "chat", "-p", "offline", "--base-url", sim.base_url, input=lines)
    assert r.code == 0, r.err
    assert "attached File `notes.txt`" in r.err and f"attached Web page `{web}/page.html`" in r.err
    assert "attached PNG image" in r.err and "(image)" in r.err  # /file alone lists them
    assert f"voicecli: cannot attach {web}/gone: the server answered 404 Not Found" in r.err  # chat goes on
    bodies = [e["body"] for e in sim.log if isinstance(e.get("body"), dict) and "input" in e["body"]] or \
             [e["event"] for e in sim.log if isinstance(e.get("event"), dict) and "input" in e["event"]]
    first = json.dumps(bodies[0], ensure_ascii=False)
    assert "File `notes.txt`:" in first and "local notes" in first and "# Heading one" in first
    assert "what do these say" in first and "data:image/png;base64," in first
    last = json.dumps(bodies[-1]["input"][-1], ensure_ascii=False)
    assert "local notes" not in last and "and now without" in last  # attachments go with one message
