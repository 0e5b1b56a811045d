"""A microphone or speaker whose device goes away mid-session, without a device: a stand-in for
sounddevice whose streams can die (PortAudio's finished callback) or stop calling back."""

from __future__ import annotations

import asyncio
import time

import pytest

from test_audio_resample import FakeSoundDevice
from voicecli.audio import devices
from voicecli.audio.mic import Microphone
from voicecli.audio.speaker import DeviceSpeaker, PlaybackBuffer
from voicecli.errors import ConfigError, ExitCode


class Sd(FakeSoundDevice):
    """Opens at 24 kHz; lists one default device of each kind unless `gone`."""

    def __init__(self):
        super().__init__(rate=24000)
        self.gone = False
        self.finished = []
        self.default = type("Default", (), {"device": (0, 1)})()

    def query_devices(self, device=None, kind=None):
        if device is None and kind is None:
            return [] if self.gone else [{"name": "usb mic", "max_input_channels": 1, "max_output_channels": 0,
                                          "default_samplerate": 24000.0},
                                         {"name": "usb speaker", "max_input_channels": 0, "max_output_channels": 1,
                                          "default_samplerate": 24000.0}]
        return super().query_devices(device, kind)

    def _stream(self, samplerate, callback, finished_callback=None, **kw):
        if self.gone:
            raise self.PortAudioError("Error opening stream: Input/output error")
        stream = super()._stream(samplerate, callback)
        stream.abort = lambda: None
        self.finished.append(finished_callback)
        return stream


@pytest.fixture
def sd(monkeypatch):
    fake = Sd()
    monkeypatch.setattr(devices, "import_sounddevice", lambda: fake)
    return fake


def open_both(sd):
    async def run():
        mic, speaker = Microphone(), DeviceSpeaker(PlaybackBuffer())
        mic.start()
        speaker.start()
        return mic, speaker
    return asyncio.run(run())


def test_a_stream_that_died_is_reported_once(sd):
    mic, speaker = open_both(sd)
    assert not mic.take_lost() and not speaker.take_lost()
    sd.finished[1]()  # PortAudio ended the speaker's stream: the device is gone
    assert speaker.take_lost() and not mic.take_lost()
    assert not speaker.take_lost()  # once; the dead stream is closed
    assert speaker.latency == 0.0


def test_our_own_close_is_not_a_loss(sd):
    mic, _ = open_both(sd)
    finished = sd.finished[0]
    mic.close()
    finished()
    assert not mic.take_lost()


def test_a_stream_that_stopped_calling_back_is_lost(sd):
    mic, speaker = open_both(sd)
    speaker._callback(bytearray(480), 240, None, None)
    assert not speaker.take_lost()
    speaker._last_callback = time.monotonic() - devices.STALL_S - 0.1  # as if no callback for that long
    assert speaker.take_lost()


def test_the_default_device_takes_over(sd):
    mic, speaker = open_both(sd)
    sd.finished[0]()
    assert mic.take_lost()
    name = asyncio.run(devices.reopen_default(mic, grace_s=0))
    assert name == "usb mic" and mic.device == 0
    assert not mic.take_lost()
    sd.finished[0]()  # a late finished callback of the old stream does not count against the new one
    assert not mic.take_lost()


def test_no_device_left_is_a_config_error(sd):
    _, speaker = open_both(sd)
    sd.finished[1]()
    assert speaker.take_lost()
    sd.gone = True
    with pytest.raises(ConfigError) as err:
        asyncio.run(devices.reopen_default(speaker, grace_s=0))
    assert err.value.exit_code == ExitCode.CONFIG
    assert "the speaker went away and no other output device could be opened" in err.value.message
