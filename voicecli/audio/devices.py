"""Audio devices: import PortAudio safely, list devices, pick one by index or name substring."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any

from voicecli.errors import ConfigError

PORTAUDIO_HINT = ("install PortAudio: Debian/Ubuntu `sudo apt-get install libportaudio2`, "
                  "Fedora `sudo dnf install portaudio`, macOS `brew install portaudio`")


def import_sounddevice() -> Any:
    """`import sounddevice`, turning a missing PortAudio library into one clear line."""
    try:
        import sounddevice
    except OSError as exc:  # the wheel does not bundle PortAudio on Linux
        raise ConfigError(f"audio is unavailable: {exc}", hint=PORTAUDIO_HINT) from None
    return sounddevice


def query_devices() -> list[dict[str, Any]]:
    sd = import_sounddevice()
    try:
        return [dict(d, index=i) for i, d in enumerate(sd.query_devices())]
    except sd.PortAudioError as exc:
        raise ConfigError(f"cannot list audio devices: {exc}") from None


def default_indices() -> tuple[int | None, int | None]:
    sd = import_sounddevice()
    try:
        inp, out = sd.default.device
    except Exception:
        return None, None
    return (inp if inp is not None and inp >= 0 else None), (out if out is not None and out >= 0 else None)


def find_device(spec: str, kind: str) -> dict[str, Any]:
    """An input or output device by index or case-insensitive name substring (exit 3 if unclear)."""
    channels = "max_input_channels" if kind == "input" else "max_output_channels"
    devices = [d for d in query_devices() if d[channels] > 0]
    if not devices:
        raise ConfigError(f"no audio {kind} device found",
                          hint="connect one, or use --input/--output FILE.wav to run without audio devices")
    if spec.strip().isdigit():
        match = [d for d in devices if d["index"] == int(spec)]
    else:
        match = [d for d in devices if spec.lower() in d["name"].lower()]
        exact = [d for d in match if d["name"].lower() == spec.lower()]
        match = exact or match
    if len(match) == 1:
        _unroute(kind)
        return match[0]
    via, listed = _sound_server(devices)
    if not match and via is not None and not spec.strip().isdigit():
        from voicecli.audio import pulse

        found = pulse.matches(spec, kind, listed)
        if len(found) == 1:  # a PulseAudio/PipeWire source or sink: opened through the plugin
            pulse.route(found[0])
            return dict(via, name=found[0]["description"], pulse=found[0]["name"])
        if found:
            names = "; ".join(d["name"] for d in found)
            raise ConfigError(f"--{kind}-device '{spec}' matches several {kind} devices", hint=f"candidates: {names}")
    listing = "; ".join(f"{d['index']}: {d['name']}" for d in (match or devices))
    if not match and listed:
        want = "source" if kind == "input" else "sink"
        listing += "".join(f"; {d['name']}" for d in listed if d["kind"] == want and not d["monitor"])
    what = f"matches several {kind} devices" if match else f"matches no {kind} device"
    raise ConfigError(f"--{kind}-device '{spec}' {what}", hint=f"candidates: {listing}")


def _unroute(kind: str) -> None:
    pulse = sys.modules.get("voicecli.audio.pulse")
    if pulse is not None:  # only if a PulseAudio device was chosen before
        pulse.unroute(kind)


def _sound_server(devices: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The PortAudio device that leads to PulseAudio/PipeWire (ALSA's `pulse` plugin, else `default`)
    and the server's sources and sinks; (None, []) when there is no such route or no pactl."""
    via = next((d for d in devices if d["name"] == "pulse"), None) or \
        next((d for d in devices if d["name"] == "default"), None)
    if via is None:
        return None, []
    from voicecli.audio import pulse

    listed = pulse.devices()
    return (via, listed) if listed else (None, [])


