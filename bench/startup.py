"""Startup cost: `voicecli --version` / `--help` next to `import typer` and `llm --version`.

Target (issue "Foundation"): `voicecli --version` within 3x of `python -c "import typer"`.
"""

from __future__ import annotations

import sys

from common import VENV_BIN, Section, ms, throwaway_venv, time_command


def run() -> Section:
    py = sys.executable
    voicecli = str(VENV_BIN / "voicecli")
    cases = [
        ("python -c pass (interpreter floor)", [py, "-c", "pass"]),
        ('python -c "import typer"', [py, "-c", "import typer"]),
        ("voicecli --version", [voicecli, "--version"]),
        ("voicecli --help", [voicecli, "--help"]),
        ("voicecli profiles list", [voicecli, "profiles", "list"]),
    ]
    llm_bin = throwaway_venv("llm", ["llm"])
    if llm_bin is not None:
        cases.append(("llm --version (throw-away venv)", [str(llm_bin / "llm"), "--version"]))
    times = {label: time_command(argv) for label, argv in cases}
    typer_time = times['python -c "import typer"']
    section = Section(
        name="startup", title="Startup time",
        intro="Median wall time of 15 runs after 2 warm-ups; ratio against `python -c \"import typer\"` "
              "measured in the same run. Target: `voicecli --version` ≤ 3.0×.",
        headers=["command", "median", "× import typer"],
    )
    for label, t in times.items():
        section.rows.append([f"`{label}`", ms(t), f"{t / typer_time:.2f}×"])
    ratio = times["voicecli --version"] / typer_time
    section.notes.append(f"`voicecli --version` / `import typer` = {ratio:.2f}× "
                         f"({'meets' if ratio <= 3 else 'MISSES'} the ≤ 3× target).")
    if llm_bin is None:
        section.notes.append("`llm` could not be installed in a throw-away venv, so it is not compared.")
    return section
