"""The simulator's /v1/audio endpoints through the official SDK, plus its waveform and VAD helpers.

openai (and pydantic) are imported inside the functions that use them: importing openai at the top
would cost each xdist worker ~0.8 s of CPU at collection."""

from __future__ import annotations

import base64
import io
import json
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest

from clihelp import cli_env, sim_speech
from shared_data import recording
from voicecli.sim import speech, vad
from voicecli.sim.config import SimConfig
from voicecli.sim.server import start_in_thread

if TYPE_CHECKING:
    from openai import OpenAI
    from pydantic import BaseModel

KEY = "sk-sim-test"


@pytest.fixture(scope="module")
def sim():
    handle = start_in_thread(SimConfig(api_key=KEY))
    yield handle
    handle.stop()


@pytest.fixture
def api(sim) -> OpenAI:
    from openai import OpenAI

    return OpenAI(base_url=sim.base_url, api_key=KEY, max_retries=0)


def no_extras(model: BaseModel) -> None:
    from pydantic import BaseModel

    assert not model.model_extra, model.model_extra
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            no_extras(value)


def sse_events(body: str) -> list[dict]:
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ") and line != "data: [DONE]"]


# -- /v1/audio/speech ------------------------------------------------------------------------------


def test_speech_pcm_is_the_synthesised_waveform(api):
    resp = api.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="Hello there, friend.",
                                   response_format="pcm")  # fmt: skip
    pcm = resp.read()
    assert pcm == speech.synthesize("Hello there, friend.")
    assert 0.6 < speech.pcm_ms(pcm) / 1000 < 4  # roughly proportional to the text
    assert speech.rms(pcm) > 0.02
    assert resp.response.headers["x-request-id"].startswith("req_")


def test_speech_wav_and_streamed_chunks(api):
    wav = api.audio.speech.create(model="tts-1", voice="marin", input="Testing one two.", response_format="wav").read()
    assert wav[:4] == b"RIFF" and speech.read_wav(wav) == speech.synthesize("Testing one two.")
    with api.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="alloy", input="A somewhat longer sentence to stream in pieces.",
        response_format="pcm",
    ) as resp:  # fmt: skip
        chunks = list(resp.iter_bytes(4800))
    assert len(chunks) > 3 and b"".join(chunks) == speech.synthesize("A somewhat longer sentence to stream in pieces.")


def test_speech_sse_stream(sim):
    body = {"model": "gpt-4o-mini-tts", "voice": "alloy", "input": "Hi there.", "response_format": "pcm",
            "stream_format": "sse"}  # fmt: skip
    r = httpx.post(f"{sim.base_url}/audio/speech", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert {e["type"] for e in events[:-1]} == {"speech.audio.delta"}
    assert events[-1]["type"] == "speech.audio.done" and events[-1]["usage"]["total_tokens"] > 0
    assert b"".join(base64.b64decode(e["audio"]) for e in events[:-1]) == speech.synthesize("Hi there.")


def test_speech_rejects_formats_the_sim_cannot_make(api):
    import openai

    with pytest.raises(openai.BadRequestError) as info:
        api.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="hi")  # mp3 by default
    err = info.value.body
    assert "pcm" in err["message"] and "wav" in err["message"] and err["param"] == "response_format"
    with pytest.raises(openai.BadRequestError):
        api.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="", response_format="pcm")


# -- /v1/audio/transcriptions --------------------------------------------------------------------


def _wav(seconds: float) -> bytes:
    return speech.wav_bytes(speech.silence(0.4) + speech.speech_like(seconds) + speech.silence(0.4))


def test_transcription_json_text_and_usage(api, sim):
    from openai.types.audio import Transcription

    result = api.audio.transcriptions.create(model="gpt-4o-transcribe", file=("turn.wav", _wav(1.5), "audio/wav"))
    assert isinstance(result, Transcription)
    no_extras(result)
    assert result.text == "[speech 1.50 s]"
    assert result.usage.type == "tokens" and result.usage.input_tokens > 0
    text = api.audio.transcriptions.create(model="whisper-1", file=("turn.wav", _wav(0.5)), response_format="text")
    assert text.strip() == "[speech 0.50 s]"
    silent = api.audio.transcriptions.create(model="gpt-4o-mini-transcribe", file=("s.wav", speech.wav_bytes(speech.silence(1))))
    assert silent.text == ""
    logged = [e for e in sim.log if e.get("kind") == "audio"]
    assert logged[0]["form"]["model"] == "gpt-4o-transcribe" and logged[0]["file"]["filename"] == "turn.wav"


