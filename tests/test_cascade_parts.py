"""The cascade's parts on their own: sentence chunking of streamed text, what of a sentence-by-sentence
answer was heard, and the speech-to-text / text-to-speech client against recorded real replies
(tests/traffic and ../shared) and the simulator's replies of the same kinds, served by a local HTTP
server in the chunkings a network produces."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from aiohttp import web
from clihelp import sim_speech
from shared_data import recording

from voicecli.events import Error, Transcript
from voicecli.profiles import Connection
from voicecli.sim.config import SimConfig
from voicecli.sim.server import start_in_thread
from voicecli.transport.audio import AudioClient, streams_transcript
from voicecli.voice.sentences import Sentences, speakable
from voicecli.voice.turns import BYTES_PER_MS, heard_sentences


# -- sentences ------------------------------------------------------------------------------------

ANSWER = ("Sure. Dr. Smith said e.g. 3.14 is close to pi! Here is **bold** and [a link](https://x.org). "
          "Done?\n\n- item one\n- item two\n\nCode:\n```py\nprint(1). x\n```\nAfter the code. Tail")


def chunks(text: str, step: int) -> list:
    s = Sentences()
    out = []
    for i in range(0, len(text), step):
        out += s.feed(text[i: i + step])
    return out + s.flush()


@pytest.mark.parametrize("step", [1, 2, 7, 1000])
def test_sentences_do_not_depend_on_how_the_text_arrives(step):
    got = chunks(ANSWER, step)
    assert "".join(c.text for c in got) == ANSWER  # nothing lost or doubled
    said = [c.spoken for c in got if c.spoken]
    assert said == ["Sure.", "Dr. Smith said e.g. 3.14 is close to pi!", "Here is bold and a link.", "Done?",
                    "item one", "item two", "Code:", "After the code.", "Tail"]


def test_a_code_block_is_shown_but_never_spoken_even_unclosed():
    got = chunks("Look:\n```\nrm -rf x. y\n", 3)
    assert [c.spoken for c in got] == ["Look:", ""]
    assert "".join(c.text for c in got) == "Look:\n```\nrm -rf x. y\n"


def test_a_run_on_is_cut_at_a_comma_or_a_space():
    text = "word, " * 80
    got = chunks(text, 5)
    assert all(len(c.text) <= 300 for c in got) and len(got) >= 2
    assert all(c.text.endswith(", ") for c in got[:-1])


@pytest.mark.parametrize("step", [1, 7, 500])  # streamed char by char, in pieces, at once
def test_a_run_on_is_never_cut_inside_a_link_or_inline_code(step):
    link = "[the release notes of the spring version, with all the details](https://example.com/a/very/long/path)"
    code = "`pip install voicecli, then run it`"
    text = "words and more words " * 11 + link + " and then " + code + " and more words " * 12
    got = chunks(text, step)
    assert len(got) >= 2 and "".join(c.text for c in got) == text
    for c in got:  # each link and code span lies whole in one chunk
        assert c.text.count("[") == c.text.count("](") == c.text.count(")") and c.text.count("`") % 2 == 0, c.text
    spoken = " ".join(c.spoken for c in got)
    assert "https" not in spoken and "the release notes of the spring version, with all the details" in spoken


def test_a_sentence_waits_for_the_space_after_its_period():
    s = Sentences()
    assert s.feed("It costs 3.") == []  # "3." may be "3.14"
    assert [c.spoken for c in s.feed("14 dollars. Next")] == ["It costs 3.14 dollars."]


def test_speakable_drops_markdown_marks():
    assert speakable("## Title") == "Title"
    assert speakable("> quoted `code` and ~~gone~~ __under__") == "quoted code and gone under"
    assert speakable("| a | b |") == "a b"
    assert speakable("---") == ""


# -- what was heard -------------------------------------------------------------------------------

def _bytes(ms: int) -> int:
    return ms * BYTES_PER_MS


SENTENCES = [(0, "One two three. "), (_bytes(1000), "Four five six seven. "), (_bytes(3000), "Eight nine.")]


@pytest.mark.parametrize("played_ms, heard", [
    (0, ""),
    (999, "One two three."),  # 99.9 % of the first sentence: cut after its last word
    (900, "One two"),  # cut inside "three.": not heard whole
    (1000, "One two three. "),  # exactly to its end
    (2000, "One two three. Four five"),  # half of the second
    (3000, "One two three. Four five six seven. "),
    (3500, "One two three. Four five six seven. Eight nine."),  # the last one played to the end
])
def test_heard_counts_whole_sentences_then_a_share_of_the_cut_one(played_ms, heard):
    assert heard_sentences(SENTENCES, _bytes(played_ms), _bytes(3500)) == heard


def test_a_silent_sentence_is_heard_once_the_voice_passed_it():
    parts = [(0, "Look: "), (_bytes(500), "```x```\n"), (_bytes(500), "After.")]
    assert heard_sentences(parts, _bytes(600), _bytes(1500)) == "Look: ```x```\n"
    assert heard_sentences(parts, _bytes(100), _bytes(1500)) == ""


# -- the speech client against recorded and simulated replies -------------------------------------

async def _serve(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("POST", "/v1/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}/v1"


def _streamed(body: bytes, content_type: str, piece: int, seen: list | None = None):
    async def handler(request: web.Request) -> web.StreamResponse:
        if seen is not None:
            seen.append({"path": request.path, "form": dict(await request.post()) if request.content_type.startswith(
                "multipart/") else None, "json": await request.json() if request.content_type == "application/json"
                         else None})
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        # one chunked-encoding chunk per piece: the client's HTTP parser hands each on as a piece of its
        # own, however TCP groups them (no loop turn per piece: that doubled these tests' CPU)
        for i in range(0, len(body), piece):
            await resp.write(body[i: i + piece])
        await resp.write_eof()
        return resp
    return handler


def _run(handler, call):
    async def main():
        from voicecli.transport.http import close_shared_client

        runner, url = await _serve(handler)
        try:
            return await call(AudioClient(Connection(max_retries=0), url, "sk-test"))
        finally:
            await close_shared_client()
            await runner.cleanup()
    return asyncio.run(main())


async def _all(agen) -> list:
    return [x async for x in agen]


@pytest.fixture(scope="module")
def sim_replies() -> dict[str, bytes]:
    """The simulator's replies of the recorded kinds, by the recording's name: its speech for "Hi."
    (its shortest, 0.6 s) as pcm and as a WAV (given the 0xFFFFFFFF sizes of a streamed one), and
    its whisper-1 json and verbose_json transcripts of that speech."""
    handle = start_in_thread(SimConfig())
    try:
        wav = sim_speech(handle.base_url, "Hi.", wav=True)

        def transcript(fmt: str) -> bytes:
            reply = httpx.post(f"{handle.base_url}/audio/transcriptions", files={"file": ("s.wav", wav, "audio/wav")},
                               data={"model": "whisper-1", "response_format": fmt}, timeout=30)
            reply.raise_for_status()
            return reply.content

        streamed = wav[:4] + b"\xff\xff\xff\xff" + wav[8:40] + b"\xff\xff\xff\xff" + wav[44:]
        return {"stt_json_whisper_01.json": transcript("json"), "stt_verbose_json_whisper_01.json":
                transcript("verbose_json"), "tts_pcm_01.pcm": sim_speech(handle.base_url, "Hi."),
                "tts_wav_01.wav": streamed}
    finally:
        handle.stop()


@pytest.fixture(params=["recorded", "simulated"])
def reply(request):
    """reply(name) → the body of the recorded reply `name`, or of the simulator's reply of that kind."""
    if request.param == "recorded":
        return lambda name: recording(name).read_bytes()
    return request.getfixturevalue("sim_replies").__getitem__


