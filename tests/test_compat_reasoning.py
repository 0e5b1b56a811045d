"""Compatible providers: `<think>` blocks in the content, and errors inside the stream.

Unit tests feed the sans-I/O splitter and decoder; end-to-end tests replay real and faithfully
reconstructed streams (tests/compat/, see SOURCES.md) through the simulator to the real CLI. The
qwen3 streams with the reasoning in `delta.reasoning` (one hand-built here, one recorded and read
from ../shared) are turned into their inline `<think>` variants at test time by compat/reconstruct.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from compat.reconstruct import frames, inline_think, sse

from clihelp import run_cli
from shared_data import recording
from voicecli.errors import exit_code_for
from voicecli.events import ReasoningDelta, TextDelta, TurnEnd
from voicecli.wire.chat import ChatDecoder, ThinkSplitter
from voicecli.wire.sse import SSEDecoder

COMPAT = Path(__file__).parent / "compat"
ANSWER = "1  \n2  \n3"


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


def decode(path: Path, **kwargs) -> list:
    sse, decoder, events = SSEDecoder(), ChatDecoder(**kwargs), []
    for message in sse.feed(path.read_bytes()) + sse.flush():
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


# -- a qwen3 stream, and the same with its reasoning inline in <think> tags ----------------------


def hand_built_qwen3() -> str:
    """A qwen3 stream as Ollama sends it (protocols.md §3.2, §3.3): the thinking word by word in the
    non-standard `delta.reasoning`, the answer, finish_reason "stop", a usage chunk with
    `"choices": []`, `[DONE]`."""
    base = {"id": "chatcmpl-321", "object": "chat.completion.chunk", "created": 1750000000, "model": "qwen3",
            "system_fingerprint": "fp_ollama"}

    def chunk(finish: str | None = None, **delta: str) -> dict:
        return {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "", **delta},
                                     "finish_reason": finish}]}

    thinking = "The user asks me to count to three. One number per line, nothing else, so:\n1, 2, 3.\n"
    chunks = [chunk(reasoning=word) for word in re.findall(r"\S+\s*", thinking)]
    chunks += [chunk(content=piece) for piece in ("1", "  \n", "2", "  \n", "3")] + [chunk("stop")]
    usage = {"prompt_tokens": 17, "completion_tokens": 31, "total_tokens": 48}
    return sse([*chunks, {**base, "choices": [], "usage": usage}, "data: [DONE]\n\n"])


@dataclass
class Qwen3:
    field: Path  # the reasoning in delta.reasoning
    inline: Path  # the same, inline in <think>…</think> (as a server without a reasoning parser sends it)
    unclosed: Path  # the inline one cut while still thinking: no </think>, no answer, finish_reason "length"
    reasoning: str  # how the reasoning begins


@pytest.fixture(params=["hand-built", "recorded"])
def qwen3(request, tmp_path) -> Qwen3:
    if request.param == "recorded":
        text, cut = recording("compat_ollama_chat_sse_01.sse").read_text(), 120
        reasoning = "Okay, the user wants me to count from 1 to 3."
    else:
        text, cut, reasoning = hand_built_qwen3(), 8, "The user asks me to count to three."
    chunks, paths = frames(text), [tmp_path / f"{kind}.sse" for kind in ("field", "inline", "unclosed")]
    for path, body in zip(paths, (text, sse(inline_think(chunks, close=True, finish="stop")),
                                  sse(inline_think(chunks[:cut], close=False, finish="length")))):
        path.write_text(body)
    return Qwen3(*paths, reasoning)


def test_inline_think_stream_splits_like_the_reasoning_field(qwen3):
    """The inline stream gives exactly the reasoning-field stream's reasoning and answer."""
    def parts(events):
        return ("".join(e.text for e in events if isinstance(e, ReasoningDelta)),
                "".join(e.text for e in events if isinstance(e, TextDelta)))

    real_reasoning, real_answer = parts(decode(qwen3.field))
    inline_reasoning, inline_answer = parts(decode(qwen3.inline))
    assert real_reasoning.startswith(qwen3.reasoning)
    assert inline_answer == real_answer == ANSWER
    assert inline_reasoning.strip() == real_reasoning.strip()
    kept = decode(qwen3.inline, think_tags="keep")
    assert parts(kept)[1].startswith("<think>\n" + qwen3.reasoning)


# -- through the real CLI ----------------------------------------------------------------------


@pytest.fixture
def replay(make_sim, tmp_path):
    def start(path: Path):
        script = tmp_path / "script.json"
        script.write_text(json.dumps({"turns": [{"replay": str(path)}]}))
        return make_sim(script=script)
    return start


def infer(tmp_path, sim, *args):
    return run_cli(tmp_path, "infer", "-p", "offline", "-t", "chat", "--base-url", sim.base_url, *args)


def test_cli_pipe_gets_only_the_answer(tmp_path, replay, qwen3):
    r = infer(tmp_path, replay(qwen3.inline), "count")
    assert (r.code, r.out) == (0, ANSWER + "\n"), r.err
    assert "<think>" not in r.out + r.err  # reasoning is not shown on a non-terminal stderr


def test_cli_json_and_events_count_reasoning_apart(tmp_path, replay, qwen3):
    r = infer(tmp_path, replay(qwen3.inline), "--json", "count")
    out = json.loads(r.out)
    assert (r.code, out["text"], out["status"]) == (0, ANSWER, "completed")
    assert out["reasoning"].startswith(qwen3.reasoning)
    r = infer(tmp_path, replay(qwen3.inline), "--events", "count")
    kinds = [json.loads(line)["type"] for line in r.out.splitlines()]
    assert kinds.index("reasoning_delta") < kinds.index("text_delta")
    assert "".join(json.loads(line)["text"] for line in r.out.splitlines()
                   if json.loads(line)["type"] == "text_delta") == ANSWER


def test_cli_keep_shows_the_raw_text(tmp_path, replay, qwen3):
    r = infer(tmp_path, replay(qwen3.inline), "-o", "think_tags=keep", "count")
    assert r.code == 0 and r.out.startswith("<think>\n" + qwen3.reasoning) and r.out.endswith(ANSWER + "\n")


def test_cli_unclosed_block_is_incomplete(tmp_path, replay, qwen3):
    r = infer(tmp_path, replay(qwen3.unclosed), "count")
    assert (r.code, r.out.strip()) == (8, ""), r.err
    assert "incomplete" in r.err


def test_cli_later_think_tag_is_answer_text(tmp_path, replay):
    r = infer(tmp_path, replay(COMPAT / "think_later_01.sse"), "tags?")
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
    r = infer(tmp_path, replay(COMPAT / name), "--json", "hi")
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
        assert exit_code_for(errors.from_error_frame(frame)) == code, frame
