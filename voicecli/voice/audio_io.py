"""The voice session's audio port: where the user's audio comes from and the assistant's goes to.

A microphone or a `--input` WAV in; a jitter/playback buffer drained by a speaker (or, without a
device, by a real-time clock) out, with `--output` recording what was played. Devices are checked
before anything connects, so a wrong name fails fast (exit 3).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger("voicecli")

PREBUFFER_MS = 60  # jitter buffer: start (or restart after running dry) once this much audio is queued
HANG_S = 0.3  # half-duplex: keep the mic muted this long after the assistant's last sound


class AudioIO:
    def __init__(self, voice, *, input_device: str | None, output_device: str | None, input_wav: Path | None,
                 output_wav: Path | None, half_duplex: bool | None, echo_cancellation: bool | None = None,
                 no_mic: bool = False):
        from voicecli.audio.devices import NoDevice, looks_like_headset, resolve_device
        from voicecli.audio.speaker import PlaybackBuffer

        self.input_wav, self.output_wav = input_wav, output_wav
        headless = input_wav is not None and output_wav is not None
        in_spec, out_spec = input_device or voice.input_device, output_device or voice.output_device
        self.no_mic = no_mic and input_wav is None  # typed turns only
        self.missing_mic = False  # there was none to find: typed turns only, said in the header
        self.in_dev = None
        if input_wav is None and not self.no_mic:
            try:
                self.in_dev = resolve_device(in_spec, "input")
            except NoDevice:
                if in_spec:
                    raise
                self.no_mic = self.missing_mic = True
        try:
            self.out_dev = resolve_device(out_spec, "output") if not headless else None
        except NoDevice:
            if output_wav is None or out_spec:
                raise
            self.out_dev = None  # recorded to --output, paced by a clock
        self.voice = voice
        names = [d["name"] for d in (self.in_dev, self.out_dev) if d]
        headset = bool(names) and looks_like_headset(*names)
        half = half_duplex if half_duplex is not None else voice.half_duplex
        if echo_cancellation and half_duplex is None:
            half = None  # --aec given: the profile's half-duplex gives way to it
        aec = echo_cancellation if echo_cancellation is not None else voice.echo_cancellation
        # echo cancellation when a real mic may hear a real speaker and the mic is not muted anyway;
        # not on a headset unless asked: with no echo path, AEC3 dampens the first syllables of a
        # user talking over the answer
        self.echo_wanted = (bool(aec) and not half and input_wav is None and not self.no_mic
                            and self.out_dev is not None and (not headset or bool(echo_cancellation)))
        self.echo_problem: str | None = None  # why the canceller could not be loaded
        if self.echo_wanted:
            from voicecli.audio.echo import EchoUnavailable, load_module

            try:
                load_module()
            except EchoUnavailable as exc:
                self.echo_wanted, self.echo_problem = False, str(exc)
        if half is None and not self.echo_wanted:
            half = not headset
        self.half_duplex = bool(half) and input_wav is None and not self.no_mic  # a file hears no echo
        self.echo = None  # the EchoCanceller, once the devices are open
        self.buffer = PlaybackBuffer(prebuffer_ms=PREBUFFER_MS, record=output_wav is not None)
        self.source = self.player = self.recorder = None
        self.latencies: dict[str, float] = {}  # PortAudio's stream latencies, seconds

    @property
    def level(self) -> float:
        """The microphone's level as sent (after echo cancellation): the meter shows what the model hears."""
        return self.source.level if self.source is not None else 0.0

    @property
    def mode(self) -> str:
        """For the talk header: how the assistant is kept from hearing itself."""
        if self.no_mic:
            return ("no microphone found: type your turns" if self.missing_mic else "no microphone (--no-mic)"
                    ) + "; answers are spoken"
        if self.echo_wanted:
            return "full-duplex with echo cancellation"
        mode = "half-duplex (mic muted while the assistant speaks)" if self.half_duplex else "full-duplex"
        return f"{mode}; {self.echo_problem}" if self.echo_problem else mode

    def open(self) -> None:
        from voicecli.audio.speaker import ClockSpeaker, DeviceSpeaker
        from voicecli.audio.wav import WavRecorder, WavSource

        if self.output_wav is not None:
            self.recorder = WavRecorder(self.output_wav)
        if self.input_wav is not None:
            self.source = WavSource(self.input_wav)
        elif self.no_mic:
            from voicecli.audio.mic import NoMicrophone

            self.source = NoMicrophone()
        else:
            from voicecli.audio.mic import Microphone

            self.source = Microphone(self.in_dev["index"] if self.in_dev else None)
            self._open_device(self.source.start, "microphone")
        if self.out_dev is not None:
            self.player = DeviceSpeaker(self.buffer, self.out_dev["index"])
            self._open_device(self.player.start, "speaker")
        else:
            self.player = ClockSpeaker(self.buffer)
            self.player.start()
        self.latencies = {"in": getattr(self.source, "latency", 0.0), "out": getattr(self.player, "latency", 0.0)}
        if self.echo_wanted and self.input_wav is None:
            try:
                self._cancel_echo()
            except Exception as exc:  # the native module failed: the mic is muted while it speaks instead
                self.echo_wanted, self.echo_problem, self.half_duplex = False, f"echo cancellation failed: {exc}", True
                self.buffer.reference = self.source.processor = None

    def _cancel_echo(self) -> None:
        """The speaker's played blocks become the far-end reference; the mic's blocks are cleaned
        before they are sent. The echo's delay hint is PortAudio's output plus input latency."""
        from voicecli.audio.echo import EchoCanceller

        v = self.voice
        # VOICECLI_ECHO_PATH=off: the canceller always in force (no echo path detection), as before it
        # existed: the benchmark's "before", and a way out should the detector ever miss an echo path
        self.echo = EchoCanceller(noise_suppression=v.noise_suppression, auto_gain_control=v.auto_gain_control,
                                  delay_ms=(self.latencies["in"] + self.latencies["out"]) * 1000,
                                  detect_echo_path=os.environ.get("VOICECLI_ECHO_PATH", "").lower() != "off")
        self.buffer.reference = self.echo.far_end
        self.source.processor = self.echo.process

    def _open_device(self, start, what: str) -> None:
        from voicecli.audio.devices import import_sounddevice
        from voicecli.errors import ConfigError

        sd = import_sounddevice()
        try:
            start()
        except sd.PortAudioError as exc:
            raise ConfigError(f"cannot open the {what}: {exc}",
                              hint="check `voicecli devices`, or pick one with --input-device/--output-device") from None

    def lost_devices(self) -> list:
        """The microphone and speaker streams that died since the last call (each told once)."""
        return [d for d in (self.source, self.player) if hasattr(d, "take_lost") and d.take_lost()]

    async def replace(self, device, note) -> None:
        """Reopen a lost `device` on the default device of its kind (ConfigError if none opens)."""
        from voicecli.audio.devices import reopen_default

        note(f"the {device.what} went away; trying the default {device.kind} device")
        note(f"{device.what}: {await reopen_default(device)}")
        self.latencies = {"in": getattr(self.source, "latency", 0.0), "out": getattr(self.player, "latency", 0.0)}
        if self.echo is not None:  # another device, another delay, maybe an echo path (headphones unplugged)
            self.echo.set_delay((self.latencies["in"] + self.latencies["out"]) * 1000)
            self.echo.device_changed()

    def muted(self) -> bool:
        """Half-duplex: the mic is not sent while the assistant is heard (and briefly after)."""
        return self.half_duplex and (self.buffer.active or time.monotonic() - self.buffer.last_sound < HANG_S)

    def typing_ended(self) -> None:
        """Typed input ended (EOF on a pipe): without a microphone, that is the end of the input."""
        if self.no_mic:
            self.source.done.set()

    @property
    def input_done(self) -> bool:
        """A `--input` file has been sent to the end, or typed input without a microphone has
        ended (a microphone never is)."""
        done = getattr(self.source, "done", None)
        return done is not None and done.is_set()

    def drain(self) -> None:
        """Move what was played into the `--output` WAV."""
        if self.recorder is not None:
            from voicecli.audio.speaker import drain_tap

            drain_tap(self.buffer, self.recorder.write)

    async def aclose(self) -> None:
        for closer in (getattr(self.source, "close", None), getattr(self.player, "close", None)):
            if closer is not None:
                try:
                    closer()
                except Exception as exc:  # a device vanished: nothing to save
                    log.debug("closing audio: %s", exc)
        if self.player is not None and hasattr(self.player, "aclose"):
            await self.player.aclose()
        self.drain()

    def close_recording(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
