"""HTTPS for the HTTP transports: certificates still checked, CA certificates read only for TLS.

The simulator speaks plain HTTP; a TLS-terminating relay with a self-signed certificate for
127.0.0.1 stands in front of it.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from clihelp import run_cli


@pytest.fixture
def home(tmp_path):
    (tmp_path / "profiles").mkdir()
    return tmp_path


@pytest.fixture
def cert(tmp_path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    crt, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True)
    return crt, key


@pytest.fixture
def tls_url(sim, cert):
    """https://127.0.0.1:PORT/v1, relayed to the simulator."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*cert)
    sim_host, sim_port = sim.base_url.split("//")[1].split("/")[0].split(":")
    loop = asyncio.new_event_loop()

    async def pipe(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def relay(client_r, client_w):
        server_r, server_w = await asyncio.open_connection(sim_host, int(sim_port))
        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

    server = loop.run_until_complete(asyncio.start_server(relay, "127.0.0.1", 0, ssl=context))
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{port}/v1"
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


@pytest.mark.parametrize("transport", ["sse", "chat"])
def test_https_checks_the_servers_certificate(home, tls_url, cert, transport):
    args = ["infer", "-p", "offline", "--base-url", tls_url, "-t", transport, "-o", "connection.max_retries=0", "hi"]
    r = run_cli(home, *args)
    assert r.code == 6 and "certificate" in r.err.lower(), r.err
    r = run_cli(home, *args, SSL_CERT_FILE=str(cert[0]))
    assert (r.code, r.out) == (0, "You said: hi\n"), r.err


def test_an_unreadable_ca_file_is_named(home, tls_url):
    r = run_cli(home, "infer", "-p", "offline", "--base-url", tls_url, "-t", "sse", "-o", "connection.max_retries=0",
                "hi", SSL_CERT_FILE=str(home / "no-such-bundle.pem"))
    assert r.code == 6 and f"SSL_CERT_FILE={home / 'no-such-bundle.pem'}" in r.err, r.err


@pytest.mark.parametrize("transport", ["sse", "chat"])
def test_plain_http_reads_no_ca_certificates(home, sim, transport):
    """Reading the CA bundle costs ~30 ms of every run: a plain-http server (a local model, the
    simulator) never needs it, so even a missing SSL_CERT_FILE does not matter there."""
    r = run_cli(home, "infer", "-p", "offline", "--base-url", sim.base_url, "-t", transport, "hi",
                SSL_CERT_FILE=str(home / "no-such-bundle.pem"))
    assert (r.code, r.out) == (0, "You said: hi\n"), r.err


@pytest.mark.parametrize("transport", ["sse", "chat"])
def test_https_through_a_proxy_tunnel(home, tls_url, cert, transport):
    """HTTPS_PROXY: a CONNECT tunnel through the proxy, then TLS with the server itself — the
    certificate is still checked against the server's name, not the proxy's."""
    from test_http_client import Proxy

    proxy = Proxy()
    try:
        port = tls_url.split(":")[2].split("/")[0]
        args = ["infer", "-p", "offline", "--base-url", tls_url, "-t", transport, "-o", "connection.max_retries=0", "hi"]
        r = run_cli(home, *args, HTTPS_PROXY=proxy.url, SSL_CERT_FILE=str(cert[0]))
        assert (r.code, r.out) == (0, "You said: hi\n"), r.err
        assert proxy.seen == [f"CONNECT 127.0.0.1:{port}"]
        r = run_cli(home, *args, https_proxy=proxy.url)  # no trust in the self-signed certificate
        assert r.code == 6 and "certificate" in r.err.lower(), r.err
    finally:
        proxy.stop()


def test_the_systems_trust_store_is_used_without_ssl_cert_file(tls_url, cert, monkeypatch):
    """A company root added to the operating system's store (update-ca-certificates) is trusted:
    with neither SSL_CERT_FILE nor SSL_CERT_DIR set, the client reads OpenSSL's default paths
    (here pointed at the test's certificate, as a system store holding it would be)."""
    from voicecli.transport.client import Client, TransportError

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    real = ssl.get_default_verify_paths()

    async def get(cafile: str) -> int:
        monkeypatch.setattr(ssl, "get_default_verify_paths",
                            lambda: real._replace(openssl_cafile=cafile, openssl_capath="/nonexistent"))
        client = Client(connect_timeout=5, read_timeout=5)
        try:
            return (await client.get(tls_url + "/models")).status_code
        finally:
            await client.aclose()

    assert asyncio.run(get(str(cert[0]))) == 200
    with pytest.raises(TransportError, match="certificate was refused"):
        asyncio.run(get(real.openssl_cafile or "/nonexistent"))  # the real store does not know it
