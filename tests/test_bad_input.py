"""Issue 22, bad input gets a clear error: binary files given to -f (or piped), non-finite numbers and
an empty model name in -o, an unparseable base URL, a SOCKS proxy for a WebSocket, and Ctrl-C before
anything arrived. The real CLI as a subprocess, against the simulator or a tiny loopback server."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import pytest

from clihelp import cli_env, run_cli
from hostile import read_head, server, ws_handshake  # noqa: F401 (server: a fixture)

DEADLINE = 60  # for a process to finish after a signal: generous, a loaded 2-core machine is slow


def infer(home, base_url: str, *args: str, input: str | None = None, **env: str):
    return run_cli(home, "infer", "-p", "offline", "--base-url", base_url, *args, input=input, **env)


def requests(sim) -> list:
    return [e for e in sim.log if isinstance(e.get("event") or e.get("body"), dict)]


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert lines and lines[0].startswith("voicecli: ") and "Traceback" not in err, err
    assert all(line.startswith("  hint: ") for line in lines[1:]), err
    return lines[0]


# ---- -f with a binary file -------------------------------------------------------------------------

BINARIES = {
    "ELF": (b"\x7fELF\x02\x01\x01\0" + b"\0" * 56, "an ELF executable"),
    "PDF": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "a PDF document"),
    "ZIP": (b"PK\x03\x04\x14\0\0\0\x08\0" + b"\0" * 20, "a ZIP archive"),
    "gzip": (b"\x1f\x8b\x08\0\0\0\0\0\0\x03" + b"\0" * 10, "a gzip archive"),
    "NUL bytes": (b"some text\0\x01\x02 then more", "binary data (it holds NUL bytes"),
    "UTF-16": ("hello".encode("utf-16-le"), "binary data (it holds NUL bytes; UTF-16 text must be converted"),
}


@pytest.mark.parametrize("kind", list(BINARIES))
def test_a_binary_file_given_to_f_is_a_usage_error_naming_its_type(tmp_path, sim, kind):
    data, what = BINARIES[kind]
    path = tmp_path / "notes.txt"  # the name proves nothing
    path.write_bytes(data)
    r = infer(tmp_path / "home", sim.base_url, "-f", str(path), "summarise")
    assert r.code == 2, r.err
    line = one_error_line(r.err)
    assert line.startswith(f"voicecli: cannot attach {path}: it is {what}"), line
    assert line.endswith(", not text")
    assert requests(sim) == []  # nothing was sent


def test_binary_stdin_is_a_usage_error_too(tmp_path, sim):
    proc = subprocess.run([sys.executable, "-m", "voicecli", "infer", "-p", "offline", "--base-url", sim.base_url,
                           "what is it"], input=BINARIES["ELF"][0], capture_output=True, timeout=60,
                          env=cli_env(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert one_error_line(proc.stderr.decode()) == "voicecli: stdin is an ELF executable, not text"


@pytest.mark.parametrize("data", [b"BMW and Audi: notes\n", "café au lait".encode("latin-1"),
                                  b"%PDF is not at the start here %PDF-1.7\n"])
def test_text_that_merely_starts_like_a_signature_is_still_text(tmp_path, sim, data):
    path = tmp_path / "notes.txt"
    path.write_bytes(data)
    r = infer(tmp_path / "home", sim.base_url, "-f", str(path), "summarise")
    assert r.code == 0, r.err
    assert len(requests(sim)) == 1


# ---- -o with a non-finite number or an empty model name -------------------------------------------


@pytest.mark.parametrize("option, message", [
    ("temperature=nan", "model.temperature must be a finite number; got nan"),
    ("temperature=inf", "model.temperature must be a finite number; got inf"),
    ("top_p=-inf", "model.top_p must be a finite number; got -inf"),
    ("connection.read_timeout=inf", "connection.read_timeout must be a finite number; got inf"),
    ("model.name=", "model.name is empty: name a model"),
    ("model.name=   ", "model.name is empty: name a model"),
])
def test_non_finite_numbers_and_an_empty_model_name_are_configuration_errors(tmp_path, sim, option, message):
    r = infer(tmp_path, sim.base_url, "-o", option, "hi")
    assert r.code == 3, r.err
    assert one_error_line(r.err) == f"voicecli: command line: {message}"
    assert requests(sim) == []


def test_a_non_finite_number_in_a_profile_is_a_configuration_error(tmp_path):
    profile = tmp_path / "nan.toml"
    profile.write_text('extends = "offline"\n[model]\ntemperature = nan\n')
    r = run_cli(tmp_path, "profiles", "validate", str(profile))
    assert r.code == 3, (r.out, r.err)
    assert "model.temperature must be a finite number; got nan" in r.err


# ---- a base URL urllib cannot parse ---------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://[::1", "http://[::1/v1", "[::1"])
@pytest.mark.parametrize("transport", ["ws", "sse", "chat"])
def test_an_unclosed_ipv6_bracket_in_the_base_url_is_a_usage_error(tmp_path, url, transport):
    r = infer(tmp_path, url, "-t", transport, "hi")
    assert r.code == 2, r.err
    assert one_error_line(r.err) == f"voicecli: base URL '{url}' is not a valid URL (Invalid IPv6 URL)"


# ---- a SOCKS proxy for a WebSocket ------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY",
                                      "socks_proxy"])
def test_a_socks_proxy_with_ws_is_a_configuration_error_naming_the_variable(tmp_path, sim, variable):
    r = infer(tmp_path, sim.base_url, "-t", "ws", "hi", **{variable: "socks5://user:secret@127.0.0.1:1080"})
    assert r.code == 3, r.err
    line = one_error_line(r.err)
    assert line == (f"voicecli: {variable} names a SOCKS proxy (socks5://…), which WebSocket connections "
                    "(-t ws, talk) cannot use"), line
    assert "secret" not in r.err
    assert requests(sim) == []


def test_a_socks_proxy_that_no_proxy_excludes_does_not_matter(tmp_path, sim):
    r = infer(tmp_path, sim.base_url, "-t", "ws", "hi", ALL_PROXY="socks5://127.0.0.1:1080", NO_PROXY="127.0.0.1")
    assert (r.code, r.out) == (0, "You said: hi\n"), r.err


def test_an_http_proxy_found_first_is_used_and_a_later_socks_one_ignored(tmp_path, sim):
    """websockets takes https_proxy before all_proxy (which it never reads): no error, the HTTP proxy
    is what it tries (here nothing listens there, so it fails as a connection error, exit 6)."""
    r = infer(tmp_path, sim.base_url, "-t", "ws", "-o", "connection.max_retries=0", "hi",
              HTTPS_PROXY="http://127.0.0.1:9", ALL_PROXY="socks5://127.0.0.1:1080")
    assert r.code == 6, r.err
    assert "SOCKS" not in r.err


# ---- Ctrl-C before anything arrived -----------------------------------------------------------------


@pytest.mark.parametrize("transport", ["sse", "ws"])
def test_ctrl_c_before_anything_arrived_does_not_claim_a_partial_answer(tmp_path, server, transport):
    asked = threading.Event()
    release = threading.Event()

    def handle(conn):  # takes the request, then answers nothing until the test is over
        if transport == "ws":
            ws_handshake(conn)
            conn.recv(65536)  # the response.create message
        else:
            read_head(conn)
        asked.set()
        release.wait(DEADLINE)

    srv = server(handle)
    proc = subprocess.Popen([sys.executable, "-m", "voicecli", "infer", "-p", "offline", "--base-url", srv.base_url,
                             "-t", transport, "hi"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=cli_env(tmp_path))
    try:
        assert asked.wait(DEADLINE), "the request never arrived"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=DEADLINE)
    finally:
        release.set()
        proc.kill()
    err = err.decode()
    assert proc.returncode == 130, err
    assert out == b""
    assert one_error_line(err) == "voicecli: interrupted; nothing of the answer had arrived"