@pytest.mark.parametrize("piece", [1, 7, 100000])
def test_streamed_transcript_from_a_recorded_reply(piece):
    body = recording("stt_sse_gpt4o_mini_01.sse").read_bytes()  # CRLF framing, 8 deltas, done, [DONE]
    seen: list = []
    events = _run(_streamed(body, "text/event-stream", piece, seen),
                  lambda c: _all(c.transcribe(b"RIFF....WAVE", model="gpt-4o-mini-transcribe", language="en")))
    done = [json.loads(line[5:]) for line in body.decode().splitlines() if '"transcript.text.done"' in line][0]
    assert events[-1] == Transcript("user", done["text"].strip(), final=True)
    assert "".join(e.text for e in events[:-1]) == done["text"]
    assert seen[0]["form"]["stream"] == "true" and seen[0]["form"]["language"] == "en"
    assert seen[0]["form"]["model"] == "gpt-4o-mini-transcribe"


@pytest.mark.parametrize("name", ["stt_json_whisper_01.json", "stt_verbose_json_whisper_01.json"])
def test_plain_json_transcripts(name, reply):
    body = reply(name)
    seen: list = []
    events = _run(_streamed(body, "application/json", 5, seen),
                  lambda c: _all(c.transcribe(b"RIFF....WAVE", model="whisper-1")))
    assert events == [Transcript("user", json.loads(body)["text"].strip(), final=True)]
    assert "stream" not in seen[0]["form"]  # whisper-1 does not stream


