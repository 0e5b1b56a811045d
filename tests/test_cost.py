"""Cost in dollars: the shipped price table, `[model.price]`, and where the cost shows (real CLI vs the simulator)."""

from __future__ import annotations

import json
import re

import pytest

from clihelp import run_cli
from voicecli import pricing
from voicecli.sim.config import SimConfig
from voicecli.sim.server import start_in_thread


@pytest.fixture
def sim():
    with start_in_thread(SimConfig()) as handle:
        yield handle


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def infer(home, sim, *args):
    return run_cli(home, "infer", "-p", "offline", "--base-url", sim.base_url, *args)


def expected(usage, input, output, cached_input=None):
    cached = usage["cached_tokens"]
    rate = input if cached_input is None else cached_input
    return ((usage["input_tokens"] - cached) * input + cached * rate + usage["output_tokens"] * output) / 1e6


@pytest.mark.parametrize("transport", ["ws", "sse", "chat"])
def test_json_has_the_cost_from_the_table(home, sim, transport):
    r = infer(home, sim, "-t", transport, "-m", "gpt-5.5", "--json", "a few words to price")
    data = json.loads(r.out)
    assert data["cost_usd"] == pytest.approx(expected(data["usage"], 5.00, 30.00, 0.50), abs=1e-6)
    assert data["cost_usd"] > 0


def test_cached_tokens_are_priced_at_the_cached_rate():
    price = pricing.lookup("gpt-5.5")
    # 1M input of which 400k cached, 100k output: 600k × $5 + 400k × $0.50 + 100k × $30, per 1M
    assert price.cost(input_tokens=1_000_000, cached_tokens=400_000, output_tokens=100_000) == pytest.approx(6.2)
    realtime = pricing.lookup("gpt-realtime")
    cost = realtime.cost(input_tokens=1_000_000, output_tokens=1_000_000, audio_input_tokens=500_000,
                         audio_output_tokens=1_000_000, cached_tokens=100_000, audio_cached_tokens=100_000)
    # text: 500k × $4; audio in: 400k × $32 + 100k × $0.40; audio out: 1M × $64
    assert cost == pytest.approx(2.0 + 12.8 + 0.04 + 64.0)
    assert pricing.lookup("gpt-5.5-pro").cost(input_tokens=10, output_tokens=0) is not None
    assert pricing.lookup("gpt-5.5").cost(input_tokens=10, output_tokens=0, audio_input_tokens=5) is None


def test_unknown_models_have_no_price_rather_than_a_guess(home, sim):
    assert pricing.lookup("gpt-4o-2024-08-06") == pricing.lookup("gpt-4o")  # a dated snapshot
    assert pricing.lookup("gpt-5.5-turbo-preview") is None  # no prefix guessing
    r = infer(home, sim, "-m", "my-local-model", "--json", "hi")  # the simulator answers any model
    assert json.loads(r.out)["cost_usd"] is None
    r = infer(home, sim, "-m", "my-local-model", "-u", "hi")
    assert r.code == 0 and r.err.rstrip().endswith("· unknown price")


@pytest.mark.slow
def test_the_simulators_models_are_free(home, sim):
    from voicecli.events import Usage
    from voicecli.sim.models import MODELS

    assert all(pricing.cost_usd(m, Usage(1000, 1000)) == 0 for m in MODELS)
    assert pricing.cost_usd("sim-realtime", Usage(1000, 1000, audio_input_tokens=600, audio_output_tokens=800)) == 0
    r = infer(home, sim, "--json", "hi")  # the offline profile's "sim-1"
    assert json.loads(r.out)["cost_usd"] == 0
    r = infer(home, sim, "-u", "hi")
    assert r.code == 0 and r.err.rstrip().endswith("· $0"), r.err
    # in the log too: $0 like a conversation whose only turn was interrupted before any usage, not "unknown price"
    listed = json.loads(run_cli(home, "logs", "--json").out)
    assert [c["cost_usd"] for c in listed] == [0, 0]
    assert run_cli(home, "logs").out.splitlines()[0].endswith(" $0")


