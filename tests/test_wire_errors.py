"""HTTP errors (recorded and synthetic) → Error kind, retry policy, retry delay and exit code."""

from __future__ import annotations

import json

import pytest
from test_wire_support import traffic_bytes

from voicecli.errors import ExitCode, exit_code_for
from voicecli.events import Error
from voicecli.wire import errors


def recorded_headers(name: str) -> dict:
    return json.loads(traffic_bytes(f"{name}.meta.json"))["response"]["headers"]


@pytest.mark.parametrize("name, request_id", [
    ("responses_http_error_401_01", "req_31f5616fbb0d4dd888a6980225b0dd68"),
    ("chat_http_error_401_01", "req_e110441cdd4d4b489d1e949075fa96bc"),
])
def test_recorded_401(name, request_id):
    error = errors.from_http(401, traffic_bytes(f"{name}.json"), recorded_headers(name))
    assert error == Error("auth", "Incorrect API key provided: invalid-*****2345. You can find your API key at "
                                  "https://platform.openai.com/account/api-keys.",
                          retryable=False, request_id=request_id, code="invalid_api_key", status=401)
    assert exit_code_for(error) == ExitCode.AUTH


def body(err_type: str, code: str | None = None, message: str = "boom") -> bytes:
    return json.dumps({"error": {"message": message, "type": err_type, "param": None, "code": code}}).encode()


@pytest.mark.parametrize("status, payload, kind, retryable, exit_code", [
    (400, body("invalid_request_error", "context_length_exceeded"), "invalid_request", False, ExitCode.API),
    (403, body("permission_error"), "auth", False, ExitCode.AUTH),
    (404, body("invalid_request_error", "model_not_found"), "not_found", False, ExitCode.API),
    (408, None, "server", True, ExitCode.API),
    (409, body("conflict"), "server", True, ExitCode.API),
    (422, body("invalid_request_error"), "invalid_request", False, ExitCode.API),
    (429, body("requests", "rate_limit_exceeded"), "rate_limit", True, ExitCode.RATE_LIMIT),
    (429, body("insufficient_quota", "insufficient_quota"), "quota", False, ExitCode.RATE_LIMIT),
    (500, body("server_error"), "server", True, ExitCode.API),
    (503, b"<html><body>503 Service Unavailable</body></html>", "server", True, ExitCode.API),
])
def test_status_classification(status, payload, kind, retryable, exit_code):
    error = errors.from_http(status, payload, {})
    assert (error.kind, error.retryable, error.status) == (kind, retryable, status)
    assert exit_code_for(error) == exit_code


def test_non_json_body_gives_a_one_line_message():
    error = errors.from_http(502, b"<html>\n<h1>Bad   gateway</h1>\n</html>", {})
    assert error.message == "HTTP 502: <html> <h1>Bad gateway</h1> </html>"
    assert errors.from_http(504, None, {}).message == "HTTP 504"


def test_string_error_body():
    assert errors.from_http(400, {"error": "bad things"}, {}).message == "bad things"


def test_retry_after_headers():
    assert errors.from_http(429, None, {"Retry-After-Ms": "250", "retry-after": "9"}).retry_after == 0.25
    assert errors.from_http(429, None, {"retry-after": "2"}).retry_after == 2.0
    dated = {"retry-after": "Tue, 30 Dec 2025 18:32:46 GMT", "Date": "Tue, 30 Dec 2025 18:32:16 GMT"}
    assert errors.from_http(503, None, dated).retry_after == 30.0
    assert errors.retry_after_seconds({"retry-after": "Tue, 30 Dec 2025 18:32:46 GMT"}, now=1767119556.0) == 10.0
    assert errors.retry_after_seconds({"retry-after": "soon"}) is None


def test_long_retry_after_means_no_retry():
    assert errors.from_http(429, None, {"retry-after": "600"}).retryable is False


def test_x_should_retry_overrides_the_status():
    assert errors.from_http(400, None, {"x-should-retry": "true"}).retryable is True
    assert errors.from_http(500, None, {"X-Should-Retry": "false"}).retryable is False


def test_request_id_and_quota_never_retried():
    error = errors.from_http(429, body("insufficient_quota", "insufficient_quota"),
                             {"x-request-id": "req_1", "retry-after": "1"})
    assert (error.request_id, error.kind, error.retryable) == ("req_1", "quota", False)


def test_error_frames_flat_nested_and_realtime():
    flat = errors.from_error_frame({"type": "error", "code": "server_error", "message": "oops", "param": None})
    assert (flat.kind, flat.code, flat.retryable) == ("server", "server_error", True)
    limit = errors.from_error_frame({"type": "error", "status": 400, "error": {
        "type": "invalid_request_error", "code": "websocket_connection_limit_reached", "message": "60 minutes"}})
    assert (limit.kind, limit.status) == ("invalid_request", 400)
    realtime = errors.from_error_frame({"type": "error", "event_id": "event_1", "error": {
        "type": "invalid_request_error", "code": "session_expired", "event_id": None,
        "message": "Your session hit the maximum duration of 60 minutes.", "param": None}})
    assert (realtime.kind, realtime.code, realtime.status) == ("invalid_request", "session_expired", None)
    prompt = errors.from_error_frame({"error": {"code": "invalid_prompt", "message": "flagged"}})
    assert (prompt.kind, prompt.retryable) == ("invalid_request", False)
    auth = errors.from_error_frame({"type": "error", "error": {"type": "invalid_request_error",
                                                               "code": "invalid_api_key", "message": "bad key"}})
    assert exit_code_for(auth) == ExitCode.AUTH


def test_exit_codes_by_kind():
    expected = {"auth": 4, "rate_limit": 5, "quota": 5, "network": 6, "timeout": 6, "invalid_request": 7,
                "not_found": 7, "server": 7, "protocol": 7}
    for kind, code in expected.items():
        assert exit_code_for(Error(kind, "x")) == code


def test_connection_errors():
    assert errors.connection_error("reset").kind == "network"
    timeout = errors.connection_error("no data for 60 s", timeout=True)
    assert (timeout.kind, timeout.retryable, exit_code_for(timeout)) == ("timeout", True, ExitCode.NETWORK)
