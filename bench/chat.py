"""`voicecli chat`: the cost of the streaming markdown renderer, and the time to the first prompt.

(a) CPU time to render a 20,000-token markdown answer streamed in 1-token deltas through the TTY
    renderer (a rich Console with force_terminal=True writing to a StringIO), next to printing it
    raw and to rendering the finished answer once with rich; then the answer doubled (linearity).
(b) wall time from starting `voicecli chat` in a pty until the prompt accepts input.
"""

from __future__ import annotations

import io
import os
import random
import re
import statistics
import tempfile
import time

from common import VENV_BIN, Section, ms

TOKENS = 20_000
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda".split()


def answer(tokens: int) -> list[str]:
    """A deterministic markdown answer (headings, paragraphs, lists, code) as word-sized deltas."""
    rng = random.Random(7)
    parts: list[str] = []
    pieces: list[str] = []
    while len(pieces) < tokens:
        kind = rng.random()
        if kind < 0.1:
            parts.append(f"## Section {len(parts)}\n\n")
        elif kind < 0.25:
            body = "\n".join(f"    total_{i} = compute({i}, 'value')  # step {i}" for i in range(8))
            parts.append(f"```python\ndef f():\n{body}\n    return total_0\n```\n\n")
        elif kind < 0.35:
            parts.append("".join(f"- item **{rng.choice(WORDS)}** with `code`\n" for _ in range(5)) + "\n")
        else:
            parts.append(" ".join(rng.choice(WORDS) for _ in range(60)) + " with **bold** and *emphasis*.\n\n")
        pieces = re.findall(r"\s*\S+\s*|\s+", "".join(parts))
    return pieces[:tokens]


def _cpu(fn, runs: int = 3) -> float:
    samples = []
    for _ in range(runs):
        start = time.process_time()  # all threads: includes rich Live's refresh thread
        fn()
        samples.append(time.process_time() - start)
    return statistics.median(samples)


def _console():
    from rich.console import Console

    return Console(file=io.StringIO(), force_terminal=True, width=100, height=40, soft_wrap=False,
                   highlight=False, emoji=False)


def _stream_markdown(deltas: list[str]) -> None:
    from voicecli.ui.render import MarkdownRenderer

    renderer = MarkdownRenderer(console=_console())
    for delta in deltas:
        renderer.text(delta)
    renderer.finish()


def _stream_raw(deltas: list[str]) -> None:
    from voicecli.ui.render import RawRenderer

    renderer = RawRenderer(io.StringIO())
    for delta in deltas:
        renderer.text(delta)
    renderer.finish()


def _render_once(deltas: list[str]) -> None:
    from rich.markdown import Markdown

    _console().print(Markdown("".join(deltas), code_theme="monokai"))


def _time_to_prompt(base_url: str, home: str, runs: int = 7) -> float:
    import pexpect

    env = {**os.environ, "VOICECLI_HOME": home, "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1"}
    env.pop("NO_COLOR", None)
    samples = []
    for i in range(runs + 1):
        start = time.perf_counter()
        child = pexpect.spawn(str(VENV_BIN / "voicecli"), ["chat", "-p", "offline", "--base-url", base_url],
                              env=env, dimensions=(40, 120), encoding="utf-8", timeout=30)
        child.expect_exact("\x1b[?2004h")  # bracketed paste on: the prompt is reading keys
        elapsed = time.perf_counter() - start
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
        child.close()
        if i:  # the first run warms the page cache
            samples.append(elapsed)
    return statistics.median(samples)


def run() -> Section:
    from voicecli.sim.config import SimConfig
    from voicecli.sim.server import start_in_thread

    section = Section(
        name="chat", title="chat: streaming render cost and time to the first prompt",
        intro=f"(a) CPU time (median of 3) to stream a {TOKENS:,}-token markdown answer in 1-token deltas into a "
              "fake TTY (rich Console, force_terminal, 100×40, StringIO). (b) wall time from spawning "
              "`voicecli chat -p offline` in a pty to the prompt reading keys (median of 7 after a warm-up).",
        headers=["measurement", "value", "ratio"],
    )
    one, two = answer(TOKENS), answer(2 * TOKENS)
    raw = _cpu(lambda: _stream_raw(one))
    once = _cpu(lambda: _render_once(one))
    md1 = _cpu(lambda: _stream_markdown(one))
    md2 = _cpu(lambda: _stream_markdown(two))
    section.rows += [
        ["(a) raw renderer, 20k deltas", ms(raw), "1.00× raw"],
        ["(a) rich markdown of the finished answer, once", ms(once), f"{once / raw:.0f}× raw"],
        ["(a) streaming markdown renderer, 20k deltas", ms(md1), f"{md1 / raw:.0f}× raw · {md1 / once:.2f}× once"],
        ["(a) streaming markdown renderer, 40k deltas", ms(md2), f"{md2 / md1:.2f}× the 20k answer"],
    ]
    section.notes.append(f"(a) linear: doubling the answer costs {md2 / md1:.2f}× "
                         f"({'meets' if md2 / md1 <= 2.1 else 'MISSES'} the ≤ 2× target, 5 % noise allowed).")
    section.notes.append(f"(a) ≤ 3× raw: {'meets' if md1 <= 3 * raw else 'MISSES'} it ({md1 / raw:.0f}×). Writing "
                         "to a StringIO costs almost nothing, and any markdown rendering with rich costs "
                         f"{once / raw:.0f}× that for the finished answer alone; the streaming renderer adds "
                         f"{(md1 / once - 1) * 100:.0f} % on top of rendering the answer once.")
    home = tempfile.mkdtemp(prefix="voicecli-bench-chat-")
    with start_in_thread(SimConfig()) as sim:
        prompt = _time_to_prompt(sim.base_url, home)
    section.rows.append(["(b) `voicecli chat` start to first prompt (pty)", ms(prompt),
                         f"{prompt / 0.5:.2f}× the 0.5 s target"])
    section.notes.append(f"(b) {'meets' if prompt <= 0.5 else 'MISSES'} the ≤ 0.5 s target.")
    return section
