"""PulseAudio / PipeWire sources and sinks, as `pactl` reports them.

PortAudio as most Linux distributions build it reaches the sound server through ALSA's `pulse`
plugin: it shows one `pulse` and one `default` device, each with 32 channels in and out, whatever
is plugged in. The real microphones (sources) and speakers (sinks) are the sound server's; `pactl`
lists them, and libpulse (inside that plugin) opens the one named by PULSE_SOURCE / PULSE_SINK.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from typing import Any

PACTL_TIMEOUT_S = 3.0


def _pactl(*args: str) -> str | None:
    exe = shutil.which("pactl")
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=PACTL_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, env={**os.environ, "LC_ALL": "C"})
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def devices() -> list[dict[str, Any]] | None:
    """Sources and sinks: {kind: "source"|"sink", name, description, channels, rate, default, monitor};
    None when there is no pactl or no sound server answers."""
    listed = _json_devices()
    return listed if listed is not None else _short_devices()


def _json_devices() -> list[dict[str, Any]] | None:
    """pactl ≥ 16: `-f json`."""
    info = _pactl("-f", "json", "info")
    if info is None:
        return None
    try:
        server = json.loads(info)
        out = []
        for kind in ("source", "sink"):
            text = _pactl("-f", "json", "list", f"{kind}s")
            if text is None:
                return None
            default = server.get(f"default_{kind}_name")
            for d in json.loads(text):
                props = d.get("properties") or {}
                out.append(_entry(kind, d.get("name", ""), d.get("description") or props.get("device.description"),
                                  d.get("sample_specification", ""), default,
                                  monitor=kind == "source" and (props.get("device.class") == "monitor"
                                                                 or bool(d.get("monitor_of_sink")))))
        return out
    except (ValueError, TypeError, AttributeError):
        return None


def _short_devices() -> list[dict[str, Any]] | None:
    """Older pactl: `list short` lines (no descriptions) and the defaults from `info`."""
    info = _pactl("info")
    if info is None:
        return None
    defaults = dict(re.findall(r"^Default (Sink|Source): (.+)$", info, re.M))
    out = []
    for kind in ("source", "sink"):
        text = _pactl("list", "short", f"{kind}s")
        if text is None:
            return None
        for line in text.splitlines():
            fields = line.split("\t")
            if len(fields) >= 4:
                name = fields[1]
                out.append(_entry(kind, name, None, fields[3], defaults.get(kind.title()),
                                  monitor=kind == "source" and name.endswith(".monitor")))
    return out


def _entry(kind: str, name: str, description: str | None, spec: str, default: str | None, *,
           monitor: bool) -> dict[str, Any]:
    channels = re.search(r"(\d+)ch", spec)
    rate = re.search(r"(\d+)Hz", spec)
    return {"kind": kind, "name": name, "description": description or name,
            "channels": int(channels.group(1)) if channels else None,
            "rate": int(rate.group(1)) if rate else None,
            "default": name == default, "monitor": monitor}


def matches(spec: str, kind: str, listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sources (kind "input") or sinks ("output") whose name or description contains `spec`
    (any case); an exact name or description wins. Monitors only when asked for by name."""
    want = "source" if kind == "input" else "sink"
    s = spec.lower()
    pool = [d for d in listed if d["kind"] == want]
    exact = [d for d in pool if s in (d["name"].lower(), d["description"].lower())]
    if exact:
        return exact
    return [d for d in pool if not d["monitor"] and (s in d["name"].lower() or s in d["description"].lower())]


_ORIGINAL: dict[str, str | None] = {}  # the user's own PULSE_SOURCE/PULSE_SINK, before route() changed them


def _variable(kind: str) -> str:
    return "PULSE_SOURCE" if kind in ("source", "input") else "PULSE_SINK"


def route(device: dict[str, Any]) -> None:
    """Streams opened from now on through the ALSA pulse plugin go to this source or sink."""
    var = _variable(device["kind"])
    _ORIGINAL.setdefault(var, os.environ.get(var))
    os.environ[var] = device["name"]


def unroute(kind: str) -> None:
    """Undo route() for "input"/"output" (a later device chosen otherwise, e.g. chat's second /talk)."""
    var = _variable(kind)
    if var in _ORIGINAL:
        value = _ORIGINAL.pop(var)
        if value is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = value