def print_devices(json_out: bool = False) -> None:
    """PortAudio's devices, then — when PortAudio reaches PulseAudio/PipeWire through ALSA's plugin
    (its `pulse`/`default` devices claim 32 channels each way) — the server's real sources and sinks."""
    devices = query_devices()
    d_in, d_out = default_indices()
    via, listed = _sound_server(devices)
    if json_out:
        from voicecli.ui.listing import print_json

        print_json([{"index": d["index"], "name": d["name"], "input_channels": d["max_input_channels"],
                     "output_channels": d["max_output_channels"], "default_samplerate": d["default_samplerate"],
                     "default_input": d["index"] == d_in, "default_output": d["index"] == d_out, "api": "portaudio"}
                    for d in devices] +
                   [{"index": None, "name": p["name"], "description": p["description"],
                     "input_channels": p["channels"] if p["kind"] == "source" else 0,
                     "output_channels": p["channels"] if p["kind"] == "sink" else 0,
                     "default_samplerate": p["rate"], "default_input": p["kind"] == "source" and p["default"],
                     "default_output": p["kind"] == "sink" and p["default"], "api": "pulse", "kind": p["kind"],
                     "monitor": p["monitor"]} for p in listed])
        return
    if not devices:
        print("no audio devices found", file=sys.stderr)
        return
    rows = []
    for d in devices:
        marks = ("<" if d["index"] == d_in else " ") + (">" if d["index"] == d_out else " ")
        about = "sound server (PulseAudio/PipeWire)" if via is not None and d["name"] in ("pulse", "default") else ""
        rows.append([str(d["index"]), marks, d["name"], str(d["max_input_channels"]),
                     str(d["max_output_channels"]), f"{d['default_samplerate']:.0f}", about])
    shown = [p for p in listed if not p["monitor"]]
    for p in sorted(shown, key=lambda p: (p["kind"] != "source", not p["default"])):
        source = p["kind"] == "source"
        marks = ("<" if source and p["default"] else " ") + (">" if not source and p["default"] else " ")
        channels = str(p["channels"] or "?")
        rows.append(["-", marks, p["name"], channels if source else "0", "0" if source else channels,
                     str(p["rate"] or "?"), f"{p['description']} ({'microphone' if source else 'speaker'})"])
    from voicecli.ui.listing import print_table

    print_table(rows, ["index", "default", "name", "in", "out", "rate", "about"])
    if sys.stdout.isatty():
        print("< default input   > default output", file=sys.stderr)
    if shown:
        monitors = len(listed) - len(shown)
        print("PulseAudio/PipeWire devices (index -) are chosen by name: talk --input-device NAME / "
              "--output-device NAME" + (f"; {monitors} monitor source{'s' * (monitors != 1)} not shown "
                                        "(--json lists them)" if monitors else ""), file=sys.stderr)
    print(f"talk: {duplex_mode()}", file=sys.stderr)


def duplex_mode() -> str:
    """How `talk` keeps the assistant from hearing itself on this machine (without loading the module)."""
    import importlib.util

    try:  # livekit is a namespace package: look for the part that holds the module
        found = importlib.util.find_spec("livekit.rtc") is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return ("full-duplex with echo cancellation (WebRTC audio processing; --half-duplex or "
                "voice.echo_cancellation = false to change)")
    return ("half-duplex unless a headset is used: echo cancellation needs the 'livekit' package "
            "(pip install livekit)")


HEADSET_WORDS = ("headset", "headphone", "earphone", "earbud", "airpods", "buds", "hands-free", "handsfree")


class NoDevice(ConfigError):
    """There is no audio device of the kind at all (not just no default one)."""


def resolve_device(spec: str | None, kind: str) -> dict[str, Any]:
    """The device `--input-device`/`--output-device` names, else the default one (exit 3 if none)."""
    if spec:
        return find_device(spec, kind)
    _unroute(kind)
    d_in, d_out = default_indices()
    index = d_in if kind == "input" else d_out
    channels = "max_input_channels" if kind == "input" else "max_output_channels"
    devices = query_devices()
    match = [d for d in devices if d["index"] == index and d[channels] > 0]
    if match:
        return match[0]
    if any(d[channels] > 0 for d in devices):
        hint = f"no default {kind} device: pick one with --{kind}-device (see `voicecli devices`)"
        raise ConfigError(f"no audio {kind} device found", hint=hint)
    hint = (f"connect a {'microphone' if kind == 'input' else 'speaker'}, or use "
            f"--{kind} FILE.wav to run without one")
    raise NoDevice(f"no audio {kind} device found", hint=hint)


