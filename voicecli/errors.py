"""Exit codes and the error types that carry them to the CLI edge.

Every failure the user can cause or meet is a `VoicecliError` with an exit code and a one-line
message (plus an optional hint); `cli.main` prints it without a traceback unless `--debug`.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1  # a bug in voicecli
    USAGE = 2  # bad flags or arguments
    CONFIG = 3  # bad profile, missing API key variable, unknown device
    AUTH = 4  # 401 / 403
    RATE_LIMIT = 5  # 429 or quota, after retries
    NETWORK = 6  # connection, DNS, TLS, timeout, dropped stream
    API = 7  # other 4xx, 5xx, response.failed, mid-stream error
    INCOMPLETE = 8  # the answer was cut short (max tokens, content filter)
    HANGUP = 129  # SIGHUP (the terminal went away); handled like Ctrl-C
    INTERRUPTED = 130  # Ctrl-C; partial output is kept
    TERMINATED = 143  # SIGTERM; handled like Ctrl-C


EXIT_CODE_HELP = """\
\b
Exit codes: 0 ok · 1 internal error · 2 usage error · 3 configuration error ·
4 authentication/permission · 5 rate limit or quota · 6 network/timeout ·
7 API or server error · 8 incomplete answer · 130 interrupted (Ctrl-C) ·
129/143 hung up/terminated (SIGHUP/SIGTERM)"""


class VoicecliError(Exception):
    """An error with a user-facing one-line message and an exit code."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, hint: str | None = None, exit_code: ExitCode | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(VoicecliError):
    exit_code = ExitCode.CONFIG


class UsageError(VoicecliError):
    exit_code = ExitCode.USAGE


def exit_code_for(error) -> ExitCode:
    """The exit code of a neutral `events.Error` that ended a run (front ends map errors here,
    never in the wire layer)."""
    if error.kind in ("rate_limit", "quota"):
        return ExitCode.RATE_LIMIT
    if error.kind == "auth":
        return ExitCode.AUTH
    if error.kind in ("network", "timeout"):
        return ExitCode.NETWORK
    return ExitCode.API
