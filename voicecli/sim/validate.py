"""Request checks, phrased like the real API's 400s (`invalid_request_error` with `param`).

Only what a client could plausibly get wrong is checked; unknown optional fields pass, as they
would on a permissive gateway. Each checker raises `ApiError` on the first problem.
"""

from __future__ import annotations

import json
from typing import Any

from .faults import error_body

BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
    "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. "
    "If you have trouble figuring out how to fix this, please contact us through our help center at "
    "help.openai.com.)"
)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        type_: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type_
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)


def missing(param: str) -> ApiError:
    return ApiError(400, f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


def _type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a decimal",
        type(None): "null",
    }.get(type(value), "a value")


def invalid_type(param: str, expected: str, value: Any) -> ApiError:
    return ApiError(
        400,
        f"Invalid type for '{param}': expected {expected}, but got {_type_name(value)} instead.",
        param,
        "invalid_type",
    )


def invalid_value(param: str, value: Any, allowed: list[str]) -> ApiError:
    choices = ", ".join(f"'{a}'" for a in allowed[:-1]) + f", and '{allowed[-1]}'" if len(allowed) > 1 else f"'{allowed[0]}'"
    return ApiError(400, f"Invalid value: '{value}'. Supported values are: {choices}.", param, "invalid_value")


def parse_json(raw: bytes | str) -> dict:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, BAD_JSON) from None
    if not isinstance(body, dict):
        raise ApiError(400, BAD_JSON)
    return body


def _check_model(body: dict) -> None:
    if "model" not in body or body["model"] is None:
        raise missing("model")
    if not isinstance(body["model"], str):
        raise invalid_type("model", "a string", body["model"])


def _check_bool(body: dict, name: str) -> None:
    if name in body and body[name] is not None and not isinstance(body[name], bool):
        raise invalid_type(name, "a boolean", body[name])


def _check_min_int(body: dict, name: str, minimum: int) -> None:
    value = body.get(name)
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid_type(name, "an integer", value)
    if value < minimum:
        raise ApiError(
            400,
            f"Invalid '{name}': integer below minimum value. Expected a value >= {minimum}, but got {value} instead.",
            name,
            "integer_below_min_value",
        )


RESPONSE_ITEM_TYPES = [
    "message",
    "function_call",
    "function_call_output",
    "reasoning",
    "item_reference",
    "web_search_call",
    "file_search_call",
    "computer_call",
    "computer_call_output",
    "custom_tool_call",
    "custom_tool_call_output",
    "compaction",
]
MESSAGE_ROLES = ["user", "assistant", "system", "developer"]


def _check_tools(tools: Any, nested: bool) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise invalid_type("tools", "an array", tools)
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise invalid_type(f"tools[{i}]", "an object", tool)
        if "type" not in tool:
            raise missing(f"tools[{i}].type")
        if tool["type"] != "function":
            continue
        if nested:  # Chat Completions: {"type":"function","function":{"name",…}}
            fn = tool.get("function")
            if not isinstance(fn, dict):
                raise missing(f"tools[{i}].function")
            if not fn.get("name"):
                raise missing(f"tools[{i}].function.name")
        elif not tool.get("name"):  # Responses: flat
            raise missing(f"tools[{i}].name")


def check_responses(body: dict, websocket: bool = False) -> None:
    """Check a `POST /v1/responses` body or a WebSocket `response.create` event."""
    if websocket:
        for name, code in (("stream", "unknown_parameter"), ("background", "unsupported_parameter")):
            if name in body:
                word = "Unknown" if code == "unknown_parameter" else "Unsupported"
                raise ApiError(400, f"{word} parameter: '{name}'.", name, code)
    _check_model(body)
    _check_bool(body, "stream")
    _check_bool(body, "store")
    _check_min_int(body, "max_output_tokens", 16)
    if "input" in body and body["input"] is not None:
        items = body["input"]
        if isinstance(items, list):
            for i, item in enumerate(items):
                _check_input_item(item, f"input[{i}]")
        elif not isinstance(items, str):
            raise invalid_type("input", "one of a string or array of input items", items)
    elif not body.get("previous_response_id") and not body.get("prompt") and not body.get("conversation"):
        raise missing("input")
    if "instructions" in body and body["instructions"] is not None and not isinstance(body["instructions"], str):
        raise invalid_type("instructions", "a string", body["instructions"])
    reasoning = body.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, dict):
        raise invalid_type("reasoning", "an object", reasoning)
    _check_tools(body.get("tools"), nested=False)


def _check_input_item(item: Any, param: str) -> None:
    if not isinstance(item, dict):
        raise invalid_type(param, "an object", item)
    kind = item.get("type")
    if kind is None:
        if "role" not in item:
            raise missing(f"{param}.role")
        kind = "message"
    if kind not in RESPONSE_ITEM_TYPES:
        raise invalid_value(f"{param}.type", kind, RESPONSE_ITEM_TYPES)
    if kind == "message":
        if item.get("role") not in MESSAGE_ROLES:
            if "role" not in item:
                raise missing(f"{param}.role")
            raise invalid_value(f"{param}.role", item.get("role"), MESSAGE_ROLES)
        if "content" not in item:
            raise missing(f"{param}.content")
        if not isinstance(item["content"], (str, list)):
            raise invalid_type(f"{param}.content", "one of a string or array of input content", item["content"])
    elif kind == "function_call":
        for name in ("call_id", "name", "arguments"):
            if name not in item:
                raise missing(f"{param}.{name}")
    elif kind == "function_call_output":
        for name in ("call_id", "output"):
            if name not in item:
                raise missing(f"{param}.{name}")


CHAT_ROLES = ["system", "assistant", "user", "function", "tool", "developer"]


def check_chat(body: dict) -> None:
    """Check a `POST /v1/chat/completions` body."""
    _check_model(body)
    _check_bool(body, "stream")
    if "messages" not in body:
        raise missing("messages")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise invalid_type("messages", "an array", messages)
    if not messages:
        raise ApiError(400, "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.", "messages", "empty_array")
    for i, msg in enumerate(messages):
        p = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise invalid_type(p, "an object", msg)
        if "role" not in msg:
            raise missing(f"{p}.role")
        if msg["role"] not in CHAT_ROLES:
            raise invalid_value(f"{p}.role", msg["role"], CHAT_ROLES)
        if msg["role"] == "tool" and "tool_call_id" not in msg:
            raise missing(f"{p}.tool_call_id")
        if msg["role"] != "assistant" and "content" not in msg:
            raise missing(f"{p}.content")
    for name in ("max_tokens", "max_completion_tokens"):
        _check_min_int(body, name, 1)
    opts = body.get("stream_options")
    if opts is not None:
        if not body.get("stream"):
            raise ApiError(
                400,
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                "stream_options",
                "invalid_value",
            )
        if not isinstance(opts, dict):
            raise invalid_type("stream_options", "an object", opts)
    _check_tools(body.get("tools"), nested=True)
