"""How a `talk` session is asked for: the command's options (also what chat's `/talk` passes), and
the one Ctrl-C rule the footer, chat and the README state."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

VAD_MODES = {"server": "server_vad", "semantic": "semantic_vad", "off": "none"}


@dataclass
class TalkOptions:
    vad: str | None = None  # server | semantic | off
    half_duplex: bool | None = None
    aec: bool | None = None  # echo cancellation (default: the profile's voice.echo_cancellation)
    input_device: str | None = None
    output_device: str | None = None
    input_wav: Path | None = None
    output_wav: Path | None = None
    transcript: Path | None = None
    voice: str | None = None
    continue_: bool = False
    cid: str | None = None
    no_log: bool = False
    debug: bool = False
    require_mcp: bool = False
    engine: str = "realtime"  # realtime | cascade (see `Profile.talk_engine`)
    no_mic: bool = False  # typed turns only, spoken answers
    leave: str = "quit"  # what Ctrl-D and an idle Ctrl-C do: "quit", or "return to chat" from chat's /talk


def ctrl_c_rule(leave: str = "quit") -> str:
    """Talk's one Ctrl-C rule, as the footer and chat's /talk state it (and the README): it stops
    the answer or recording in progress; with none, it leaves (so does a second press within 2 s)."""
    return f"Ctrl-C: interrupt (idle: {leave})"
