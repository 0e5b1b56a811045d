"""Values for shell completion (`-p`, `-m`, `-t`, `--vad`, profile names and keys) and chat's Tab.

Completion runs on every Tab press: it reads only local files (profiles, the model lists cached
by `voicecli models`), never the network, and never fails — a problem just means fewer choices.
"""

from __future__ import annotations

from typing import Any

TRANSPORTS = [("ws", "Responses over WebSocket"), ("sse", "Responses over HTTP"), ("chat", "Chat Completions")]
VADS = [("server", "server voice activity detection"), ("semantic", "semantic turn detection"),
        ("off", "push-to-talk (Space)")]
ENGINES = [("realtime", "the Realtime API"), ("cascade", "speech-to-text → text model → text-to-speech")]


def _matching(choices, incomplete: str) -> list:
    return [c for c in choices if (c[0] if isinstance(c, tuple) else c).startswith(incomplete)]


def profile_names() -> list[str]:
    from voicecli import profiles

    return [ref.name for ref in profiles.discover()]


def setting_keys() -> list[str]:
    """Dotted keys `profiles set` and chat's `/set` take (and `model.` keys without their section)."""
    from voicecli import profiles

    keys = [f"{s}.{n}" for s in ("model", "connection", "ui", "voice")
            if s in profiles.SECTIONS for n in profiles._field_info(profiles.SECTIONS[s])]
    return keys


def model_names(profile) -> list[str]:
    """The profile's model, the models other profiles name, and the server's list as cached by
    `voicecli models` for the profile's base URL (fresh for a day)."""
    from voicecli import profiles
    from voicecli.errors import VoicecliError
    from voicecli.models import read_cache

    names = {profile.model.name} if profile is not None else set()
    for ref in profiles.discover():
        try:
            names.add(profiles.read_toml(ref.path)[0].get("model", {}).get("name", ""))
        except (VoicecliError, OSError, AttributeError):
            continue
    if profile is not None:
        names.update(read_cache(profile.connection.base_url) or [])
    return sorted(n for n in names if isinstance(n, str) and n)


def device_names(kind: str) -> list[str]:
    """PulseAudio/PipeWire source (microphone) or sink (speaker) names, from `pactl` (a few ms; no
    PortAudio, whose start-up would cost a Tab press 0.3 s). None without a sound server."""
    from voicecli.audio import pulse

    return [d["name"] for d in pulse.devices() or [] if d["kind"] == kind and not d["monitor"]]


def _profile_from(params: dict[str, Any]):
    """The profile the command line so far selects (-p, --base-url), or None."""
    from voicecli import profiles

    try:
        return profiles.load(params.get("profile"), overrides={"connection.base_url": params.get("base_url")})
    except Exception:  # a broken profile: complete what we can without it
        return None


def complete(kind: str, params: dict[str, Any], incomplete: str) -> list:
    """Choices of one kind for the word being completed; [] on any problem."""
    try:
        if kind == "profile":
            choices: list = profile_names()
        elif kind == "model":
            choices = model_names(_profile_from(params))
        elif kind == "transport":
            choices = TRANSPORTS
        elif kind == "vad":
            choices = VADS
        elif kind == "key":
            choices = setting_keys()
        elif kind == "engine":
            choices = ENGINES
        elif kind in ("source", "sink"):
            choices = device_names(kind)
        else:
            return []
        return _matching(choices, incomplete)
    except Exception:
        return []
