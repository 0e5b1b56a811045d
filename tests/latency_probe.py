"""Headless cascade `talk` in-process (run as a subprocess by test_talk_cascade.py): its own
latency line goes to stderr as usual, and MARKS (a JSON file) gets the ground truth the line is
checked against — the monotonic time of the `--input` file's first block (the file's time 0: the
source is paced at real time) and of each answer's first sample handed to the speaker.

    python tests/latency_probe.py BASE_URL INPUT.wav OUTPUT.wav MARKS.json [-o key=value …]
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path


def main(base_url: str, wav_in: str, wav_out: str, marks_path: str, overrides: list[str]) -> int:
    from voicecli import profiles
    from voicecli.audio import wav
    from voicecli.conversation import Conversation
    from voicecli.talk import Talk
    from voicecli.voice.options import TalkOptions

    sys.stdin = open(os.devnull)
    marks: dict = {}
    blocks = wav.WavSource.blocks

    async def timed(self):
        async for pcm, captured in blocks(self):
            marks.setdefault("first_block", captured)
            yield pcm, captured

    wav.WavSource.blocks = timed
    prof = profiles.load("offline", overrides=profiles.parse_options(overrides))
    prof.connection.base_url, prof.connection.transport = base_url, "chat"
    opts = TalkOptions(input_wav=Path(wav_in), output_wav=Path(wav_out), no_log=True, engine="cascade")
    talk = Talk(prof, opts, Conversation(prof, None))
    code = asyncio.run(talk.run())
    marks["first_played"] = sorted(talk.buffer.first_played.values())
    Path(marks_path).write_text(json.dumps(marks))
    return code


if __name__ == "__main__":
    args = sys.argv[1:]
    overrides = [args[i + 1] for i, a in enumerate(args) if a == "-o"]
    positional = [a for i, a in enumerate(args) if a != "-o" and (i == 0 or args[i - 1] != "-o")]
    sys.exit(main(*positional[:4], overrides))