def test_transcription_stream(api):
    from openai.types.audio import TranscriptionTextDeltaEvent, TranscriptionTextDoneEvent

    stream = api.audio.transcriptions.create(model="gpt-4o-mini-transcribe", file=("t.wav", _wav(0.8)), stream=True)
    events = list(stream)
    assert all(isinstance(e, TranscriptionTextDeltaEvent) for e in events[:-1])
    assert isinstance(events[-1], TranscriptionTextDoneEvent)
    for e in events:
        no_extras(e)
    assert "".join(e.delta for e in events[:-1]) == events[-1].text == "[speech 0.80 s]"


def test_transcription_whisper_ignores_stream_and_other_formats(sim):
    headers = {"Authorization": f"Bearer {KEY}"}
    files = {"file": ("t.wav", _wav(0.6), "audio/wav")}
    r = httpx.post(f"{sim.base_url}/audio/transcriptions", headers=headers, files=files,
                   data={"model": "whisper-1", "stream": "true"})  # fmt: skip
    assert r.json()["text"] == "[speech 0.60 s]" and r.json()["usage"]["type"] == "duration"
    r = httpx.post(f"{sim.base_url}/audio/transcriptions", headers=headers, files=files,
                   data={"model": "whisper-1", "response_format": "srt"})  # fmt: skip
    assert r.text.startswith("1\n00:00:00,000 --> 00:00:01,") and "[speech 0.60 s]" in r.text
    r = httpx.post(f"{sim.base_url}/audio/transcriptions", headers=headers, files={"file": ("a.mp3", b"ID3xxxx")},
                   data={"model": "gpt-4o-transcribe"})  # fmt: skip
    assert r.json()["text"] == "[audio 7 bytes]"
    r = httpx.post(f"{sim.base_url}/audio/transcriptions", headers=headers, files=files, data={})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"


# -- waveforms and VAD ---------------------------------------------------------------------------


def _dominant_hz(pcm: bytes) -> float:
    x = speech.samples(pcm)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / speech.RATE)[spectrum.argmax()])


def test_tone_voice_is_detectable_and_proportional(monkeypatch):
    monkeypatch.setenv("VOICECLI_SIM_SPEECH", "tones")
    speech.synthesize.cache_clear()
    try:
        short, long = speech.synthesize("Hi."), speech.synthesize("This is a considerably longer reply, spoken slowly.")
        assert abs(_dominant_hz(long) - speech.TONE_HZ) < 5
        assert speech.pcm_ms(long) > 4 * speech.pcm_ms(short)
        assert speech.synthesize("Hi.") == speech.tone_speech("Hi.")  # deterministic
    finally:
        speech.synthesize.cache_clear()


@pytest.mark.skipif(not speech.espeak_available(), reason="espeak-ng not installed")
def test_espeak_voice_when_available(monkeypatch):
    monkeypatch.setenv("VOICECLI_SIM_SPEECH", "espeak")
    speech.synthesize.cache_clear()
    try:
        pcm = speech.synthesize("Hello from the simulator.")
        assert pcm != speech.tone_speech("Hello from the simulator.") and speech.rms(pcm) > 0.02
    finally:
        speech.synthesize.cache_clear()


def test_wav_round_trip_and_resampling(tmp_path):
    pcm = speech.tone(1000, 0.5)
    path = tmp_path / "t.wav"
    speech.write_wav(path, pcm)
    assert speech.read_wav(path) == pcm
    buf = io.BytesIO()
    speech.write_wav(buf, speech.tone(1000, 0.5, rate=16000), rate=16000)  # read back at 24 kHz
    converted = speech.read_wav(buf.getvalue())
    assert abs(speech.pcm_ms(converted) - 500) < 2 and abs(_dominant_hz(converted) - 1000) < 5