def test_usage_line_ends_with_the_cost(home, sim):
    r = infer(home, sim, "-m", "gpt-4o", "-u", "hi")
    assert re.search(r"^gpt-4o over ws · \d+ in .* · (<\$0\.0001|\$0\.\d{4})$", r.err.strip()), r.err


@pytest.mark.slow
def test_profile_price_overrides_the_table(home, sim):
    (home / "profiles").mkdir(parents=True)
    (home / "profiles" / "local.toml").write_text(
        'extends = "offline"\n\n[model]\nname = "gpt-5.5"\n\n[model.price]\ninput = 1000.0\noutput = 2000.0\n')
    r = run_cli(home, "infer", "-p", "local", "--base-url", sim.base_url, "--json", "hi")
    data = json.loads(r.out)
    assert data["cost_usd"] == pytest.approx(expected(data["usage"], 1000.0, 2000.0), abs=1e-6)
    r = run_cli(home, "infer", "-p", "offline", "--base-url", sim.base_url, "-o", "price={input=1e6, output=0}",
                "--json", "hi")
    data = json.loads(r.out)
    assert data["cost_usd"] == pytest.approx(data["usage"]["input_tokens"])
    shown = run_cli(home, "profiles", "show", "local").out
    assert "[model.price]" in shown and "input = 1000.0" in shown


@pytest.mark.parametrize("table, message", [
    ('{ input = 1.0 }', "output is required"),
    ('{ input = 1.0, output = "2" }', "output must be a number"),
    ('{ input = 1.0, output = 2.0, outptu = 3.0 }', "unknown key 'outptu'"),
    ('{ input = -1.0, output = 2.0 }', "input must be a number of US dollars per 1M tokens, at least 0"),
])
def test_bad_price_tables_are_configuration_errors(home, table, message):
    path = home / "p.toml"
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(f'extends = "offline"\n\n[model]\nprice = {table}\n')
    r = run_cli(home, "profiles", "validate", str(path))
    assert r.code == 3 and message in r.err and f"{path}:4" in r.err, r.err


@pytest.mark.slow
def test_logs_and_chat_show_the_cost(home, sim):
    r = run_cli(home, "chat", "-p", "offline", "--base-url", sim.base_url, "-m", "gpt-5.5",
                input="first question\nsecond question\n/model my-local-model\nthird\n/usage\n")
    assert r.code == 0, r.err
    footers = [line for line in r.err.splitlines() if " over ws · " in line and line.startswith("gpt-5.5")]
    assert len(footers) == 2 and all(re.search(r"· \$0\.\d{4}$", f) for f in footers), r.err
    usage = [line.strip() for line in r.err.splitlines() if line.strip().startswith(("#", "total:"))]
    assert re.search(r"^#1 .* · \$0\.\d{4}$", usage[0]) and usage[2].endswith("· unknown price")
    assert re.search(r"^total: .* · unknown price over 3 turns$", usage[3])  # one unpriced turn: no total
    (listed,) = json.loads(run_cli(home, "logs", "--json").out)
    assert listed["cost_usd"] is None
    r = run_cli(home, "chat", "-p", "offline", "--base-url", sim.base_url, "-m", "gpt-5.5", input="one\ntwo\n/usage\n")
    total = next(line for line in r.err.splitlines() if "total:" in line)
    listed = json.loads(run_cli(home, "logs", "--json", "-n", "1").out)[0]
    turns = json.loads(run_cli(home, "logs", "show", listed["cid"], "--json").out)["turns"]
    assert listed["cost_usd"] == pytest.approx(sum(t["cost_usd"] for t in turns)) and listed["cost_usd"] > 0
    assert f"${listed['cost_usd']:.4f}" in total


def test_the_shipped_table_is_well_formed():
    data = pricing.table()
    assert re.match(r"^\d{4}-\d{2}-\d{2}$", data["date"]) and data["source"].startswith("https://")
    assert data["models"]
    for model, row in data["models"].items():
        assert pricing.price_problems(row) == [], model
        assert row.get("cached_input", 0) <= row["input"], model
