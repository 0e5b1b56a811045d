"""The PulseAudio null-sink stack for audio tests and benchmarks (driving tests/audio/virtual-audio.sh).

    stack = VirtualAudio.start(tmp_dir)   # a private daemon; stack.env for the programs under test
    mon = stack.monitor()                 # records the virtual speaker from now on (parec)
    stack.play(wav)                       # into the virtual microphone (paplay), returns when done
    mon.wait_for_sound(10); mon.stop()
    stack.stop()
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parent / "virtual-audio.sh"
RATE = 24000


def missing_reason() -> str | None:
    """Why the stack cannot run here, or None."""
    for tool in ("pulseaudio", "pactl", "paplay", "parec"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (bash scripts/install.sh --test installs the audio test stack)"
    return None


def _can_run_realtime() -> bool:
    """Whether this user may give a process real-time scheduling (root, or an RLIMIT_RTPRIO)."""
    allowed = []

    def probe() -> None:  # on a thread of its own: the policy is per thread, and this one ends
        try:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
            allowed.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return bool(allowed)


# Talk under test runs at real-time priority where it may, as a desktop's sound server gives a client's
# audio thread (PipeWire through RTKit; this stack's PulseAudio runs its own I/O threads so already):
# what the audio tests judge is talk's real-time work, not how busy the rest of the suite keeps the
# CPUs. Starved, talk lets its own echo through (issue 27: the leaking-speaker test failed 2 of 4 at
# load 10-15 without it, 0 of 4 with it; among whole suites it still failed, so it runs alone anyway).
# Where it may not, the tests that need it run alone (conftest).
REALTIME = _can_run_realtime()


class VirtualAudio:
    def __init__(self, directory: Path):
        self.dir = directory
        runtime = directory / "runtime"
        self.env = {"XDG_RUNTIME_DIR": str(runtime), "PULSE_SERVER": f"unix:{runtime}/pulse/native"}

    @classmethod
    def start(cls, directory: Path) -> "VirtualAudio":
        stack = cls(directory)
        directory.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["bash", str(SCRIPT), "start", str(directory)], capture_output=True, text=True,
                              timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"virtual-audio.sh start failed: {proc.stderr.strip()}")
        return stack

    def stop(self) -> None:
        subprocess.run(["bash", str(SCRIPT), "stop", str(self.dir)], capture_output=True, timeout=30)

    def full_env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **self.env, **extra}

    def play(self, wav: Path) -> float:
        """Play a WAV into the virtual microphone; returns the wall time playback started."""
        start = time.time()
        subprocess.run(["paplay", "-d", "virtual_mic_feed", str(wav)], env=self.full_env(), check=True, timeout=120)
        return start

    def play_async(self, wav: Path) -> tuple[subprocess.Popen, float]:
        start = time.time()
        return subprocess.Popen(["paplay", "-d", "virtual_mic_feed", str(wav)], env=self.full_env()), start

    def monitor(self) -> "Monitor":
        return Monitor(self.full_env())


class Monitor:
    """Records the virtual speaker (its monitor source) in a background thread."""

    def __init__(self, env: dict[str, str], source: str = "virtual_speaker.monitor"):
        self.proc = subprocess.Popen(
            ["parec", "-d", source, f"--rate={RATE}", "--channels=1", "--format=s16le", "--raw",
             "--latency-msec=10"], stdout=subprocess.PIPE, env=env)
        self.started = time.time()
        self.data = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            chunk = self.proc.stdout.read1(4800) if hasattr(self.proc.stdout, "read1") else self.proc.stdout.read(4800)
            if not chunk:
                return
            with self._lock:
                self.data += chunk

    def samples(self) -> np.ndarray:
        with self._lock:
            raw = bytes(self.data[: len(self.data) // 2 * 2])
        return np.frombuffer(raw, dtype="<i2")

    def sound_ms(self, level: int = 200) -> int:
        """Milliseconds of 10 ms frames louder than `level` (RMS)."""
        x = self.samples()
        n = x.size // 240
        if not n:
            return 0
        frames = x[: n * 240].reshape(n, 240).astype(np.float64)
        return int(np.count_nonzero(np.sqrt((frames ** 2).mean(axis=1)) > level) * 10)

    def wait_for_sound(self, timeout: float, ms: int = 200) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.sound_ms() >= ms:
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> np.ndarray:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._thread.join(5)
        return self.samples()


def speech_wav(path: Path, text: str, *, lead_s: float = 0.3, tail_s: float = 0.8) -> Path:
    """A spoken WAV (espeak-ng, 22 050 Hz mono) padded with silence, for the virtual microphone."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, timeout=30)
    # -D: no dither, so the padding stays exact zeros (benchmarks time the first non-zero sample)
    subprocess.run(["sox", "-D", str(raw), "-r", str(RATE), "-c", "1", str(path), "pad", str(lead_s), str(tail_s)],
                   check=True, timeout=30)
    raw.unlink()
    return path


def find_exact(haystack: np.ndarray, needle: np.ndarray) -> int | None:
    """Where `needle` (≥ 480 samples) first occurs bit-exactly in `haystack`, or None."""
    probe = needle[:480]
    if probe.size < 480 or haystack.size < probe.size:
        return None
    view = np.lib.stride_tricks.sliding_window_view(haystack, probe.size)
    candidates = np.flatnonzero(view[:, 0] == probe[0])
    for start in candidates:
        if np.array_equal(haystack[start:start + probe.size], probe):
            return int(start)
    return None


def locate(haystack: np.ndarray, needle: np.ndarray, within: int) -> tuple[int, int] | None:
    """Where `needle` first occurs bit-exactly, probing from its start and then from every 20 ms of its
    first `within` samples: an underrun on a busy machine may have put a gap into its first frames.
    Returns (index in haystack, offset in needle) of the first probe found, or None."""
    for offset in range(0, max(1, within), 480):
        start = find_exact(haystack, needle[offset:])
        if start is not None:
            return start, offset
    return None


def matching_prefix(haystack: np.ndarray, start: int, needle: np.ndarray) -> int:
    """How many samples of `needle` appear unchanged at `haystack[start:]`."""
    n = min(needle.size, haystack.size - start)
    diff = np.flatnonzero(haystack[start:start + n] != needle[:n])
    return int(diff[0]) if diff.size else n
