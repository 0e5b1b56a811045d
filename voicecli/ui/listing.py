"""How the listing commands (`profiles list`, `devices`, `tools list`, `models`, `logs`) print:
`--json` indented on a terminal and one line when piped; tables aligned on a terminal and
tab-separated when piped."""

from __future__ import annotations

import json
import sys
from typing import Any


def print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2 if sys.stdout.isatty() else None))


def print_table(rows: list[list[str]], headers: list[str]) -> None:
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*headers, box=None, header_style="bold")
        for row in rows:
            table.add_row(*row)
        Console().print(table)
    else:  # pipes get tab-separated lines, no header decoration
        print("\t".join(headers))
        for row in rows:
            print("\t".join(row))