SRT = ("1\r\n00:00:00,000 --> 00:00:01,500\r\nWhat time\r\nis it?\r\n\r\n"
       "2\r\n00:00:01,500 --> 00:00:02,000\r\nThanks.\r\n")
VTT = ("WEBVTT - made by a local server\n\nNOTE a comment\n\nintro\n00:00.000 --> 00:01.500 align:start\n"
       "<v Speaker 1>What time <i>is</i> it?</v>\n\n00:00:01.500 --> 00:00:02.000\nThanks.\n")


@pytest.mark.parametrize("body, content_type", [(SRT, "text/plain"), (SRT, "application/x-subrip"),
                                                (VTT, "text/vtt; charset=utf-8")])
def test_subtitle_transcripts_give_the_words_without_cue_numbers_or_timestamps(body, content_type):
    events = _run(_streamed(body.encode(), content_type, 7), lambda c: _all(c.transcribe(b"RIFF....WAVE", model="x")))
    assert events == [Transcript("user", "What time is it? Thanks.", final=True)]


def test_plain_text_without_cue_timings_is_kept_as_it_is():
    from voicecli.wire.subtitles import subtitle_words

    assert subtitle_words("1\nWhat time is it?\n") == "1\nWhat time is it?\n"
    assert subtitle_words("a --> b") == "a --> b"


def test_the_simulators_srt_and_vtt_replies_are_read_as_words():
    from voicecli.wire.subtitles import subtitle_words

    handle = start_in_thread(SimConfig())
    try:
        wav = sim_speech(handle.base_url, "Hi.", wav=True)
        for fmt in ("srt", "vtt"):
            reply = httpx.post(f"{handle.base_url}/audio/transcriptions", files={"file": ("s.wav", wav, "audio/wav")},
                               data={"model": "whisper-1", "response_format": fmt}, timeout=30)
            assert subtitle_words(reply.text) == "Hi.", reply.text
    finally:
        handle.stop()


def test_a_streaming_request_answered_with_json_still_works():
    events = _run(_streamed(b'{"text": " hi there "}', "application/json", 3),
                  lambda c: _all(c.transcribe(b"x", model="gpt-4o-transcribe")))
    assert events == [Transcript("user", "hi there", final=True)]


def test_a_transcript_stream_cut_before_done_is_an_error():
    body = b'data: {"type":"transcript.text.delta","delta":"Hel"}\n\n'
    events = _run(_streamed(body, "text/event-stream", 4), lambda c: _all(c.transcribe(b"x", model="gpt-4o-transcribe")))
    assert isinstance(events[-1], Error) and "before transcript.text.done" in events[-1].message


@pytest.mark.parametrize("piece", [1, 3, 4095, 100000])
@pytest.mark.slow
def test_speech_pcm_arrives_whole(piece, reply):
    body = reply("tts_pcm_01.pcm")
    seen: list = []
    pieces = _run(_streamed(body, "audio/pcm", piece, seen),
                  lambda c: _all(c.speak("Hello, world!", model="gpt-4o-mini-tts", voice="alloy", speed=1.25)))
    assert all(isinstance(p, bytes) and len(p) % 2 == 0 for p in pieces)
    assert b"".join(pieces) == body
    assert seen[0]["json"] == {"model": "gpt-4o-mini-tts", "input": "Hello, world!", "voice": "alloy",
                               "response_format": "pcm", "speed": 1.25}


@pytest.mark.parametrize("piece", [1, 13, 100000])
@pytest.mark.slow
def test_a_streamed_wav_is_unwrapped_despite_its_0xffffffff_sizes(piece, reply):
    body = reply("tts_wav_01.wav")
    assert body[4:8] == b"\xff\xff\xff\xff"
    pieces = _run(_streamed(body, "audio/wav", piece), lambda c: _all(c.speak("x", model="m", voice="v")))
    assert b"".join(pieces) == body[44:]


