"""The simulator's /v1/audio endpoints through the official SDK, plus its waveform and VAD helpers."""

from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import openai
import pytest
from openai import OpenAI
from openai.types.audio import Transcription, TranscriptionTextDeltaEvent, TranscriptionTextDoneEvent
from pydantic import BaseModel

from voicecli.sim import speech, vad
from voicecli.sim.config import SimConfig
from voicecli.sim.server import start_in_thread

KEY = "sk-sim-test"


@pytest.fixture(scope="module")
def sim():
    handle = start_in_thread(SimConfig(api_key=KEY))
    yield handle
    handle.stop()


@pytest.fixture
def api(sim) -> OpenAI:
    return OpenAI(base_url=sim.base_url, api_key=KEY, max_retries=0)


def no_extras(model: BaseModel) -> None:
    assert not model.model_extra, model.model_extra
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            no_extras(value)


def sse_events(body: str) -> list[dict]:
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]


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
