"""One-line human messages shared by the front ends: errors, usage summaries."""

from __future__ import annotations

import logging
import sys

from voicecli.events import Error, Usage

_WHAT = {
    "auth": "authentication failed at",
    "rate_limit": "rate limited by",
    "quota": "out of quota at",
    "network": "network error talking to",
    "timeout": "timed out waiting for",
    "invalid_request": "request rejected by",
    "not_found": "not found at",
    "server": "server error from",
    "protocol": "unexpected data from",
}


def describe_error(error: Error, base_url: str, retries: int = 0) -> str:
    """E.g. `rate limited by https://api.openai.com/v1 (429, request req_abc); retried 2 times — try
    again in 20 s: <server message>`. The message never carries the API key (transports redact), nor a password in the URL."""
    details = [str(error.status)] if error.status else []
    if error.code and error.code != error.kind:
        details.append(error.code)
    if error.request_id:
        details.append(f"request {error.request_id}")
    line = f"{_WHAT.get(error.kind, 'error from')} {base_url}"
    if details:
        line += f" ({', '.join(details)})"
    if retries:
        line += f"; retried {retries} time{'s' * (retries != 1)}"
    if error.retry_after and error.kind in ("rate_limit", "server"):
        line += f" — try again in {error.retry_after:g} s"
    from voicecli.sanitize import for_terminal, redact

    # the transports redacted the message already; this is the last line of defence (and the URL's userinfo)
    return for_terminal(redact(f"{line}: {error.message}"), sys.stderr)


def error_hint(error: Error, base_url: str, profile=None) -> str | None:
    """A hint for errors that usually mean a typo in the base URL (a 404 from a root without /v1), or
    a 401 from a server that was asked without a key (`profile`: the one that asked)."""
    if error.status == 401 and profile is not None:
        return profile.missing_key_hint()
    if error.status == 404 and error.code != "model_not_found":
        from voicecli.transport.urls import lacks_v1, with_v1

        if lacks_v1(base_url):
            return f"most OpenAI-style APIs live under /v1: did you mean --base-url {with_v1(base_url)}?"
    return None


def failure(error: Error, base_url: str, *, stage: str | None = None, retries: int = 0, profile=None):
    """A request that failed for good as the one error line the CLI prints (`stage`: "speech-to-text",
    "text-to-speech"… of a voice pipeline), with its hint and exit code."""
    from voicecli.errors import VoicecliError, exit_code_for

    line = describe_error(error, base_url, retries)
    return VoicecliError(f"{stage} failed: {line}" if stage else line, hint=error_hint(error, base_url, profile),
                         exit_code=exit_code_for(error))


def session_failure(exc, base_url: str, profile):
    """A voice session's `SessionError` as the error line: its stage names the step (speech-to-text…),
    and the hint names the key variable of the profile only when the profile's own endpoint refused
    (a speech endpoint may have its own)."""
    error = failure(exc.error, exc.base_url or base_url, stage=exc.stage, retries=exc.retries,
                    profile=profile if exc.stage is None else None)
    error.exit_code = exc.exit_code
    return error


def usage_line(usage: Usage, *, ttft_ms: float | None, total_ms: float, model: str, transport: str,
               cost_usd: float | None = None, priced: bool = False) -> str:
    """`priced`: end with the cost (`cost_usd`, where None means the price is unknown)."""
    ttft = f"{ttft_ms:.0f} ms" if ttft_ms is not None else "–"
    line = (f"{model} over {transport} · {usage.input_tokens} in ({usage.cached_tokens} cached) · "
            f"{usage.output_tokens} out ({usage.reasoning_tokens} reasoning) · first token {ttft} · "
            f"total {total_ms:.0f} ms")
    if priced:
        from voicecli.pricing import format_usd

        line += f" · {format_usd(cost_usd)}"
    return line


class _Handler(logging.StreamHandler):
    def format(self, record: logging.LogRecord) -> str:
        """A note may quote what a server sent (a skipped event, a retried error): no key, and on a
        terminal no control characters."""
        from voicecli.sanitize import for_terminal, redact

        return for_terminal(redact(super().format(record)), self.stream)

    def emit(self, record: logging.LogRecord) -> None:
        spinner = sys.modules.get("voicecli.ui.spinner")  # a waiting indicator is erased first
        if spinner is not None:
            spinner.clear_line()
        super().emit(record)


def setup_logging(debug: bool) -> None:
    """Library notes (retries, skipped events) go to stderr: warnings always, details with --debug."""
    logger = logging.getLogger("voicecli")
    if logger.handlers:
        return
    handler = _Handler(sys.stderr)
    handler.setFormatter(logging.Formatter("voicecli: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)
    logger.propagate = False
    # a wait for a retry is never silent on a terminal; scripts see only the final error line
    logging.getLogger("voicecli.retry").setLevel(logging.DEBUG if debug or sys.stderr.isatty() else logging.WARNING)
