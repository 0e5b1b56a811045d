"""Compatible providers: `<think>` blocks in the content, and errors inside the stream.

Unit tests feed the sans-I/O splitter and decoder; end-to-end tests replay real and faithfully
reconstructed streams (tests/compat/, see SOURCES.md) through the simulator to the real CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clihelp import run_cli
from voicecli.events import ReasoningDelta, TextDelta, TurnEnd
from voicecli.wire.chat import ChatDecoder, ThinkSplitter
from voicecli.wire.sse import SSEDecoder

COMPAT = Path(__file__).parent / "compat"
REAL_REASONING = "Okay, the user wants me to count from 1 to 3."  # how the recorded qwen3 reasoning begins


def split(pieces: list[str]) -> tuple[str, str, bool]:
    splitter = ThinkSplitter()
    out = [p for piece in pieces for p in splitter.feed(piece)] + splitter.finish()
    reasoning = "".join(t for kind, t in out if kind == "reasoning")
    return reasoning, "".join(t for kind, t in out if kind == "text"), splitter.unclosed


@pytest.mark.parametrize("pieces", [
    ["<think>plan</think>\n\nanswer"],
    ["<thi", "nk>", "pl", "an</th", "ink>", "\n\nans", "wer"],
    list("<think>\nplan\n</think>\n\nanswer"),  # one character at a time
    ["  \n", "<think>plan</think>answer"],  # whitespace before the tag
])
def test_leading_think_block_is_reasoning(pieces):
    reasoning, text, unclosed = split(pieces)
    assert (reasoning.strip(), text, unclosed) == ("plan", "answer", False)


def test_think_later_in_an_answer_is_text():
    assert split(["Hello ", "<think>x</think> world"]) == ("", "Hello <think>x</think> world", False)
    assert split(["<b>", "bold</b>"]) == ("", "<b>bold</b>", False)


def test_unclosed_block_is_all_reasoning():
    assert split(["<think>", "still thinking", " when it ended </thi"]) == ("still thinking when it ended </thi", "", True)


def test_a_cut_tag_at_the_end_is_text():
    assert split(["<th"]) == ("", "<th", False)


def decode(name: str, **kwargs) -> list:
    sse, decoder, events = SSEDecoder(), ChatDecoder(**kwargs), []
    for message in sse.feed((COMPAT / name).read_bytes()) + sse.flush():
        if message.is_done:
            continue
        data = json.loads(message.data)
        if message.event == "error" and "error" not in data:
            data = {"error": data}
        events += decoder.feed(data)
    return events + decoder.finish()


def test_unclosed_block_with_stop_is_incomplete():
    decoder = ChatDecoder()
    events = decoder.feed({"choices": [{"index": 0, "delta": {"content": "<think>hmm"}, "finish_reason": "stop"}]})
    events += decoder.finish()
    assert events[-1] == TurnEnd("incomplete", None, "unclosed_think")
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == "hmm"


def test_inline_think_stream_splits_like_the_reasoning_field():
    """The reconstructed inline stream gives exactly the recorded stream's reasoning and answer."""
    def parts(events):
        return ("".join(e.text for e in events if isinstance(e, ReasoningDelta)),
                "".join(e.text for e in events if isinstance(e, TextDelta)))

    real_reasoning, real_answer = parts(decode("ollama_qwen3_reasoning_01.sse"))
    inline_reasoning, inline_answer = parts(decode("think_inline_qwen3_01.sse"))
    assert real_reasoning.startswith(REAL_REASONING)
    assert inline_answer == real_answer == "1  \n2  \n3"
    assert inline_reasoning.strip() == real_reasoning.strip()
    kept = decode("think_inline_qwen3_01.sse", think_tags="keep")
    assert parts(kept)[1].startswith("<think>\n" + REAL_REASONING)


# -- through the real CLI ----------------------------------------------------------------------


@pytest.fixture
def replay(make_sim, tmp_path):
    def start(name: str):
        script = tmp_path / "script.json"
        script.write_text(json.dumps({"turns": [{"replay": str(COMPAT / name)}]}))
        return make_sim(script=script)
    return start


