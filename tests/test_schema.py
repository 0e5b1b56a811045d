"""Structured output: `infer --schema` and chat's `/schema`, end to end against the simulator on every
transport, plus the schema forms (inline, file, concise) and the simulator's conforming answers."""

from __future__ import annotations

import json

import pytest

from clihelp import run_cli
from voicecli import schema
from voicecli.errors import UsageError
from voicecli.sim.config import SimConfig
from voicecli.sim.instance import instance
from voicecli.sim.server import start_in_thread

TRANSPORTS = ["ws", "sse", "chat"]
PERSON = "name, age int, bio: one sentence"


@pytest.fixture
def sim():
    with start_in_thread(SimConfig()) as handle:
        yield handle


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def infer(home, sim, *args):
    return run_cli(home, "infer", "-p", "offline", "--base-url", sim.base_url, *args)


def sent_formats(sim):
    """The structured-output part of each model request the simulator received."""
    out = []
    for entry in sim.log:
        body = entry.get("event") or entry.get("body")
        if isinstance(body, dict) and "messages" in body:
            out.append(("chat", body.get("response_format")))
        elif isinstance(body, dict) and "input" in body:
            out.append(("responses", (body.get("text") or {}).get("format")))
    return out


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_concise_schema_gives_a_json_answer_on_every_transport(home, sim, transport):
    r = infer(home, sim, "-t", transport, "--schema", PERSON, "Tell me about Ada Lovelace")
    assert r.code == 0, r.err
    assert json.loads(r.out) == {"name": "You said: Tell me about Ada Lovelace", "age": 0, "bio": "text"}
    assert r.out.count("\n") == 1  # piped: one compact line
    expected_schema = {"type": "object", "additionalProperties": False, "required": ["name", "age", "bio"],
                       "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                                      "bio": {"type": "string", "description": "one sentence"}}}
    ((dialect, fmt),) = sent_formats(sim)
    if transport == "chat":
        assert dialect == "chat" and fmt == {"type": "json_schema", "json_schema": {
            "name": "answer", "schema": expected_schema, "strict": True}}
    else:
        assert fmt == {"type": "json_schema", "name": "answer", "schema": expected_schema, "strict": True}


def test_schema_from_a_file_is_made_strict_and_validated(home, sim, tmp_path):
    path = tmp_path / "city.json"
    path.write_text(json.dumps({"title": "City info", "type": "object", "required": ["city"], "properties": {
        "city": {"type": "string", "minLength": 3},
        "population": {"type": "integer", "minimum": 1},
        "tags": {"type": "array", "items": {"enum": ["big", "old"]}, "minItems": 2}}}))
    r = infer(home, sim, "--json", "--schema", str(path), "Paris")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["data"] == {"city": "You said: Paris", "population": 1, "tags": ["big", "big"]}
    assert json.loads(data["text"]) == data["data"]
    ((_, fmt),) = sent_formats(sim)
    assert fmt["name"] == "City_info" and fmt["strict"] is True
    assert fmt["schema"]["required"] == ["city", "population", "tags"]  # strict: all required…
    assert fmt["schema"]["properties"]["population"]["type"] == ["integer", "null"]  # …optional ones nullable


def test_a_schema_that_cannot_be_strict_is_sent_as_given(home, sim):
    loose = {"type": "object", "properties": {"v": {"oneOf": [{"type": "string"}, {"type": "integer"}]}},
             "required": ["v"]}
    r = infer(home, sim, "-t", "chat", "--schema", json.dumps(loose), "x")
    assert r.code == 0, r.err
    ((_, fmt),) = sent_formats(sim)
    assert fmt["json_schema"] == {"name": "answer", "schema": loose, "strict": False}


@pytest.mark.parametrize("reply, reason", [
    ('{"name": 5, "age": "old", "bio": "b"}', "age: 'old' is not of type 'integer'; name: 5 is not of type 'string'"),
    ('{"name": "n", "age": 3}', "'bio' is a required property"),
    ("Sure! Here it is: {}", "it is not JSON"),
])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_answer_that_does_not_match_exits_8_with_the_reason(home, tmp_path, transport, reply, reason):
    script = tmp_path / "s.json"
    script.write_text(json.dumps({"turns": [{"reply": reply}]}))
    with start_in_thread(SimConfig(script=script)) as scripted:
        r = infer(home, scripted, "-t", transport, "--schema", PERSON, "hi")
    assert r.code == 8
    assert r.out == reply + "\n"  # what the model said is still there to see
    assert r.err.startswith("voicecli: the answer does not match the schema: ") and reason in r.err, r.err
    assert r.err.count("\n") == 1


@pytest.mark.slow
def test_json_and_events_modes(home, sim, tmp_path):
    data = json.loads(infer(home, sim, "--json", "--schema", "ok bool", "x").out)
    assert data["data"] == {"ok": True} and data["error"] is None
    assert "data" not in json.loads(infer(home, sim, "--json", "x").out)  # only with --schema
    r = infer(home, sim, "--events", "--schema", "ok bool", "x")
    events = [json.loads(line) for line in r.out.splitlines()]
    assert r.code == 0 and "".join(e["text"] for e in events if e["type"] == "text_delta") == '{"ok": true}'
    script = tmp_path / "bad.json"
    script.write_text(json.dumps({"turns": [{"reply": '{"ok": "yes"}'}]}))
    with start_in_thread(SimConfig(script=script)) as scripted:
        r = infer(home, scripted, "--json", "--schema", "ok bool", "x")
    assert r.code == 8 and json.loads(r.out)["data"] is None


@pytest.mark.parametrize("spec, message", [
    ('{"type": "object", ', "--schema: not valid JSON"),
    ("name, age integer64", "--schema: unknown type 'integer64' for field 'age'"),
    ("a b c", "cannot read the field 'a b c'"),
    ('{"type": "objekt"}', "--schema: not a valid JSON Schema"),
    ("missing.json", "--schema missing.json: cannot read it"),
    (",", "no fields given"),
])
def test_bad_schemas_are_usage_errors(home, sim, spec, message):
    r = infer(home, sim, "--schema", spec, "x")
    assert r.code == 2 and message in r.err and "Traceback" not in r.err, r.err
    assert sent_formats(sim) == []  # nothing was sent


def test_concise_form():
    assert schema.concise("name, age int, score float: 0 to 1, ok bool") == {
        "type": "object", "additionalProperties": False, "required": ["name", "age", "score", "ok"],
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                       "score": {"type": "number", "description": "0 to 1"}, "ok": {"type": "boolean"}}}
    multi = schema.concise("title: the title, with a comma\nyear int")  # newlines: commas stay in descriptions
    assert multi["properties"]["title"]["description"] == "the title, with a comma"
    with pytest.raises(UsageError):
        schema.concise("age number-ish")


