"""`voicecli devices` and talk's device names on PulseAudio/PipeWire, on the null-sink stack
(tests/audio/virtual-audio.sh): PortAudio's ALSA `pulse`/`default` devices say 32 in / 32 out, so
the server's real sources and sinks are listed from pactl and chosen by name (PULSE_SOURCE/SINK)."""

from __future__ import annotations

import json
import subprocess

import pytest

from clihelp import run_cli
from test_talk_audio import TalkProcess, audio_stack  # noqa: F401  (the session's PulseAudio daemon)

pytestmark = [pytest.mark.audio]


def test_devices_shows_sources_and_sinks_with_the_defaults(audio_stack, tmp_path):  # noqa: F811
    r = run_cli(tmp_path, "devices", **audio_stack.env)
    assert r.code == 0, r.err
    rows = {line.split("\t")[2]: line.split("\t") for line in r.out.splitlines()[1:]}
    assert rows["virtual_mic"][1:6] == ["< ", "virtual_mic", "1", "0", "24000"]  # a microphone, the default
    assert rows["virtual_speaker"][1:6] == [" >", "virtual_speaker", "0", "1", "24000"]  # the default speaker
    assert rows["virtual_mic_feed"][1:5] == ["  ", "virtual_mic_feed", "0", "1"]
    assert "Virtual_Mic (microphone)" in rows["virtual_mic"][6]
    assert not any(name.endswith(".monitor") for name in rows)  # monitors are not microphones
    assert "2 monitor sources not shown" in r.err and "--input-device NAME" in r.err
    assert "pulse" in rows and "default" in rows  # what PortAudio sees is still listed

    listed = json.loads(run_cli(tmp_path, "devices", "--json", **audio_stack.env).out)
    pulse = {d["name"]: d for d in listed if d["api"] == "pulse"}
    assert pulse["virtual_mic"]["default_input"] and pulse["virtual_mic"]["input_channels"] == 1
    assert pulse["virtual_mic"]["output_channels"] == 0 and not pulse["virtual_mic"]["monitor"]
    assert pulse["virtual_speaker"]["default_output"] and pulse["virtual_speaker"]["output_channels"] == 1
    assert pulse["virtual_speaker.monitor"]["monitor"] is True
    assert {d["name"] for d in listed if d["api"] == "portaudio"} >= {"pulse", "default"}


def _streams(stack, kind: str, pid: int) -> list[int]:
    """The sources (kind "source-outputs") or sinks ("sink-inputs") the process `pid` streams with."""
    out = subprocess.run(["pactl", "-f", "json", "list", kind], env=stack.full_env(), capture_output=True,
                         text=True, timeout=30, check=True).stdout
    key = "source" if kind == "source-outputs" else "sink"
    return [s[key] for s in json.loads(out) if s.get("properties", {}).get("application.process.id") == str(pid)]


def _index(stack, kind: str, name: str) -> int:
    out = subprocess.run(["pactl", "-f", "json", "list", kind], env=stack.full_env(), capture_output=True,
                         text=True, timeout=30, check=True).stdout
    return next(d["index"] for d in json.loads(out) if d["name"] == name)


def test_talk_opens_the_named_source_and_sink(audio_stack, make_sim, tmp_path):  # noqa: F811
    """Not the defaults: a monitor source by its exact name, a sink by its description."""
    sim = make_sim()
    talk = TalkProcess(tmp_path, sim, "--input-device", "virtual_speaker.monitor",
                       "--output-device", "Virtual_Mic_Feed", "--no-aec", env=audio_stack.env)
    try:
        talk.wait_streaming()
        talk.wait(lambda: _streams(audio_stack, "sink-inputs", talk.proc.pid), 20, "the speaker stream")
        assert _streams(audio_stack, "source-outputs", talk.proc.pid) == [
            _index(audio_stack, "sources", "virtual_speaker.monitor")]
        assert _streams(audio_stack, "sink-inputs", talk.proc.pid) == [_index(audio_stack, "sinks", "virtual_mic_feed")]
        code, out, err = talk.quit()
    finally:
        talk.proc.kill()
    assert code == 0, err


def test_an_unclear_pulse_name_lists_the_candidates(audio_stack, tmp_path):  # noqa: F811
    r = run_cli(tmp_path, "talk", "-p", "offline", "--output-device", "virtual", **audio_stack.env)
    assert r.code == 3, r.err
    assert "--output-device 'virtual' matches several output devices" in r.err
    assert "virtual_speaker" in r.err and "virtual_mic_feed" in r.err


def test_a_later_default_device_undoes_the_route(audio_stack, monkeypatch):  # noqa: F811
    """chat's second /talk with no device named goes to the defaults again, not the last named one."""
    from voicecli.audio import devices

    monkeypatch.delenv("PULSE_SOURCE", raising=False)
    monkeypatch.setenv("PULSE_SINK", "users_own_choice")
    for key, value in audio_stack.env.items():
        monkeypatch.setenv(key, value)
    # PortAudio's list as the ALSA plugin shows it (PortAudio in this process may predate the daemon)
    pulse_dev = {"index": 0, "name": "pulse", "max_input_channels": 32, "max_output_channels": 32}
    monkeypatch.setattr(devices, "query_devices", lambda: [pulse_dev])
    monkeypatch.setattr(devices, "default_indices", lambda: (0, 0))
    assert devices.find_device("virtual_speaker.monitor", "input")["pulse"] == "virtual_speaker.monitor"
    assert devices.find_device("virtual_mic_feed", "output")["pulse"] == "virtual_mic_feed"
    import os

    assert os.environ["PULSE_SOURCE"] == "virtual_speaker.monitor" and os.environ["PULSE_SINK"] == "virtual_mic_feed"
    devices.resolve_device(None, "input")
    devices.find_device("pulse", "output")
    assert "PULSE_SOURCE" not in os.environ and os.environ["PULSE_SINK"] == "users_own_choice"


def test_device_names_complete_from_the_sound_server(audio_stack, tmp_path):  # noqa: F811
    from test_completion import complete

    assert complete(tmp_path, "voicecli talk --input-device virtual_", **audio_stack.env) == ["virtual_mic"]
    sinks = complete(tmp_path, "voicecli talk --output-device virtual_", **audio_stack.env)
    assert sorted(sinks) == ["virtual_mic_feed", "virtual_speaker"]  # sinks; never a monitor source