def infer(tmp_path, sim, *args):
    return run_cli(tmp_path, "infer", "-p", "offline", "-t", "chat", "--base-url", sim.base_url, *args)


def test_cli_pipe_gets_only_the_answer(tmp_path, replay):
    r = infer(tmp_path, replay("think_inline_qwen3_01.sse"), "count")
    assert (r.code, r.out) == (0, "1  \n2  \n3\n"), r.err
    assert "<think>" not in r.out + r.err  # reasoning is not shown on a non-terminal stderr


def test_cli_json_and_events_count_reasoning_apart(tmp_path, replay):
    r = infer(tmp_path, replay("think_inline_qwen3_01.sse"), "--json", "count")
    out = json.loads(r.out)
    assert (r.code, out["text"], out["status"]) == (0, "1  \n2  \n3", "completed")
    assert out["reasoning"].startswith(REAL_REASONING)
    r = infer(tmp_path, replay("think_inline_qwen3_01.sse"), "--events", "count")
    kinds = [json.loads(line)["type"] for line in r.out.splitlines()]
    assert kinds.index("reasoning_delta") < kinds.index("text_delta")
    assert "".join(json.loads(line)["text"] for line in r.out.splitlines()
                   if json.loads(line)["type"] == "text_delta") == "1  \n2  \n3"


def test_cli_keep_shows_the_raw_text(tmp_path, replay):
    r = infer(tmp_path, replay("think_inline_qwen3_01.sse"), "-o", "think_tags=keep", "count")
    assert r.code == 0 and r.out.startswith("<think>\n" + REAL_REASONING) and r.out.endswith("1  \n2  \n3\n")


def test_cli_unclosed_block_is_incomplete(tmp_path, replay):
    r = infer(tmp_path, replay("think_unclosed_qwen3_01.sse"), "count")
    assert (r.code, r.out.strip()) == (8, ""), r.err
    assert "incomplete" in r.err


def test_cli_later_think_tag_is_answer_text(tmp_path, replay):
    r = infer(tmp_path, replay("think_later_01.sse"), "tags?")
    assert (r.code, r.out) == (0, "Use the <think> tag like this: <think>plan</think> done.\n"), r.err


def test_history_keeps_only_the_answer(tmp_path, make_sim):
    """The next turn sends the answer back without the reasoning (as reasoning models expect)."""
    sim = make_sim()
    fault = ["-o", 'connection.headers={ x-sim-fault = "think" }']
    r = infer(tmp_path, sim, *fault, "first")
    assert (r.code, r.out) == (0, "You said: first\n"), r.err
    r = infer(tmp_path, sim, *fault, "-c", "second")
    assert (r.code, r.out) == (0, "You said: second\n"), r.err
    bodies = [e["body"] for e in sim.log if isinstance(e.get("body"), dict) and "messages" in e["body"]]
    assert bodies[-1]["messages"][-2] == {"role": "assistant", "content": "You said: first"}


@pytest.mark.parametrize("name, code, message", [
    ("openrouter_error_limit_01.sse", 8, "Token limit reached"),
    ("openrouter_error_502_01.sse", 7, "Provider returned error"),
    ("groq_event_error_01.sse", 7, "tool call validation failed"),
])
def test_cli_error_inside_the_stream(tmp_path, replay, name, code, message):
    r = infer(tmp_path, replay(name), "--json", "hi")
    out = json.loads(r.out)
    assert r.code == code, r.err
    assert message in r.err
    assert out["status"] != "completed"
    assert out["text"] in ("The answer begins", "Let me check")  # the partial answer is kept


def test_error_chunk_status_maps_to_exit_codes():
    from voicecli.wire import errors

    for frame, code in [({"error": {"code": 429, "message": "Rate limit exceeded"}}, 5),
                        ({"error": {"code": 401, "message": "No auth"}}, 4),
                        ({"error": {"message": "x", "status_code": 503}}, 7),
                        ({"error": {"message": "x"}, "status_code": 429}, 5)]:
        assert errors.exit_code(errors.from_error_frame(frame)) == code, frame
