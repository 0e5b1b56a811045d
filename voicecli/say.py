"""`voicecli say`: text → speech, shaped like a Unix filter, and `infer --speak`.

    TEXT… or stdin (as it streams) ──► Sentences ──► /audio/speech (pcm, TTS_AHEAD at once) ──► speaker
                                                                                              | -O FILE.wav | -O - (WAV on stdout)

The cascade's pieces do the work: `voice.sentences.Sentences` cuts the text (markdown stripped, code
blocks silent), `voice.cascade.Speech` runs the text-to-speech requests ahead and hands their audio
over in order, and the speaker is talk's `PlaybackBuffer` + `DeviceSpeaker` — one buffer for all
sentences, so they play gap-free. Speech starts with the first sentence: `infer … | say` speaks
while the answer is still streaming.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import struct
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from voicecli.errors import ConfigError, ExitCode, VoicecliError
from voicecli.profiles import Profile

ITEM = "say"
DRAIN_S = 600.0  # at most this long for the speaker to play what is queued (10 min of speech)


@dataclass
class SayOptions:
    text: list[str]
    output: str | None = None  # -O: a WAV path, or "-" for WAV on stdout
    output_device: str | None = None
    voice: str | None = None
    instructions: str | None = None
    debug: bool = False


def run_say(profile: Profile, opts: SayOptions) -> int:
    from voicecli.ui.status import setup_logging

    setup_logging(opts.debug)
    configure(profile, opts.voice, opts.instructions)
    sink = open_sink(opts.output, opts.output_device or profile.voice.output_device)
    text = " ".join(opts.text)
    stdin = StdinText() if not opts.text or opts.text == ["-"] else None
    pieces = stdin.pieces() if stdin is not None else _once(text)
    try:  # typed at a terminal, each line is said on Enter
        chars, seconds = asyncio.run(_say(profile, pieces, sink, flush_lines=stdin is not None and stdin.tty))
    except BrokenPipeError:  # -O - into a reader that stopped (`| head -c`): it has what it wanted
        from voicecli.signals import stdout_gone

        stdout_gone()
        return ExitCode.OK
    finally:
        sink.close()
    print(f"voicecli: say: {closing_line(profile.voice.speech_model, chars, seconds)}", file=sys.stderr)
    return ExitCode.OK


def configure(profile: Profile, voice: str | None, instructions: str | None) -> None:
    if voice:
        profile.voice.voice = voice
    if instructions:
        profile.voice.speech_instructions = instructions


def closing_line(model: str, chars: int, seconds: float) -> str:
    from voicecli.pricing import format_usd, speech_cost

    cost = speech_cost(model, seconds=seconds, chars=chars)
    return f"{model} · {chars} characters · {seconds:.1f} s of speech · {format_usd(cost)}"


async def _once(text: str) -> AsyncIterator[str]:
    yield text


async def _say(profile: Profile, pieces: AsyncIterator[str], sink: "Sink", flush_lines: bool = False) -> tuple[int, float]:
    from voicecli.transport import close_clients
    from voicecli.voice.cascade import audio_client

    tts, url = audio_client(profile, "speech")
    sink.start()
    try:
        chars = await speak(pieces, tts, profile.voice, url, sink.write, flush_lines)
        await sink.drain()
        return chars, sink.bytes / 48000
    finally:
        await close_clients()


async def speak(pieces: AsyncIterator[str], tts, voice, tts_url: str, write: Callable[[bytes], None],
                flush_lines: bool = False) -> int:
    """Speak the text of `pieces` (deltas, lines, a whole text) sentence by sentence; each PCM piece
    goes to `write` in order. Returns the characters sent to text-to-speech. A text-to-speech
    failure raises the stage's `VoicecliError` (the line talk prints)."""
    from voicecli.voice.cascade import Speech, StageFailed
    from voicecli.voice.sentences import Sentences

    sentences = Sentences()
    speech = Speech(tts, voice, tts_url, lambda item, pcm, spoken: write(pcm) if pcm else None)
    try:
        async for text in pieces:
            speech.check()
            for chunk in sentences.feed(text):
                speech.add(ITEM, chunk)
            if flush_lines and text.endswith("\n"):  # typed at a terminal: each line is said on Enter
                for chunk in sentences.flush():
                    speech.add(ITEM, chunk)
        for chunk in sentences.flush():
            speech.add(ITEM, chunk)
        await speech.finish()
    except StageFailed as exc:
        from voicecli.ui.status import failure

        speech.cancel()
        raise failure(exc.error, exc.base_url, stage=exc.stage) from None
    except BaseException:
        speech.cancel()
        await asyncio.gather(*speech.fetches, speech.player, return_exceptions=True)
        raise
    return speech.chars


