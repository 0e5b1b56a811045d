"""Shared pytest fixtures (keep this small and general)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Callable, Iterator

import pytest

# A background job of a non-interactive shell starts with SIGINT ignored, and an ignored signal stays
# ignored across exec: every CLI subprocess would then shrug off the Ctrl-C the tests send it. With a
# handler installed here instead, exec resets SIGINT to its default in each child, whoever ran pytest.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

TESTS = Path(__file__).parent
TRAFFIC = TESTS / "traffic"  # recorded real traffic, copied from the shared set (see traffic/SOURCES.md)


@pytest.fixture
def traffic_dir() -> Path:
    return TRAFFIC


@pytest.fixture
def make_sim() -> Iterator[Callable[..., object]]:
    """Start simulators (in threads, on ephemeral ports): make_sim(api_key=…, script=…) -> SimHandle."""
    from voicecli.sim.config import SimConfig
    from voicecli.sim.server import start_in_thread

    handles = []

    def make(**config) -> object:
        handle = start_in_thread(SimConfig(**config))
        handles.append(handle)
        return handle

    yield make
    for handle in handles:
        handle.stop()


@pytest.fixture
def sim(make_sim):
    """A default simulator: no key required, no script, no delays."""
    return make_sim()
