"""The simulator: start-up time and concurrent streams.

Target (issue "simulator"): starts in under 0.5 s; serves many concurrent connections.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import time

from common import VENV_BIN, Section, ms


def run() -> Section:
    from voicecli.sim.config import SimConfig
    from voicecli.sim.server import start_in_thread

    import aiohttp  # noqa: F401  -- pay the one-off import before timing start-up

    section = Section(name="sim", title="Simulator", intro="Median of 7 runs.",
                      headers=["measurement", "value", "note"])
    starts = []
    for _ in range(7):
        t0 = time.perf_counter()
        handle = start_in_thread(SimConfig())
        starts.append(time.perf_counter() - t0)
        handle.stop()
    section.rows.append(["start in-process (`start_in_thread`) until listening", ms(statistics.median(starts)),
                         "target < 500 ms"])
    cli = []
    for _ in range(7):
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(VENV_BIN / "voicecli"), "sim"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        proc.stdout.readline()  # the base URL, printed once the port is open
        cli.append(time.perf_counter() - t0)
        proc.terminate()
        proc.wait(5)
    section.rows.append(["`voicecli sim` until the URL is printed (new process)", ms(statistics.median(cli)),
                         "includes interpreter and imports"])
    with start_in_thread(SimConfig()) as sim:
        for n in (10, 100):
            elapsed = asyncio.run(_concurrent(sim.base_url, n))
            section.rows.append([f"{n} concurrent streamed Responses requests (httpx, one client)",
                                 ms(elapsed), f"{n / elapsed:.0f} responses/s"])
    return section


async def _concurrent(base_url: str, n: int) -> float:
    import httpx

    body = {"model": "sim-1", "input": "a few words to echo back", "stream": True}
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=n)) as client:
        async def one() -> None:
            async with client.stream("POST", f"{base_url}/responses", json=body) as resp:
                async for _ in resp.aiter_raw():
                    pass
                assert resp.status_code == 200
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return time.perf_counter() - t0
