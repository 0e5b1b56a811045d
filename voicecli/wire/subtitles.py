"""Subtitle transcripts (SRT, WebVTT) → the words, for speech-to-text servers that answer them.

A transcription server configured for subtitles, or one that ignores `response_format`, answers
cues: a number or identifier, a timing line (`00:00:01,000 --> 00:00:02,500`) and the cue's text.
Only the text is what the user said. Any other text is returned as it is.
"""

from __future__ import annotations

import re

_TIME = r"(?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3}"
TIMING = re.compile(rf"^\s*{_TIME}\s+-->\s+{_TIME}")
_TAG = re.compile(r"</?(?:[a-z]+|\d[\d:.]*)(?:[.\s][^>]*)?>", re.I)  # WebVTT <v Name>, <i>, <00:00.500>


def subtitle_words(text: str) -> str:
    """The words of an SRT or WebVTT document, cue after cue on one line; other text unchanged."""
    lines = text.replace("\r\n", "\n").split("\n")
    if not any(TIMING.match(line) for line in lines):
        return text
    words: list[str] = []
    in_cue = False
    for line in lines:
        if TIMING.match(line):
            in_cue = True  # the number or identifier above it was not text; what follows is
        elif not line.strip():
            in_cue = False  # a blank line ends a cue (and the WEBVTT header, NOTE and STYLE blocks)
        elif in_cue:
            words.append(_TAG.sub("", line).strip())
    return " ".join(w for w in words if w)
