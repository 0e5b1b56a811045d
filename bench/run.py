"""Run every benchmark in bench/ and rewrite BENCHMARKS.md.

Each module `bench/<name>.py` (except this one and `common.py`) defines `run() -> Section`;
its table is printed and written to BENCHMARKS.md under its title.

    python bench/run.py            # all benchmarks
    python bench/run.py startup    # only bench/startup.py (the file keeps the other sections)
"""

from __future__ import annotations

import importlib
import platform
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from common import Section, compile_bytecode  # noqa: E402

OUT = ROOT / "BENCHMARKS.md"
HEADER = """# Benchmarks

Made by `python bench/run.py` (one module per section in `bench/`). Machines here are shared and
noisy: compare the ratios measured side by side in one run, not absolute times across runs.
"""


def main(argv: list[str]) -> int:
    names = argv or sorted(p.stem for p in HERE.glob("*.py") if p.stem not in ("run", "common"))
    sections = _read_existing()
    compile_bytecode()  # timings of fresh processes assume an installed package's .pyc files
    for name in names:
        print(f"== {name}", file=sys.stderr, flush=True)
        section: Section = importlib.import_module(name).run()
        text = section.markdown()
        print(text)
        sections[name] = text
    body = "\n".join(sections[k] for k in sorted(sections))
    env = f"_Last run: Python {platform.python_version()}, {platform.system()} {platform.machine()}, " \
          f"{_cpu_count()} CPUs._\n"
    OUT.write_text(f"{HEADER}\n{env}\n{body}")
    print(f"wrote {OUT.relative_to(ROOT)}", file=sys.stderr)
    return 0


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 1


def _read_existing() -> dict[str, str]:
    """Sections already in BENCHMARKS.md, keyed by module name (from their <!-- bench:NAME --> marker)."""
    if not OUT.exists():
        return {}
    parts = re.split(r"(?=<!-- bench:)", OUT.read_text())
    out = {}
    for part in parts:
        m = re.match(r"<!-- bench:(\w+) -->", part)
        if m:
            out[m.group(1)] = part.rstrip() + "\n"
    return out


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