def test_vad_timing_and_threshold():
    pcm = speech.silence(1.0) + speech.speech_like(1.0) + speech.silence(1.0)
    v = vad.EnergyVad(threshold=0.5, prefix_padding_ms=300, silence_duration_ms=500)
    events = [e for i in range(0, len(pcm), 960) for e in v.feed(pcm[i : i + 960])]  # 20 ms pieces
    assert [e.kind for e in events] == ["start", "stop"]
    assert abs(events[0].speech_ms - 1000) <= 20 and events[0].audio_ms == events[0].speech_ms - 300
    assert abs(events[1].audio_ms - 2500) <= 20 and abs(events[1].speech_ms - 2000) <= 20
    quiet = speech.silence(0.5) + speech.speech_like(1.0, amplitude=0.003) + speech.silence(0.5)
    assert vad.EnergyVad(threshold=0.5).feed(quiet) == []  # below -40 dBFS is not speech
    assert vad.EnergyVad(threshold=0.0).feed(quiet)[0].kind == "start"
    assert vad.describe_speech(speech.silence(1)) == ""


# -- exact transcripts of its own speech (the phrasebook) --------------------------------------------

SAID = "Please book a table for two at seven tonight."
OTHER = "Please cook a meal for four at eleven today."  # about as long


def _upload(pcm: bytes, rate: int = 16000) -> bytes:
    """What a cascade client sends: its recording (silence around the speech) as a WAV, here at 16 kHz."""
    x = speech.samples(speech.silence(0.3) + pcm + speech.silence(0.5))
    return speech.wav_bytes(speech.to_int16(speech.resample(x, speech.RATE, rate)), rate=rate)


needs_espeak = pytest.mark.skipif(not speech.espeak_available(), reason="espeak-ng not installed")


@needs_espeak
def test_its_own_speech_transcribes_to_the_exact_words(api, sim):
    said = sim_speech(sim.base_url, SAID, api_key=KEY)  # the user's words, made by the simulator
    other = sim_speech(sim.base_url, OTHER, api_key=KEY)
    result = api.audio.transcriptions.create(model="gpt-4o-transcribe", file=("turn.wav", _upload(said), "audio/wav"))
    assert result.text == SAID
    assert api.audio.transcriptions.create(model="whisper-1", file=("t.wav", _upload(other)), response_format="text").strip() == OTHER
    verbose = api.audio.transcriptions.create(model="whisper-1", file=("t.wav", _upload(said, 24000)), response_format="verbose_json")
    assert verbose.text == SAID and verbose.segments[0].text == f" {SAID}"
    assert set(verbose.model_extra) == {"task"}  # the SDK does not model it; the real API sends it (recorded)
    events = list(api.audio.transcriptions.create(model="gpt-4o-mini-transcribe", file=("t.wav", _upload(other)), stream=True))
    assert "".join(e.delta for e in events[:-1]) == events[-1].text == OTHER
    unknown = speech.speech_like(1.2)  # speech it never said still reads as a description
    assert api.audio.transcriptions.create(model="gpt-4o-transcribe", file=("t.wav", _upload(unknown))).text.startswith("[speech ")


@needs_espeak
def test_phrases_given_at_start_are_known_without_a_speech_request(make_sim):
    from openai import OpenAI

    sim = make_sim(phrases=(SAID,))
    client = OpenAI(base_url=sim.base_url, api_key="k", max_retries=0)
    heard = client.audio.transcriptions.create(model="gpt-4o-transcribe", file=("t.wav", _upload(speech.synthesize(SAID))))
    assert heard.text == SAID


@needs_espeak
@pytest.mark.slow
def test_sim_cli_phrase_option(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "voicecli", "sim", "--port", "0", "--phrase", SAID, "--phrase", OTHER],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(tmp_path))  # fmt: skip
    try:
        url = proc.stdout.readline().strip()
        r = httpx.post(f"{url}/audio/transcriptions", files={"file": ("t.wav", _upload(speech.synthesize(OTHER)))},
                       data={"model": "gpt-4o-transcribe"}, timeout=30)  # fmt: skip
        assert r.json()["text"] == OTHER
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    assert proc.returncode == 0


# -- the shapes of the recorded real traffic ---------------------------------------------------------


def _keys(obj):
    """The nested key structure of a JSON value (what a client relies on), values left out."""
    if isinstance(obj, dict):
        return {k: _keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_keys(obj[0])] if obj else []
    return type(obj).__name__ if not isinstance(obj, (int, float)) or isinstance(obj, bool) else "number"


