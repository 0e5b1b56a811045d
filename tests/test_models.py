"""`voicecli models` against the simulator, and the simulator's /v1/models in the SDK's shape."""

from __future__ import annotations

import json
import stat
import sys

import pexpect
import pytest

from clihelp import cli_env, run_cli
from sdkcheck import assert_strict
from voicecli.sim.models import MODELS

KEY = "sk-models-secret-0123456789"


def models(home, sim, *args, fault=None, **env):
    extra = ["-o", f'connection.headers={{ x-sim-fault = "{fault}" }}'] if fault else []
    return run_cli(home, "models", "-p", "offline", "--base-url", sim.base_url, *extra, *args, **env)


def cache_files(home):
    return sorted((home / "cache" / "models").glob("*.json"))


def test_sim_lists_and_retrieves_models_in_the_sdks_shape(sim):
    import openai  # here, not at the top: the SDK costs each xdist worker ~0.8 s of CPU at collection

    client = openai.OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)
    page = client.models.list()
    assert [m.id for m in page.data] == list(MODELS)
    for m in page.data:
        assert_strict(m)
        assert m.object == "model" and m.owned_by and m.created > 0
    one = client.models.retrieve("sim-1")
    assert_strict(one)
    assert one.id == "sim-1"
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("nosuch")
    assert err.value.code == "model_not_found" and "`nosuch` does not exist" in err.value.message


def test_piped_listing_is_one_id_per_line_and_is_cached_privately(tmp_path, sim):
    r = models(tmp_path, sim)
    assert (r.code, r.err) == (0, "")
    assert r.out.splitlines() == sorted(MODELS)
    [cached] = cache_files(tmp_path)
    assert stat.S_IMODE(cached.stat().st_mode) == 0o600
    assert json.loads(cached.read_text())["ids"] == sorted(MODELS)
    assert sim.base_url not in cached.read_text()  # the URL may carry a password: only its hash


def test_json_is_the_servers_model_objects(tmp_path, sim):
    r = models(tmp_path, sim, "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert [m["id"] for m in data] == sorted(MODELS)
    assert data[0] == {"id": "sim-1", "object": "model", "created": 1767225600, "owned_by": "voicecli-sim"}


def test_terminal_gets_a_table_marking_the_profiles_model(tmp_path, sim):
    child = pexpect.spawn(sys.executable, ["-m", "voicecli", "models", "-p", "offline", "--base-url", sim.base_url],
                          env={**cli_env(tmp_path), "TERM": "xterm"}, encoding="utf-8", timeout=60)
    child.expect(pexpect.EOF)
    child.close()
    lines = child.before.replace("\r", "").splitlines()
    assert child.exitstatus == 0, child.before
    assert lines[0].split() == ["MODEL", "CREATED", "OWNED", "BY"]
    assert lines[1].split() == ["sim-1", "*", "2026-01-01", "voicecli-sim"]
    assert lines[2].split() == ["sim-mini", "2026-01-01", "voicecli-sim"]
    assert "* the profile's model (sim-1)" in lines[-1]


def test_the_profiles_key_is_sent_and_never_shown(tmp_path, make_sim):
    sim = make_sim(api_key=KEY)
    r = run_cli(tmp_path, "models", "--base-url", sim.base_url, "-o", "connection.headers={ x-team = \"blue\" }",
                OPENAI_API_KEY=KEY)
    assert r.code == 0, r.err
    [request] = [e for e in sim.log if e.get("endpoint") == "/v1/models"]
    assert request["method"] == "GET" and request["headers"]["x-team"] == "blue"
    assert request["headers"]["user-agent"].startswith("voicecli/")
    r = run_cli(tmp_path, "models", "--base-url", sim.base_url, OPENAI_API_KEY="sk-wrong-0123456789")
    assert r.code == 4 and r.out == ""
    assert r.err.startswith("voicecli: authentication failed at http://127.0.0.1:") and "(401, invalid_api_key" in r.err
    assert "sk-wrong-0123456789" not in r.err and len(r.err.splitlines()) == 1


@pytest.mark.slow
def test_server_errors_are_retried_then_one_line_with_the_exit_code(tmp_path, sim):
    r = models(tmp_path, sim, "-o", "connection.max_retries=1", fault="status=503; times=1")
    assert r.code == 0 and r.out.splitlines() == sorted(MODELS), r.err
    r = models(tmp_path, sim, "-o", "connection.max_retries=1", fault="status=500")
    assert r.code == 7 and r.out == ""
    assert r.err.startswith("voicecli: server error from") and "retried 1 time" in r.err
    assert not cache_files(tmp_path) or json.loads(cache_files(tmp_path)[0].read_text())["ids"]


def test_unreachable_server_is_a_network_error(tmp_path):
    r = run_cli(tmp_path, "models", "-p", "offline", "--base-url", "http://127.0.0.1:9/v1",
                "-o", "connection.max_retries=0")
    assert r.code == 6 and r.out == ""
    assert r.err.startswith("voicecli: network error talking to http://127.0.0.1:9/v1") and "Traceback" not in r.err


def test_a_server_without_a_model_list_is_an_api_error(tmp_path, sim):
    r = run_cli(tmp_path, "models", "-p", "offline", "--base-url", sim.base_url.removesuffix("/v1") + "/nope",
                "-o", "connection.max_retries=0")
    assert r.code == 7 and "not found at" in r.err


def test_the_offline_profile_lists_its_built_in_simulator(tmp_path):
    r = run_cli(tmp_path, "models", "-p", "offline")
    assert r.code == 0 and "sim-1" in r.out.splitlines(), r.err