def test_chat_schema_command(home, sim, tmp_path):
    r = run_cli(home, "chat", "-p", "offline", "--base-url", sim.base_url,
                input=f"/schema {PERSON}\nhello\n/clear\nagain\n/schema off\nplain\n/schema nope nope\n")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert json.loads(lines[0])["name"] == "You said: hello"
    assert json.loads(lines[1])["name"] == "You said: again"  # kept after /clear
    assert lines[2] == "You said: plain"
    assert "schema (strict):" in r.err and "schema: none" in r.err and "/schema: unknown type 'nope'" in r.err
    script = tmp_path / "s.json"
    script.write_text(json.dumps({"turns": [{"reply": "not json"}]}))
    with start_in_thread(SimConfig(script=script)) as scripted:
        r = run_cli(home, "chat", "-p", "offline", "--base-url", scripted.base_url, input="/schema ok bool\nhi\n")
    assert "voicecli: the answer does not match the schema: it is not JSON" in r.err


SCHEMAS = [
    {"type": "object", "properties": {"when": {"type": "string", "format": "date-time"},
                                      "mail": {"type": "string", "format": "email"},
                                      "code": {"type": "string", "minLength": 5, "maxLength": 6}}},
    {"$defs": {"pt": {"type": "object", "properties": {"x": {"type": "number", "exclusiveMinimum": 0}},
                      "required": ["x"]}},
     "type": "object", "properties": {"points": {"type": "array", "items": {"$ref": "#/$defs/pt"}, "minItems": 3}}},
    {"type": "object", "properties": {"v": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 7}]},
                                      "k": {"const": "fixed"}, "e": {"enum": [2, 3]},
                                      "n": {"type": ["null", "boolean"]}}},
]


@pytest.mark.parametrize("s", SCHEMAS)
def test_simulator_answers_conform(s):
    assert schema.errors(s, instance(s, "words")) == []