def test_transcription_shapes_match_recorded_traffic(sim):
    headers = {"Authorization": f"Bearer {KEY}"}
    files = {"file": ("t.wav", _wav(1.0), "audio/wav")}
    recorded = recording("stt_sse_gpt4o_mini_01.sse").read_text()
    r = httpx.post(f"{sim.base_url}/audio/transcriptions", headers=headers, files=files,
                   data={"model": "gpt-4o-mini-transcribe", "stream": "true"})  # fmt: skip
    assert r.headers["content-type"] == "text/event-stream; charset=utf-8"  # as recorded
    ours, real = [line for line in r.text.splitlines() if line], [line for line in recorded.splitlines() if line]
    assert ours[-1] == real[-1] == "data: [DONE]"
    ours_events, real_events = sse_events(r.text[: r.text.rindex("data: [DONE]")]), sse_events(recorded[: recorded.rindex("data: [DONE]")])
    assert {e["type"] for e in ours_events[:-1]} == {e["type"] for e in real_events[:-1]} == {"transcript.text.delta"}
    assert all(_keys(e) == _keys(real_events[0]) for e in ours_events[:-1])
    assert set(ours_events[-1]) == set(real_events[-1]) and set(ours_events[-1]["usage"]) == set(real_events[-1]["usage"])


def test_json_transcription_shapes_match_recorded_traffic(sim):
    headers = {"Authorization": f"Bearer {KEY}"}
    files = {"file": ("t.wav", _wav(1.0), "audio/wav")}
    for name in ("stt_json_whisper_01", "stt_verbose_json_whisper_01"):
        real = json.loads(recording(f"{name}.json").read_text())
        fmt = "verbose_json" if "verbose" in name else "json"
        ours = httpx.post(f"{sim.base_url}/audio/transcriptions", headers=headers, files=files,
                          data={"model": "whisper-1", "response_format": fmt}).json()  # fmt: skip
        assert _keys(ours) == _keys(real), name


def test_speech_shapes_match_recorded_traffic(sim):
    headers = {"Authorization": f"Bearer {KEY}"}
    for name, ctype in (("tts_pcm_01", "audio/pcm"), ("tts_wav_01", "audio/wav")):
        request = json.loads(recording(f"{name}.request.json").read_text())
        meta = json.loads(recording(f"{name}.meta.json").read_text())
        r = httpx.post(f"{sim.base_url}/audio/speech", headers=headers, json=request)
        assert r.headers["content-type"] == meta["response"]["headers"]["Content-Type"] == ctype
        assert r.headers["transfer-encoding"] == meta["response"]["headers"]["Transfer-Encoding"] == "chunked"
        real = recording(f"{name}.{name[4:7]}").read_bytes()
        if ctype == "audio/wav":  # same format fields (the real one streams with 0xFFFFFFFF sizes)
            assert r.content[:4] == real[:4] and r.content[8:36] == real[8:36] and r.content[36:40] == real[36:40]
            assert speech.read_wav(real)[:4800] == real[44:4844]  # our reader copes with the real header
        else:
            assert len(r.content) % 2 == 0 and 0.5 < speech.pcm_ms(r.content) / speech.pcm_ms(real) < 2


# -- faults and latencies (x-sim-fault, sim config) --------------------------------------------------


def _post_stt(sim, fault: str | None = None, stream: bool = True, model: str = "gpt-4o-mini-transcribe", **kw):
    headers = {"Authorization": f"Bearer {KEY}", **({"x-sim-fault": fault} if fault else {})}
    data = {"model": model, **({"stream": "true"} if stream else {})}
    return httpx.post(f"{sim.base_url}/audio/transcriptions", headers=headers, files={"file": ("t.wav", _wav(1.0))},
                      data=data, timeout=30, **kw)  # fmt: skip


def _post_tts(sim, fault: str | None = None, **body):
    headers = {"Authorization": f"Bearer {KEY}", **({"x-sim-fault": fault} if fault else {})}
    request = {"model": "gpt-4o-mini-tts", "voice": "alloy", "input": "One two three four five six seven.",
               "response_format": "pcm", **body}  # fmt: skip
    return httpx.post(f"{sim.base_url}/audio/speech", headers=headers, json=request, timeout=30)


