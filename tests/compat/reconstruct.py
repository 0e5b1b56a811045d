"""Rebuild the reconstructed streams in this folder (see SOURCES.md): `python reconstruct.py`.

They are written once and committed; this script documents exactly how each was made. The
`<think>` variants of a qwen3 stream are not kept here: test_compat_reasoning.py derives them with
`inline_think()` at test time, from a hand-built stream and from the recorded one in
../shared/traffic-audio (which may be read there but not carried in the project).
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent


def frames(text: str) -> list[dict]:
    """The JSON chunks of a Chat Completions SSE body."""
    return [json.loads(f[6:]) for f in text.split("\n\n") if f.startswith("data: {")]


def sse(events: list[dict | str]) -> str:
    """Chunks (compact JSON in `data:` lines) and ready-made SSE text, as one SSE body."""
    return "".join(e if isinstance(e, str) else "data: " + json.dumps(e, separators=(",", ":")) + "\n\n"
                   for e in events)


def write(name: str, events: list[dict | str]) -> None:
    (HERE / name).write_text(sse(events))


def inline_think(chunks: list[dict], *, close: bool, finish: str | None) -> list[dict | str]:
    """A qwen3 stream as a server without a reasoning parser sends it: the reasoning moves from
    `delta.reasoning` into `delta.content` inside `<think>…</think>`, tags split."""
    def with_content(c: dict, text: str) -> dict:
        c = json.loads(json.dumps(c))
        delta = c["choices"][0]["delta"]
        delta.pop("reasoning", None)
        delta["content"] = text
        c["choices"][0]["finish_reason"] = None
        return c

    first = next(c for c in chunks if c["choices"])
    out: list[dict | str] = [with_content(first, "<thi"), with_content(first, "nk>\n")]
    in_reasoning = True
    for c in chunks:
        if not c["choices"]:
            continue
        delta = c["choices"][0]["delta"]
        if delta.get("reasoning"):
            out.append(with_content(c, delta["reasoning"]))
        elif in_reasoning and delta.get("content"):
            in_reasoning = False
            if not close:
                break
            out += [with_content(c, "\n</th"), with_content(c, "ink>\n\n"), with_content(c, delta["content"])]
        elif delta.get("content") and close:
            out.append(with_content(c, delta["content"]))
    last = json.loads(json.dumps(chunks[-1] if not chunks[-1]["choices"] else chunks[-2]))
    end = with_content(next(c for c in reversed(chunks) if c["choices"]), "")
    end["choices"][0]["finish_reason"] = finish
    out.append(end)
    if not last["choices"]:
        out.append(last)  # the usage chunk
    out.append("data: [DONE]\n\n")
    return out


def main() -> None:
    base = {"id": "chatcmpl-745", "object": "chat.completion.chunk", "created": 1780944348, "model": "qwen3",
            "system_fingerprint": "fp_ollama"}

    def chunk(content: str | None = None, finish: str | None = None, **extra) -> dict:
        delta = {"role": "assistant", "content": content} if content is not None else {}
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}

    later = ["Use ", "the ", "<think>", " tag ", "like ", "this: ", "<think>plan</think>", " done."]
    write("think_later_01.sse", [chunk(p) for p in later] + [chunk("", "stop"), "data: [DONE]\n\n"])

    # OpenRouter: an error after tokens were sent is a chunk with a top-level `error` and
    # finish_reason "error" (openrouter.ai/docs/api-reference/streaming, "Mid-stream errors")
    orbase = {"id": "gen-1780944400-Xq2v9Lk3", "provider": "DeepInfra", "model": "deepseek/deepseek-r1",
              "object": "chat.completion.chunk", "created": 1780944400}

    def orchunk(content: str, finish: str | None = None, **extra) -> dict:
        return {**orbase, **extra, "choices": [{"index": 0, "delta": {"role": "assistant", "content": content},
                                                "finish_reason": finish, "native_finish_reason": finish,
                                                "logprobs": None}]}

    head = [": OPENROUTER PROCESSING\n\n", orchunk("The answer"), orchunk(" begins")]
    write("openrouter_error_limit_01.sse",
          head + [orchunk("", "error", error={"code": 400, "message": "Token limit reached"})])
    write("openrouter_error_502_01.sse",
          head + [orchunk("", "error", error={"code": 502, "message": "Provider returned error"})])

    # Groq: `event: error` mid-stream (groq-python PR #119 handles it; the body shape as quoted
    # in xberg-io/liter-llm PR #189)
    gbase = {"id": "chatcmpl-0f1b6c2e-9a1d-4c3e-8f7a-5d2b1e0c9a77", "object": "chat.completion.chunk",
             "created": 1780944500, "model": "llama-3.3-70b-versatile", "system_fingerprint": "fp_3f3b593e33",
             "x_groq": {"id": "req_01k2sim0000000000000000"}}
    write("groq_event_error_01.sse", [
        {**gbase, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                               "finish_reason": None}]},
        {**gbase, "choices": [{"index": 0, "delta": {"content": "Let me check"}, "logprobs": None,
                               "finish_reason": None}]},
        "event: error\ndata: " + json.dumps({"error": {"message": "tool call validation failed: attempted to call "
                                                       "tool 'get_weather' which was not in request.tools",
                                                       "type": "invalid_request_error", "code": "tool_use_failed",
                                                       "status_code": 400}}) + "\n\n",
    ])


if __name__ == "__main__":
    main()
