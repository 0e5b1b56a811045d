"""Recorded traffic the tests read but the project may not carry.

The shared reference data sits beside the repository (`../shared`). Its COPYABLE.md says which
recordings may be copied into `tests/traffic/` and which may only be read and replayed from
`../shared` at test time: those are listed here, and `recording()` finds them there, skipping the
test on a clone without `../shared`. VOICECLI_TEST_SHARED points elsewhere (e.g. /nonexistent, to
see what runs without it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TRAFFIC = Path(__file__).parent / "traffic"
SHARED = Path(os.environ.get("VOICECLI_TEST_SHARED") or Path(__file__).resolve().parents[2] / "shared")

# recording (the part of a file name before the first dot) -> its folder in ../shared
SHARED_ONLY = {
    **dict.fromkeys(["realtime_ws_audio_vad_01", "realtime_ws_text_in_audio_out_01", "realtime_ws_tool_call_01",
                     "responses_sse_text_after_tool_01", "responses_sse_tool_01"], "traffic"),
    **dict.fromkeys(["compat_ollama_chat_sse_01", "mcp_http_deepwiki_session_01", "mcp_stdio_everything_01",
                     "stt_json_whisper_01", "stt_verbose_json_whisper_01", "tts_pcm_01", "tts_wav_01"],
                    "traffic-audio"),
}


def recording(name: str) -> Path:
    """The recorded file `name` ("tts_pcm_01.pcm"): from tests/traffic, or for a recording that may not
    be carried, from ../shared; the test is skipped when ../shared is absent."""
    folder = SHARED_ONLY.get(name.split(".")[0])
    if folder is None:
        return TRAFFIC / name
    if not (SHARED / folder).is_dir():
        pytest.skip(f"needs ../shared/{folder} (recorded traffic that may not be copied into the project)")
    return SHARED / folder / name