def looks_like_headset(*names: str) -> bool:
    """Heuristic for the echo defence: a headset's speaker does not reach its own microphone."""
    return any(word in name.lower() for name in names for word in HEADSET_WORDS)


class DeviceStream:
    """What the microphone and the speaker share: one PortAudio stream, its latency, closing it,
    and noticing that its device went away (a USB headset unplugged).

    A device that disappears either ends the stream (PortAudio's finished callback: ALSA, and
    PulseAudio/PipeWire when no device is left to move it to) or leaves it silent with no more
    callbacks (seen on other hosts). `take_lost()` reports either once; `reopen_default()` then
    opens the default device in its place.
    """

    what = "audio device"  # for messages: "microphone" / "speaker"
    kind = "output"  # "input" / "output"
    device: int | None = None
    _stream = None
    _generation = 0  # which stream a finished callback is about: an old one's is ignored
    _died = False
    _last_callback = 0.0  # monotonic time of the last audio callback (set on the audio thread)

    @property
    def latency(self) -> float:
        return float(self._stream.latency) if self._stream is not None else 0.0

    def _watch(self):
        """Before opening a stream: the finished callback to give it; starts the stall clock."""
        self._generation += 1
        generation, self._died = self._generation, False
        self._last_callback = time.monotonic()

        def finished() -> None:  # PortAudio's thread: the stream ended (closed by us, or the device is gone)
            if generation == self._generation:
                self._died = True

        return finished

    def take_lost(self) -> bool:
        """True, once, if the stream died or stopped calling back; the dead stream is then closed."""
        if self._stream is None:
            return False
        if not self._died and time.monotonic() - self._last_callback < STALL_S:
            return False
        stream, self._stream = self._stream, None
        try:
            stream.abort()  # not stop(): nothing is left to drain on a dead device
            stream.close()
        except Exception:  # PortAudio may refuse both on a vanished device: it is gone either way
            pass
        return True

    def start(self) -> None:
        raise NotImplementedError

    _resampler = None  # a soxr Resampler when the device runs at another rate than 24 kHz

    def close(self) -> None:
        stream, self._stream = self._stream, None
        try:
            if stream is not None:
                try:
                    stream.stop()
                finally:
                    stream.close()
        finally:
            self._resampler = None  # its native soxr state goes now (see `voicecli.cli.main` on why)


STALL_S = 2.0  # no audio callback for this long: the device is gone (PortAudio calls every 10–20 ms)
REOPEN_S = 3.0  # how long to keep trying the default device (a sound server takes a moment to switch)


async def reopen_default(stream: DeviceStream, grace_s: float = REOPEN_S, step_s: float = 0.2) -> str:
    """Open the default device of the stream's kind in place of the one that went away; its name.

    ConfigError (exit 3) if no device could be opened within `grace_s`.
    """
    import asyncio

    sd = import_sounddevice()
    deadline = time.monotonic() + grace_s
    while True:
        try:
            info = resolve_device(None, stream.kind)
            stream.device = info["index"]
            with _native_stderr_quiet():
                stream.start()
            return str(info["name"])
        except (sd.PortAudioError, ValueError, ConfigError) as exc:  # ValueError: sounddevice's 'no such device'
            error = exc
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(step_s)
    reason = error.message if isinstance(error, ConfigError) else str(error)
    raise ConfigError(f"the {stream.what} went away and no other {stream.kind} device could be opened ({reason})",
                      hint="connect one and start talk again, or use --input/--output FILE.wav")


@contextlib.contextmanager
def _native_stderr_quiet():
    """PortAudio and ALSA print their own lines on file descriptor 2 when opening fails; a retry
    loop would fill the screen with them. Our message (with PortAudio's error) says it once."""
    try:
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    sys.stderr.flush()
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