def _until_cut(response_cm) -> tuple[bytes, Exception | None]:
    """Read a streamed body until it ends or breaks: (what arrived, the error or None)."""
    got = bytearray()
    with response_cm as r:
        try:
            for chunk in r.iter_raw():
                got += chunk
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            return bytes(got), exc
    return bytes(got), None


@pytest.mark.parametrize("endpoint", ["stt", "tts"])
def test_refusing_faults_on_both_audio_endpoints(sim, endpoint):
    post = _post_stt if endpoint == "stt" else _post_tts
    r = post(sim, f"status=503; retry_after=1; times=1; code=x{endpoint}")
    assert r.status_code == 503 and r.headers["retry-after"] == "1" and r.json()["error"]["type"] == "server_error"
    assert post(sim, f"status=503; retry_after=1; times=1; code=x{endpoint}").status_code == 200  # the retry passes
    r = post(sim, "quota")
    assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"
    r = post(sim, "status=429; retry_after_ms=250")
    assert r.status_code == 429 and r.headers["retry-after-ms"] == "250"


@pytest.mark.slow
def test_transcription_stream_faults(sim, api):
    import openai
    from openai import OpenAI

    full = sse_events(_post_stt(sim).text.replace("data: [DONE]", ""))
    assert len(full) >= 3
    body, err = _until_cut(httpx.stream("POST", f"{sim.base_url}/audio/transcriptions", timeout=30,
                                        headers={"Authorization": f"Bearer {KEY}", "x-sim-fault": "drop=2"},
                                        files={"file": ("t.wav", _wav(1.0))}, data={"model": "gpt-4o-mini-transcribe", "stream": "true"}))  # fmt: skip
    assert len(sse_events(body.decode())) == 2 and "[DONE]" not in body.decode()
    events = sse_events(_post_stt(sim, "error=flat; after=1").text)
    assert [e["type"] for e in events] == ["transcript.text.delta", "error"] and events[1]["code"] == "server_error"
    events = sse_events(_post_stt(sim, "error=nested; after=1").text)
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "rate_limit_exceeded"
    with pytest.raises(openai.APIError, match="Rate limit reached"):  # the SDK raises the nested shape
        list(OpenAI(base_url=sim.base_url, api_key=KEY, max_retries=0, default_headers={"x-sim-fault": "error=nested"})
             .audio.transcriptions.create(model="gpt-4o-mini-transcribe", file=("t.wav", _wav(1.0)), stream=True))  # fmt: skip
    text = _post_stt(sim, "malformed=1").text
    frames = [f for f in text.split("\n\n") if f]
    assert frames[1].startswith("data: {") and frames[1].endswith(":")  # cut-off JSON, then the stream goes on
    assert sse_events("\n".join(frames[:1] + frames[2:]))[-1]["type"] == "transcript.text.done"
    events = sse_events(_post_stt(sim, "unknown=1").text)
    assert events[1]["type"] == "transcript.sim_unknown" and events[-1]["type"] == "transcript.text.done"
    events = sse_events(_post_stt(sim, "stall=0.2; after=1; delta_delay=0.01").text)
    assert events[-1]["type"] == "transcript.text.done"  # only late (timing is in the latency test)
    events = sse_events(_post_stt(sim, "failed").text)
    assert events[-1]["type"] == "error" and {e["type"] for e in events[:-1]} == {"transcript.text.delta"}
    body, err = _until_cut(httpx.stream("POST", f"{sim.base_url}/audio/transcriptions", timeout=30,
                                        headers={"Authorization": f"Bearer {KEY}", "x-sim-fault": "close=1011; after=1"},
                                        files={"file": ("t.wav", _wav(1.0))}, data={"model": "gpt-4o-mini-transcribe", "stream": "true"}))  # fmt: skip
    assert err is not None and len(sse_events(body.decode())) == 1  # an HTTP stream has no close code: cut


def test_one_piece_transcription_faults(sim):
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        _post_stt(sim, "drop=0", stream=False)
    r = _post_stt(sim, "error=flat", stream=False)
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
    r = _post_stt(sim, "malformed=0", stream=False)
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):  # whisper-1 ignores stream: one piece, cut
        _post_stt(sim, "drop=0", stream=True, model="whisper-1")
    r = _post_stt(sim, "unknown=1; failed", stream=False, model="whisper-1")
    assert r.status_code == 500  # failed: an error answer; unknown does nothing here