def test_a_speech_error_reply_is_an_error_event():
    async def handler(request):
        return web.json_response({"error": {"message": "Invalid voice 'zzz'", "type": "invalid_request_error",
                                            "param": "voice", "code": None}}, status=400)
    pieces = _run(handler, lambda c: _all(c.speak("x", model="m", voice="zzz")))
    assert len(pieces) == 1 and isinstance(pieces[0], Error)
    assert pieces[0].status == 400 and "Invalid voice" in pieces[0].message


def test_a_200_that_is_not_audio_is_named():
    pieces = _run(_streamed(b"<html>proxy login</html>", "text/html", 100), lambda c: _all(c.speak("x", model="m", voice="v")))
    assert isinstance(pieces[0], Error) and "text/html" in pieces[0].message


def test_which_models_stream_their_transcripts():
    assert streams_transcript("gpt-4o-mini-transcribe") and streams_transcript("gpt-4o-transcribe")
    assert not streams_transcript("whisper-1") and not streams_transcript("Systran/faster-whisper-small")
    assert not streams_transcript("gpt-4o-transcribe-diarize")


# -- review findings: what was heard, formats, history, keys ---------------------------------------

def _turns_with(*deltas):
    from voicecli.audio.speaker import PlaybackBuffer
    from voicecli.events import ResponseStarted
    from voicecli.voice.turns import Turns

    buf = PlaybackBuffer()
    turns = Turns(buf)
    turns.feed(ResponseStarted("r1"))
    for event in deltas:
        turns.feed(event)
    return turns, buf


def test_an_answer_cut_before_its_first_audio_was_not_heard():
    from voicecli.events import AudioDelta, TextDelta, TurnEnd

    turns, _ = _turns_with(AudioDelta(b"", "i1", "r1", ""), TextDelta("Paris is the capital. It is big.", "i1"))
    assert turns.barge_in().cancel
    turns.feed(TurnEnd("cancelled", "r1", "interrupted"))
    [heard] = turns.finished()
    assert heard.text == "" and heard.interrupted


def test_sentences_played_to_their_last_sample_are_heard_whole():
    from voicecli.events import AudioDelta, TextDelta, TurnEnd

    s1, s2 = "Let me check. ", "One moment please."
    turns, buf = _turns_with(AudioDelta(b"", "i1", "r1", ""), TextDelta(s1 + s2, "i1"),
                             AudioDelta(b"\x01\x00" * 2405, "i1", "r1", s1),  # 100.2 ms: not whole ms
                             AudioDelta(b"\x01\x00" * 4805, "i1", "r1", s2))
    while buf.pending():
        buf.pull(480)
    turns.barge_in()  # the model was still writing when the user spoke
    turns.feed(TurnEnd("cancelled", "r1", "interrupted"))
    [heard] = turns.finished()
    assert heard.text == s1 + s2


def test_quitting_while_text_runs_ahead_of_the_voice_keeps_only_what_was_heard():
    from voicecli.events import AudioDelta, TextDelta

    s1, s2 = "First one. ", "Second one, not synthesised yet."
    turns, buf = _turns_with(AudioDelta(b"", "i1", "r1", ""), TextDelta(s1 + s2, "i1"),
                             AudioDelta(b"\x01\x00" * 4800, "i1", "r1", s1))
    while buf.pending():
        buf.pull(480)
    [heard] = turns.finished(force=True)
    assert heard.text == s1.strip() and heard.interrupted


def test_an_answer_whose_speech_failed_keeps_the_text_received():
    from voicecli.events import AudioDelta, TextDelta, TurnEnd

    s1, s2 = "First one. ", "Second one, never synthesised."
    turns, buf = _turns_with(AudioDelta(b"", "i1", "r1", ""), TextDelta(s1 + s2, "i1"),
                             AudioDelta(b"\x01\x00" * 4800, "i1", "r1", s1))
    turns.feed(TurnEnd("failed", "r1"))  # text-to-speech broke at the second sentence
    [heard] = turns.finished(force=True)  # talk ends with the failure, nothing of it played yet
    assert heard.text == (s1 + s2).strip() and not heard.interrupted  # shown and logged, not an empty line


