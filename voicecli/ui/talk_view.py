"""What `voicecli talk` shows: transcripts, a state indicator, a mic meter, latency, key help.

On a terminal (stdout, or stderr when stdout is piped) a rich `Live` region at the bottom holds
the live transcripts, the state line with the meter, and a footer with the keys and the text
being typed; finished lines scroll above it. Without a terminal (or with TERM=dumb) it degrades to plain lines on
stderr. When stdout is not a terminal it carries only the final transcript, as `user: …` and
`assistant: …` lines, for pipes.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TextIO

from voicecli.sanitize import escape_controls

STATES = {
    "connecting": ("…", "connecting", "yellow"),
    "listening": ("●", "listening", "green"),
    "muted": ("◌", "listening (mic muted while the assistant speaks)", "dim"),
    "user": ("◉", "user speaking", "bold green"),
    "recording": ("⏺", "recording — Space/Enter to send", "bold red"),
    "idle": ("○", "push-to-talk — Space/Enter to record", "cyan"),
    "thinking": ("◔", "thinking", "yellow"),
    "speaking": ("♪", "speaking", "magenta"),
    "approval": ("?", "waiting for your answer", "bold yellow"),
    "reconnecting": ("↻", "reconnecting", "yellow"),
}
EIGHTHS = " ▏▎▍▌▋▊▉█"


def meter(value: float, width: int = 12) -> str:
    """A horizontal bar for a 0..1 level, in eighths of a cell."""
    cells = max(0.0, min(1.0, value)) * width
    full = int(cells)
    eighths = int((cells - full) * 8)
    bar = "█" * full + (EIGHTHS[eighths] if eighths and full < width else "")
    return bar.ljust(width, "·")


class TalkView:
    def __init__(self, *, footer: str, level: Callable[[], float] | None = None,
                 data_out: TextIO | None = None, console_file: TextIO | None = None):
        self.footer = footer
        self.level = level or (lambda: 0.0)
        self.data_out = data_out  # stdout when it is not a terminal: final lines only
        self.file = console_file or (sys.stdout if sys.stdout.isatty() else sys.stderr)
        from voicecli.ui.term import is_terminal

        self.live_mode = is_terminal(self.file)  # TERM=dumb: plain lines, no cursor codes
        self.state = "connecting"
        self.partials: dict[str, str] = {}  # role → text in progress
        self.typed = ""
        self._lock = threading.Lock()  # rich refreshes from its own thread
        self._live = None
        self._console = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if not self.live_mode:
            return
        from rich.console import Console
        from rich.live import Live

        self._console = Console(file=self.file, highlight=False)
        self._live = Live(get_renderable=self._render, console=self._console, refresh_per_second=12,
                          transient=True, redirect_stdout=False, redirect_stderr=False)
        self._live.start()

    def stop(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.stop()

    # -- updates from talk ----------------------------------------------------------------------

    def set_state(self, state: str) -> None:
        self.state = state

    def partial(self, role: str, text: str) -> None:
        with self._lock:
            self.partials[role] = text

    def final(self, role: str, text: str, *, interrupted: bool = False) -> None:
        with self._lock:
            self.partials.pop(role, None)
        shown = text + (" —" if interrupted else "")
        if self.data_out is not None:
            self.data_out.write(f"{role}: {text}\n")
            self.data_out.flush()
        if self._console is not None:
            from rich.text import Text

            label = ("you: ", "bold green") if role == "user" else ("assistant: ", "bold magenta")
            shown = escape_controls(shown, keep="\n\t")  # what was said: shown, never obeyed
            line = Text.assemble(label, shown, (" (interrupted)" if interrupted else "", "dim"))
            self._console.print(line)  # one print: the live region redraws once, below it
        elif self.data_out is None:
            self._plain(f"{role}: {shown}")

    def latency(self, to_audio_ms: float | None, to_play_ms: float | None, since: str = "end of speech") -> None:
        """One turn's latency: from `since` (where the user's speech ended, or what the clock started at
        when that is not known) to the first audio received and the first sample handed to the speaker."""
        def fmt(v: float | None) -> str:
            return f"{v:.0f} ms" if v is not None else "–"
        self.note(f"latency: {since} → first audio {fmt(to_audio_ms)} → first sound {fmt(to_play_ms)}")

    def note(self, text: str) -> None:
        if self._console is not None:
            self._console.print(escape_controls(text, keep="\n\t"), style="dim", markup=False)
        else:
            self._plain(text)

    def error(self, text: str) -> None:
        if self._console is not None:
            self._console.print("error: " + escape_controls(text, keep="\n\t"), style="red", markup=False)
        else:
            self._plain("error: " + text)

    def ask(self, question: str) -> None:
        """A question the keyboard answers (tool approval): shown on its own line."""
        if self._console is not None:
            self._console.print(escape_controls(question, keep="\n"), style="bold yellow", markup=False)
        else:
            self._plain(question)

    def set_typed(self, text: str) -> None:
        self.typed = text

    def _plain(self, text: str) -> None:
        from voicecli.sanitize import for_terminal

        print(for_terminal(f"voicecli: {text}", sys.stderr), file=sys.stderr, flush=True)

    # -- rendering (rich thread) ----------------------------------------------------------------

    def _render(self):
        from rich.console import Group
        from rich.text import Text

        icon, label, style = STATES.get(self.state, ("·", self.state, "default"))
        lines = []
        with self._lock:
            for role in ("user", "assistant"):
                text = self.partials.get(role)
                if text:
                    lines.append(Text(("you: " if role == "user" else "assistant: ") + escape_controls(text[-300:]), style="italic"))
        value = self.level()
        status = Text.assemble((f"{icon} {label}", style), "   mic ", (meter(value), "green" if value > 0.3 else "dim"))
        lines.append(status)
        footer = Text(self.footer, style="dim")
        if self.typed:
            footer = Text.assemble(("> ", "bold"), self.typed, ("▏", "blink"))
        lines.append(footer)
        return Group(*lines)
