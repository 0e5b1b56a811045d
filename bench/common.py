"""Shared helpers for the benchmarks: timing subprocesses, throw-away venvs, markdown tables."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
THROWAWAY = ROOT / ".bench-venvs"  # git-ignored


def compile_bytecode() -> None:
    """Compile voicecli's modules to bytecode, as installing the wheel does. A source checkout run
    with PYTHONDONTWRITEBYTECODE=1 (as on these machines) would otherwise compile every module
    from source in every process, while the libraries it is compared with have their .pyc files."""
    import compileall

    compileall.compile_dir(str(ROOT / "voicecli"), quiet=1)


@dataclass
class Section:
    name: str  # module name, used as the section marker
    title: str
    intro: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"<!-- bench:{self.name} -->", f"## {self.title}", "", self.intro, "",
                 "| " + " | ".join(self.headers) + " |", "|" + "---|" * len(self.headers)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.notes:
            lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def time_command(argv: list[str], runs: int = 15, warmup: int = 2, env: dict | None = None) -> float:
    """Median wall time of a command, in seconds (after warm-up runs that fill the page cache)."""
    env = {**os.environ, **(env or {})}
    samples = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
        if i >= warmup:
            samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def time_commands(commands: dict[str, list[str]], runs: int = 10, warmup: int = 2,
                  env: dict | None = None) -> dict[str, float]:
    """Median wall time of each command, in seconds; the commands take turns, run after run, so
    a neighbour's load on a shared machine hits them alike and their ratios stay meaningful. Each
    round starts one command later: whatever runs first (or after a particular one) pays or saves
    the same for every command."""
    env = {**os.environ, **(env or {})}
    samples: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    for i in range(warmup + runs):
        for name in names[i % len(names):] + names[:i % len(names)]:
            argv = commands[name]
            start = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
            if i >= warmup:
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(got) for name, got in samples.items()}


def throwaway_venv(name: str, packages: list[str]) -> Path | None:
    """A venv under .bench-venvs/ with `packages` installed; None if they cannot be installed here."""
    venv = THROWAWAY / name
    marker = venv / ".installed"
    if marker.exists():
        return venv / "bin"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *packages], check=True, capture_output=True,
                       timeout=600)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"cannot install {packages}: {exc}", file=sys.stderr)
        return None
    marker.write_text(" ".join(packages))
    return venv / "bin"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"