class StdinText:
    """stdin as text, piece by piece as it arrives (a thread blocks on the reads, not the loop)."""

    def __init__(self, fd: int = 0):
        self.fd = fd
        self.tty = os.isatty(fd)
        self.first_at: float | None = None  # monotonic time of the first byte (for bench/voicepipes.py)

    async def pieces(self) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        def read() -> None:
            while True:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    data = b""
                loop.call_soon_threadsafe(queue.put_nowait, data or None)
                if not data:
                    return

        threading.Thread(target=read, name="stdin", daemon=True).start()
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        while (data := await queue.get()) is not None:
            if self.first_at is None:
                self.first_at = time.monotonic()
            text = decoder.decode(data)
            if text:
                yield text
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail


# -- where the audio goes -----------------------------------------------------------------------


class Sink:
    bytes = 0

    def start(self) -> None:
        pass

    def write(self, pcm: bytes) -> None:
        raise NotImplementedError

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        pass


def open_sink(output: str | None, device: str | None) -> Sink:
    """-O FILE / -O - (no audio device needed), else the speaker (checked now: none is exit 3)."""
    if output == "-":
        return WavOut(sys.stdout.buffer, "stdout")
    if output is not None:
        try:
            f = open(output, "wb")
        except OSError as exc:
            raise VoicecliError(f"cannot write {output}: {exc.strerror or exc}", exit_code=ExitCode.USAGE) from None
        return WavOut(f, output, own=True)
    from voicecli.audio.devices import resolve_device

    try:
        return SpeakerOut(resolve_device(device, "output"))
    except ConfigError as exc:
        if exc.message == "no audio output device found":
            exc.hint = "connect a speaker, or write the speech to a file with -O FILE.wav (-O - for stdout)"
        raise


class WavOut(Sink):
    """A 24 kHz mono PCM16 WAV, written as the audio arrives. Its sizes are fixed at the end where
    the file can seek; on a pipe they stay 0xFFFFFFFF ("to the end"), as streamed WAVs do."""

    def __init__(self, f, name: str, own: bool = False):
        self.f, self.name, self.own = f, name, own
        self.bytes = 0
        self.f.write(wav_header(0xFFFFFFFF))
        self.f.flush()

    def write(self, pcm: bytes) -> None:
        self.f.write(pcm)
        self.f.flush()  # a reader downstream (`| aplay`) plays it now
        self.bytes += len(pcm)

    def close(self) -> None:
        try:
            if self.f.seekable():
                self.f.seek(0)
                self.f.write(wav_header(self.bytes))
                self.f.seek(0, os.SEEK_END)
            self.f.flush()
        except (OSError, ValueError):
            pass
        if self.own:
            self.f.close()


def wav_header(data_bytes: int, rate: int = 24000) -> bytes:
    riff = 0xFFFFFFFF if data_bytes == 0xFFFFFFFF else 36 + data_bytes
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", data_bytes))


class SpeakerOut(Sink):
    """talk's playback path: a jitter buffer drained by the device, one item for the whole text."""

    def __init__(self, device: dict):
        from voicecli.audio.speaker import PlaybackBuffer
        from voicecli.voice.audio_io import PREBUFFER_MS

        self.device = device
        self.buffer = PlaybackBuffer(prebuffer_ms=PREBUFFER_MS)
        self.player = None
        self.bytes = 0

    def start(self) -> None:
        from voicecli.audio.devices import import_sounddevice
        from voicecli.audio.speaker import DeviceSpeaker

        sd = import_sounddevice()
        self.player = DeviceSpeaker(self.buffer, self.device["index"])
        try:
            self.player.start()
        except sd.PortAudioError as exc:
            raise ConfigError(f"cannot open the speaker: {exc}",
                              hint="check `voicecli devices`, pick one with --output-device, or use -O FILE.wav") from None

    def write(self, pcm: bytes) -> None:
        self.buffer.push(ITEM, pcm)
        self.bytes += len(pcm)

    async def drain(self) -> None:
        """Until everything queued was handed to the device, and the device's own latency more."""
        self.buffer.end(ITEM)
        deadline = time.monotonic() + DRAIN_S
        while self.buffer.active and time.monotonic() < deadline:
            if self.player.take_lost():
                raise ConfigError("the speaker went away", hint="use -O FILE.wav to write the speech instead")
            await asyncio.sleep(0.02)
        await asyncio.sleep(self.player.latency + 0.05)

    def close(self) -> None:
        if self.player is not None:
            self.player.close()
            self.player = None