def test_speech_stream_faults(sim):
    whole = _post_tts(sim).content
    piece = 4800
    body, err = _until_cut(httpx.stream("POST", f"{sim.base_url}/audio/speech", timeout=30,
                                        headers={"Authorization": f"Bearer {KEY}", "x-sim-fault": "drop=3"},
                                        json={"model": "gpt-4o-mini-tts", "voice": "alloy", "response_format": "pcm",
                                              "input": "One two three four five six seven."}))  # fmt: skip
    assert err is not None and body == whole[: 3 * piece]  # cut after three 100 ms pieces, no clean end
    body, err = _until_cut(httpx.stream("POST", f"{sim.base_url}/audio/speech", timeout=30,
                                        headers={"Authorization": f"Bearer {KEY}", "x-sim-fault": "error=flat; after=2"},
                                        json={"model": "gpt-4o-mini-tts", "voice": "alloy", "response_format": "pcm",
                                              "input": "One two three four five six seven."}))  # fmt: skip
    assert err is not None and body == whole[: 2 * piece]  # raw audio cannot carry an error event: cut
    assert _post_tts(sim, "malformed=1; unknown=2").content == whole  # nothing to break in raw audio
    events = sse_events(_post_tts(sim, "error=nested; after=2", stream_format="sse").text)
    assert [e["type"] for e in events] == ["speech.audio.delta"] * 2 + ["error"]
    events = sse_events(_post_tts(sim, "failed", stream_format="sse").text)
    assert events[-1]["type"] == "error" and len(events) == len(whole) // piece + (len(whole) % piece > 0) + 1
    body, err = _until_cut(httpx.stream("POST", f"{sim.base_url}/audio/speech", timeout=30,
                                        headers={"Authorization": f"Bearer {KEY}", "x-sim-fault": "failed"},
                                        json={"model": "gpt-4o-mini-tts", "voice": "alloy", "response_format": "pcm",
                                              "input": "One two three four five six seven."}))  # fmt: skip
    assert err is not None and whole.startswith(body) and len(body) < len(whole)  # the last piece never comes
    events = sse_events(_post_tts(sim, "unknown=1", stream_format="sse").text)
    assert events[1]["type"] == "speech.sim_unknown" and events[-1]["type"] == "speech.audio.done"


def _first_byte_after(send) -> float:
    start = time.monotonic()
    with send() as r:
        next(r.iter_raw())
    return time.monotonic() - start


@pytest.mark.slow
def test_latencies_from_the_fault_header_and_the_config(make_sim):
    slow = make_sim(latency=0.3)
    fast = make_sim()
    files = {"file": ("t.wav", _wav(1.0))}

    def stt(sim, fault=""):
        return httpx.stream("POST", f"{sim.base_url}/audio/transcriptions", files=files, timeout=30,
                            data={"model": "gpt-4o-mini-transcribe", "stream": "true"}, headers={"x-sim-fault": fault})  # fmt: skip

    def tts(sim, fault=""):
        return httpx.stream("POST", f"{sim.base_url}/audio/speech", headers={"x-sim-fault": fault}, timeout=30,
                            json={"model": "gpt-4o-mini-tts", "voice": "a", "input": "Hello there.", "response_format": "pcm"})  # fmt: skip

    # lower bounds only: the first byte never leaves before the configured latency
    assert _first_byte_after(lambda: stt(slow)) >= 0.3
    assert _first_byte_after(lambda: tts(slow)) >= 0.3
    assert _first_byte_after(lambda: stt(fast, "latency=0.25")) >= 0.25
    assert _first_byte_after(lambda: tts(fast, "latency=0.25")) >= 0.25
    start = time.monotonic()
    with tts(fast, "delta_delay=0.05") as r:
        pieces = sum(1 for _ in r.iter_raw())
    assert pieces >= 3 and time.monotonic() - start >= 0.05 * 2
    start = time.monotonic()
    assert sse_events(_post_stt(fast, "stall=0.3; after=1").text)[-1]["type"] == "transcript.text.done"
    assert time.monotonic() - start >= 0.3
    start = time.monotonic()
    events = sse_events(_post_stt(fast, "delta_delay=0.05").text)
    assert time.monotonic() - start >= 0.05 * (len(events) - 1)