@pytest.mark.parametrize("piece", [1, 5, 100000])
@pytest.mark.slow
def test_a_wav_of_another_rate_and_layout_is_converted(piece):
    import io
    import wave

    import numpy as np

    t = np.arange(22050) / 22050
    tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:  # Piper-style: 22.05 kHz, and stereo here
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(np.repeat(tone, 2).tobytes())
    body = buf.getvalue()
    body = body[:12] + b"LIST\x08\x00\x00\x00INFOdata" + body[12:]  # a chunk before fmt, holding "data"
    pcm = b"".join(_run(_streamed(body, "audio/wav", piece), lambda c: _all(c.speak("x", model="m", voice="v"))))
    assert abs(len(pcm) / 48 - 1000) < 2  # one second, now at 24 kHz mono
    x = np.frombuffer(pcm, dtype="<i2").astype(float)
    assert abs(np.sqrt(np.mean(x[2400:-2400] ** 2)) - 8000 / np.sqrt(2)) < 300  # the tone, not noise


def test_compressed_speech_is_an_error_not_noise():
    pieces = _run(_streamed(b"ID3\x03" + b"\xff" * 4000, "audio/mpeg", 512),
                  lambda c: _all(c.speak("x", model="m", voice="v")))
    assert len(pieces) == 1 and isinstance(pieces[0], Error) and "audio/mpeg, not PCM" in pieces[0].message


def test_an_unheard_answer_goes_with_its_reasoning():
    from voicecli.conversation import Conversation
    from voicecli.items import Message, OpaqueItem
    from voicecli.profiles import Profile

    conv = Conversation(Profile("t", "builtin", None), None)
    conv.history = [Message("user", "hi"), OpaqueItem("responses", {"type": "reasoning", "id": "rs_1"}),
                    Message("assistant", "Hello there.")]
    conv.heard("Hello there.", "")
    assert conv.history == [Message("user", "hi")]  # no reasoning item left without its output
    conv.history += [OpaqueItem("responses", {"type": "reasoning", "id": "rs_2"}), Message("assistant", "One. Two.")]
    conv.heard("One. Two.", "One.")
    assert conv.history[-1] == Message("assistant", "One.", interrupted=True) and len(conv.history) == 3


def test_the_text_models_key_never_goes_to_another_speech_server(monkeypatch):
    from voicecli.profiles import Profile
    from voicecli.voice.cascade import CascadeSession

    monkeypatch.setenv("OPENAI_API_KEY", "sk-text-model")
    monkeypatch.setenv("SPEECH_KEY", "sk-speech")
    session = CascadeSession.__new__(CascadeSession)
    session.profile = Profile("t", "builtin", None)
    assert session._key(None, None) == "sk-text-model"  # the same server
    assert session._key(None, "https://api.openai.com/v1/") == "sk-text-model"
    assert session._key(None, "http://stt.example.net:8000/v1") is None  # another host: no key unless named
    assert session._key("SPEECH_KEY", "http://stt.example.net:8000/v1") == "sk-speech"


def test_headings_no_and_snake_case():
    got = chunks("## Weather today\nIt is sunny. The answer is no. I checked my_var_name and _this_ too.", 1)
    assert [c.spoken for c in got] == ["Weather today", "It is sunny.", "The answer is no.",
                                       "I checked my_var_name and this too."]


def test_the_first_chunk_may_end_at_a_clause_once_it_has_enough_words():
    from voicecli.voice.sentences import Sentences

    def chunks(text, words):
        s, out = Sentences(first_clause_words=words), []
        for ch in text:  # streamed a character at a time
            out += s.feed(ch)
        return [c.text for c in out + s.flush()]

    text = "Well, the capital of France, as you know, is Paris. It is big, old and lovely."
    # "Well," has too few words; the first clause after four goes at once; later chunks are sentences
    assert chunks(text, 4) == ["Well, the capital of France, ", "as you know, is Paris. ", "It is big, old and lovely."]
    assert chunks(text, 0) == ["Well, the capital of France, as you know, is Paris. ", "It is big, old and lovely."]
    assert chunks("You said: the [link, with a comma](http://x) is here. ", 2) == ["You said: ",
                                                                                  "the [link, with a comma](http://x) is here. "]
    assert chunks("Count to 1,000 and then, stop.", 3) == ["Count to 1,000 and then, ", "stop."]
