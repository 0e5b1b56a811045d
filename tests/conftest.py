"""Shared pytest fixtures (keep this small and general)."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest

# A background job of a non-interactive shell starts with SIGINT ignored, and an ignored signal stays
# ignored across exec: every CLI subprocess would then shrug off the Ctrl-C the tests send it. With a
# handler installed here instead, exec resets SIGINT to its default in each child, whoever ran pytest.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# pytest caches the assertion-rewritten test modules as .pyc files, but not under
# PYTHONDONTWRITEBYTECODE=1: each worker would rewrite all of them again, ~2 s of CPU a worker a run
sys.dont_write_bytecode = False

TESTS = Path(__file__).parent
TRAFFIC = TESTS / "traffic"  # recorded real traffic, copied from the shared set (see traffic/SOURCES.md)


def pytest_configure(config):
    """Once per run (not per worker): compile voicecli to bytecode, as installing it does. Under
    PYTHONDONTWRITEBYTECODE=1 every CLI subprocess would otherwise compile its modules from source,
    about 0.2 s of CPU each time, hundreds of times a run."""
    if not hasattr(config, "workerinput"):
        import compileall

        compileall.compile_dir(str(TESTS.parent / "voicecli"), quiet=1)


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


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """The long tests first, so parallel workers take them on while the short ones fill the gaps (instead
    of one worker finishing a 20-second talk test after the others ran dry). The audio tests share one
    worker (`--dist loadgroup`): one PulseAudio stack, and one real-time test on it at a time."""
    for item in items:
        if item.get_closest_marker("audio"):
            item.add_marker(pytest.mark.xdist_group("audio"))
    # Within the audio group the tests that run alone come last: at the start the other workers are still
    # collecting (~1.6 s of CPU each, before any lock), which disturbed the leaking-speaker test once.
    items.sort(key=lambda item: (0 if item.get_closest_marker("audio") else 1 if item.get_closest_marker("slow") else 2,
                                 item.get_closest_marker("alone") is not None))


# Tests marked `alone` judge real-time echo cancellation, which busy CPUs disturb (issue 27). Where talk
# under test may run at real-time priority (tests/audio/stack.py, REALTIME: root or an RLIMIT_RTPRIO)
# they run among the others (unless marked `alone(even_realtime=True)`); elsewhere they run while no
# other test of this suite runs on the machine.
# A machine-wide reader-writer lock: every test holds it shared, an `alone` test exclusively; the gate
# keeps new tests from starting (here and in any other run of this suite) while one waits for the rest.
_LOCKS = Path(tempfile.gettempdir()) / f"voicecli-tests-{os.getuid()}"


def _talk_runs_realtime() -> bool:
    from audio.stack import REALTIME  # (imports numpy: only for the tests marked alone)

    return REALTIME


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    import fcntl

    marker = item.get_closest_marker("alone")
    alone = marker is not None and (marker.kwargs.get("even_realtime") or not _talk_runs_realtime())
    with open(f"{_LOCKS}.gate.lock", "a") as gate, open(f"{_LOCKS}.tests.lock", "a") as tests:
        fcntl.flock(gate, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        fcntl.flock(tests, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if not alone:
            fcntl.flock(gate, fcntl.LOCK_UN)
        yield
    # closing the files released the locks


_yielded = False


def pytest_runtest_setup(item):
    """A parallel worker lowers its priority (and its children's) for good at its first test that does not
    play real-time audio. The audio tests run first, on one worker, at normal priority: what they time is
    talk's own real-time work, not how busy the other workers keep the CPUs."""
    global _yielded
    if not _yielded and "PYTEST_XDIST_WORKER" in os.environ and not item.get_closest_marker("audio"):
        os.nice(10)
        _yielded = True


def pytest_xdist_auto_num_workers(config):
    """Workers for `-n auto`: the whole suite mostly waits (real-time audio, subprocesses, servers), so
    four per core (at most 16) keep the CPUs busy; without the slow tests it waits far less, and two per
    core do (each worker costs its start-up). VOICECLI_TEST_WORKERS overrides."""
    per_core = 2 if "not slow" in (config.option.markexpr or "") else 4
    return int(os.environ.get("VOICECLI_TEST_WORKERS") or min(per_core * (os.cpu_count() or 1), 16))
