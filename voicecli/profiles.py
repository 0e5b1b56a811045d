"""TOML profiles → typed, validated settings.

A profile is a TOML file with `description`, `extends`, and the tables `[connection]`, `[model]`,
`[voice]`, `[ui]`, `[[tools]]` and `[[mcp]]` (MCP servers whose tools join `[[tools]]`). The dataclasses below are the one source of truth for every
key: its type, default, allowed values and range drive validation, `-o KEY=VALUE`, `profiles set`
and `profiles show`.

Precedence: CLI flag > environment > profile (child over `extends` parent) > built-in default.
Model settings left unset are *omitted* from requests (None here), never sent as null.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicecli import paths
from voicecli.errors import ConfigError, UsageError
from voicecli.items import HOSTED_TYPES, ToolDef
from voicecli.items import option as _opt

SIM_BASE_URL = "sim"  # base_url value that means "start the built-in simulator in-process"
OPENAI_HOST = "api.openai.com"


def requires_key(base_url: str) -> bool:
    """OpenAI's own API always wants a key; other servers often need none (Ollama, llama.cpp, vLLM)."""
    from urllib.parse import urlsplit

    try:
        return (urlsplit(base_url).hostname or "") == OPENAI_HOST
    except ValueError:
        return True


TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class Connection:
    """`[connection]`: where the API is and how to reach it."""

    base_url: str = _opt("https://api.openai.com/v1", help="API root; 'sim' starts the built-in simulator")
    api_key_env: str = _opt("OPENAI_API_KEY", help="name of the env var holding the key; '' sends none")
    transport: str = _opt("ws", choices=("ws", "sse", "chat"), help="text transport")
    connect_timeout: float = _opt(10.0, lo=0.1, hi=600, help="seconds to open a connection")
    read_timeout: float = _opt(60.0, lo=0.1, hi=3600, help="seconds of silence before a stream is dropped")
    max_retries: int = _opt(2, lo=0, hi=20, help="retries on connection errors, 408/409/429/5xx")
    ws_max_age: float = _opt(3300.0, lo=1, hi=3600, help="rotate the Responses WebSocket after this many seconds")
    headers: dict[str, str] = _opt(factory=dict, help="extra HTTP headers")


@dataclass
class ModelSettings:
    """`[model]`: the text model and its request settings (unset ones are not sent)."""

    name: str = _opt("gpt-5.5", help="model for chat and infer")
    instructions: str | None = _opt(help="system/developer instructions")
    temperature: float | None = _opt(lo=0, hi=2)
    top_p: float | None = _opt(lo=0, hi=1)
    max_output_tokens: int | None = _opt(lo=1)
    frequency_penalty: float | None = _opt(lo=-2, hi=2)
    presence_penalty: float | None = _opt(lo=-2, hi=2)
    seed: int | None = _opt()
    service_tier: str | None = _opt(choices=("auto", "default", "flex", "scale", "priority"))
    reasoning_effort: str | None = _opt(choices=("none", "minimal", "low", "medium", "high", "xhigh", "max"))
    reasoning_summary: str | None = _opt(choices=("auto", "concise", "detailed"))
    verbosity: str | None = _opt(choices=("low", "medium", "high"))
    parallel_tool_calls: bool | None = _opt()
    tool_choice: str | dict | None = _opt(help="'auto' | 'none' | 'required' | a tool name")
    max_tool_rounds: int = _opt(10, lo=1, hi=100, help="tool-call rounds before a turn is ended")
    store: bool = _opt(False, help="let the server store responses (previous_response_id over HTTP)")
    think_tags: str | None = _opt(choices=("auto", "keep"),
                                  help="chat transport: a leading <think> block is reasoning (auto, the default) or text (keep)")
    price: dict | None = _opt(help="USD per 1M tokens {input, cached_input, output}; overrides the built-in price table")

    def request_settings(self) -> dict[str, Any]:
        """The settings that were set, by key; unset ones are left out entirely."""
        skip = {"name", "instructions", "max_tool_rounds", "price"}
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name not in skip and value is not None:
                out[f.name] = value
        return out


@dataclass
class VoiceSettings:
    """`[voice]`: `talk`'s engine, voice, turn detection, audio devices and speech models."""

    engine: str = _opt("auto", choices=("auto", "realtime", "cascade"),
                       help="talk over the Realtime API, or speech-to-text → text model → text-to-speech; "
                            "auto: cascade when the transport is chat")
    model: str = _opt("gpt-realtime", help="Realtime model for talk")
    voice: str = _opt("marin")
    speed: float | None = _opt(lo=0.25, hi=4.0, help="Realtime: 0.25–1.5; cascade text-to-speech: 0.25–4")
    instructions: str | None = _opt(help="overrides model.instructions in talk")
    output_modalities: str = _opt("audio", choices=("audio", "text"))
    turn_detection: str = _opt("server_vad", choices=("server_vad", "semantic_vad", "none"))
    vad_threshold: float | None = _opt(lo=0, hi=1)
    vad_prefix_padding_ms: int | None = _opt(lo=0, hi=5000)
    vad_silence_duration_ms: int | None = _opt(lo=0, hi=10000)
    vad_eagerness: str | None = _opt(choices=("low", "medium", "high", "auto"))
    barge_in_ms: int = _opt(64, lo=0, hi=2000,
                            help="voice the local VAD must hear (on the echo-cancelled mic) to stop the assistant: "
                                 "Realtime with echo cancellation, and the cascade (where it also starts a turn)")
    preemptive_ms: int = _opt(200, lo=0, hi=5000,
                              help="cascade: at this much silence the answer is started while the turn-end silence "
                                   "still runs (discarded if you go on); 0 turns it off")
    eager_end_ms: int = _opt(250, lo=0, hi=10000,
                             help="cascade: turn-end silence when your words so far end a sentence (. ? !)")
    max_end_ms: int = _opt(1200, lo=0, hi=10000,
                           help="cascade: turn-end silence when they stop mid-clause (and, but, a comma)")
    transcription_model: str | None = _opt("gpt-4o-mini-transcribe", help="'' turns input transcription off")
    transcription_language: str | None = _opt()
    transcription_prompt: str | None = _opt(help="cascade: words and spellings to expect (speech-to-text prompt)")
    transcription_base_url: str | None = _opt(help="cascade: speech-to-text API root (default: connection.base_url)")
    transcription_api_key_env: str | None = _opt(help="cascade: env var of its key (default: connection.api_key_env on the same server, else none)")
    speech_model: str = _opt("gpt-4o-mini-tts", help="cascade: text-to-speech model")
    speech_instructions: str | None = _opt(help="cascade: how to speak (gpt-4o-mini-tts)")
    speech_base_url: str | None = _opt(help="cascade: text-to-speech API root (default: connection.base_url)")
    speech_api_key_env: str | None = _opt(help="cascade: env var of its key (default: connection.api_key_env on the same server, else none)")
    noise_reduction: str | None = _opt(choices=("near_field", "far_field", "none"))
    max_output_tokens: int | None = _opt(lo=1, hi=4096)
    input_device: str | None = _opt(help="index or name substring")
    output_device: str | None = _opt(help="index or name substring")
    half_duplex: bool | None = _opt(help="mute the mic while the assistant speaks (default: only without echo cancellation)")
    echo_cancellation: bool = _opt(True, help="WebRTC echo cancellation on the mic (full-duplex on speakers)")
    noise_suppression: bool = _opt(True, help="WebRTC noise suppression on the mic (with echo cancellation)")
    auto_gain_control: bool = _opt(False, help="WebRTC gain control on the mic (with echo cancellation)")
    session_max_age: float = _opt(3300.0, lo=10, hi=3600, help="seconds before a Realtime session is renewed")


@dataclass
class UiSettings:
    """`[ui]`: terminal behaviour and input limits."""

    vi_mode: bool = _opt(False, help="vi key bindings in chat")
    markdown: bool = _opt(True, help="render markdown on a TTY")
    max_input_mib: float = _opt(50.0, lo=0.001, hi=4096, help="largest stdin, -f file or page (and chat /file) taken, in MiB")


@dataclass
class McpServerDef:
    """One `[[mcp]]` table: an MCP server whose tools are offered to the model like `[[tools]]`."""

    name: str = _opt("", help="short name; its tools are offered as NAME__TOOL")
    command: list[str] | None = _opt(help="stdio server: the argv to start (no shell)")
    env: dict[str, str] = _opt(factory=dict, help="stdio: variables added to a minimal environment; $VAR expands")
    cwd: str | None = _opt(help="stdio: working directory (relative to the profile's folder)")
    url: str | None = _opt(help="Streamable HTTP server: the endpoint URL")
    headers: dict[str, str] = _opt(factory=dict, help="HTTP: request headers; ${VAR} expands, values never shown")
    approval: str = _opt("ask", choices=("ask", "auto", "never"), help="policy for this server's tools")
    tool_approval: dict[str, str] = _opt(factory=dict, help="per-tool overrides: { tool = \"auto\" }")
    tools: list[str] | None = _opt(help="offer only these tools (names as the server lists them)")
    exclude_tools: list[str] = _opt(factory=list, help="never offer these tools")
    timeout: float = _opt(60.0, lo=0.1, hi=3600, help="seconds one tool call may take")
    startup_timeout: float = _opt(30.0, lo=0.1, hi=600, help="seconds to start and list tools")
    max_output_bytes: int = _opt(65536, lo=1)


SECTIONS: dict[str, type] = {"connection": Connection, "model": ModelSettings, "voice": VoiceSettings, "ui": UiSettings}
TOP_LEVEL = {"description": str, "extends": str}


@dataclass
class Profile:
    """A loaded profile: its sections after `extends`, the environment and overrides."""

    name: str
    source: str  # "builtin" | "user" | "path"
    path: Path | None
    description: str = ""
    connection: Connection = field(default_factory=Connection)
    model: ModelSettings = field(default_factory=ModelSettings)
    voice: VoiceSettings = field(default_factory=VoiceSettings)
    ui: UiSettings = field(default_factory=UiSettings)
    tools: list[ToolDef] = field(default_factory=list)
    mcp: list[McpServerDef] = field(default_factory=list)

    @property
    def uses_simulator(self) -> bool:
        return self.connection.base_url == SIM_BASE_URL

    def talk_engine(self, engine: str | None = None) -> str:
        """`talk --engine`, else `voice.engine`; auto: a cascade when the text transport is Chat
        Completions (OpenAI-compatible servers have no Realtime API)."""
        engine = engine or self.voice.engine
        if engine == "auto":
            return "cascade" if self.connection.transport == "chat" else "realtime"
        return engine

    def api_key(self, var: str | None = None, base_url: str | None = None) -> str | None:
        """The key from the env var the profile names (or `var`, for another endpoint at `base_url`).
        Missing, it is an error for OpenAI's own API; any other server (Ollama, llama.cpp, vLLM…) is
        asked without one, and if it answers 401 `missing_key_hint` says what to set."""
        var = self.connection.api_key_env if var is None else var
        url = base_url or self.connection.base_url
        if not var or url == SIM_BASE_URL:
            return None
        value = os.environ.get(var)
        if not value:  # `voicecli keys set VAR` stored one under the variable's name
            from voicecli.keys import stored

            value = stored(var)
        if not value and not requires_key(url):
            return None
        if not value:
            raise ConfigError(
                f"{var} is not set; profile '{self.name}' reads the API key from it",
                hint=f"export {var}=sk-…, or store it once: voicecli keys set {var} (or try `-p offline`, "
                     "the built-in simulator)",
            )
        from voicecli.sanitize import header_value_problem, remember_secret

        remember_secret(value)  # from now on no output, log line or error shows it
        problem = header_value_problem(value)
        if problem:  # it would go out as a broken (or an extra, injected) header: never send it
            raise ConfigError(f"{var} {problem}; profile '{self.name}' reads the API key from it",
                              hint=f"set {var} to the key alone" + (
                                  ", without spaces around it" if "whitespace" in problem else
                                  "; a .env file with Windows (CRLF) line endings leaves a \\r at the end of every value"))
        return value

    def missing_key_hint(self) -> str | None:
        """For a 401: what to set when the request went without a key; None when one was sent."""
        var = self.connection.api_key_env
        if not var:
            return (f"this server wants an API key and profile '{self.name}' sends none (api_key_env = \"\"): "
                    "set connection.api_key_env to the name of the variable that holds it")
        from voicecli.keys import stored

        if os.environ.get(var) or stored(var):
            return None
        return (f"this server wants an API key and none was sent: export {var}=…, or voicecli keys set {var} "
                f"(profile '{self.name}' reads it)")

    def as_dict(self, *, redact: bool = True) -> dict[str, Any]:
        """Resolved settings as TOML-ready data (None dropped). `redact`: every custom header value
        and tool `env` value becomes `***` (naming the variables an env value comes from), and a
        password in `base_url` is masked."""
        from voicecli.sanitize import MASK, mask_url_password

        out: dict[str, Any] = {"description": self.description}
        for section in SECTIONS:
            data = {k: v for k, v in dataclasses.asdict(getattr(self, section)).items() if v is not None}
            if section == "connection" and redact:
                data["base_url"] = mask_url_password(data["base_url"])
                data["headers"] = dict.fromkeys(data["headers"], MASK)
            out[section] = data
        if self.tools:
            out["tools"] = [
                {k: v for k, v in dataclasses.asdict(t).items() if v is not None and v != {} or k == "parameters"}
                for t in self.tools
            ]
            for tool in out["tools"] if redact else ():
                if "env" in tool:
                    tool["env"] = {k: _masked_env(v) for k, v in tool["env"].items()}
                # a hosted MCP tool's headers go to a third party: usually credentials
                if isinstance(tool.get("options", {}).get("headers"), dict):
                    tool["options"]["headers"] = dict.fromkeys(tool["options"]["headers"], MASK)
        if self.mcp:
            out["mcp"] = [_mcp_as_dict(m, redact) for m in self.mcp]
        return out


def _masked_env(value: str) -> str:
    """`***`, plus the variables a `$VAR` value is expanded from (their names are no secret)."""
    names = [a or b for a, b in re.findall(r"\$(?:(\w+)|\{(\w+)\})", value)]
    return "***" + (f" (from {', '.join('$' + n for n in names)})" if names else "")


def _mcp_as_dict(server: McpServerDef, redact: bool) -> dict[str, Any]:
    data = {k: v for k, v in dataclasses.asdict(server).items() if v is not None and v != {} and v != []}
    if redact and server.headers:  # a ${VAR} reference is safe to show; a literal value may be a token
        data["headers"] = {k: v if re.fullmatch(r"\$\{?\w+\}?", v) else "***" for k, v in server.headers.items()}
    if redact and server.env:
        data["env"] = {k: _masked_env(v) for k, v in server.env.items()}
    return data


# --------------------------------------------------------------------------------------------
# Field introspection: the dataclasses above drive validation


@functools.cache  # resolving type hints is slow and the classes never change
def _field_info(cls: type) -> dict[str, tuple[Any, dataclasses.Field]]:
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(cls)}


def _describe(tp: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             dict: "a table", list: "an array"}
    args = [a for a in typing.get_args(tp) if a is not type(None)] if _is_union(tp) else [tp]
    words = []
    for a in args:
        origin = typing.get_origin(a) or a
        if origin is list:
            words.append("an array of strings")
        elif origin is dict and typing.get_args(a) == (str, str):
            words.append("a table of strings")
        else:
            words.append(names.get(origin, str(a)))
    return " or ".join(words)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
            dict: "table"}.get(type(value), type(value).__name__)


def _check_type(tp: Any, value: Any) -> Any | None:
    """Return the value coerced to `tp` (int → float only), or None if it does not fit."""
    options = [a for a in typing.get_args(tp) if a is not type(None)] if _is_union(tp) else [tp]
    for opt in options:
        origin = typing.get_origin(opt) or opt
        if origin is bool and isinstance(value, bool):
            return value
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if origin is str and isinstance(value, str):
            return value
        if origin is list and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        if origin is dict and isinstance(value, dict):
            if typing.get_args(opt) == (str, str) and not all(isinstance(v, str) for v in value.values()):
                continue
            return value
    return None


class _Source:
    """A profile file's text, for pointing errors at file:line."""

    def __init__(self, path: Path | None, text: str = ""):
        self.path = path
        self.lines = text.splitlines()

    def where(self, section: str | None = None, key: str | None = None, index: int | None = None) -> str:
        if self.path is None:
            return "<settings>"
        line = self._find(section, key, index)
        return f"{self.path}:{line}" if line else str(self.path)

    def _find(self, section: str | None, key: str | None, index: int | None) -> int | None:
        header = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?")
        current, seen = None, -1
        fallback = None
        for number, text in enumerate(self.lines, 1):
            m = header.match(text)
            if m:
                current = m.group(1)
                if current == section:
                    seen += 1
                    if key is None and (index is None or seen == index):
                        return number
                continue
            in_place = current == section and (index is None or seen == index)
            if key and re.match(rf"^\s*{re.escape(key)}\s*=", text):
                if in_place:
                    return number
            # dotted forms: `model.temperature = …` at top level
            if key and section and current is None and re.match(rf"^\s*{re.escape(section)}\.{re.escape(key)}\s*=", text):
                fallback = fallback or number
        return fallback


def _all_key_paths() -> list[str]:
    keys = list(TOP_LEVEL) + ["tools", "mcp"]
    for section, cls in SECTIONS.items():
        keys += [f"{section}.{name}" for name in _field_info(cls)]
    keys += [f"tools.{name}" for name in _field_info(ToolDef)]
    keys += [f"mcp.{name}" for name in _field_info(McpServerDef)]
    return keys


def _unknown(path: str, candidates: list[str], src: _Source, section: str | None, key: str) -> ConfigError:
    short = path.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(short, candidates, n=1, cutoff=0.6)
    if not close:  # maybe it belongs in another table: `temperature` at top level → model.temperature
        full = [p for p in _all_key_paths() if p.rsplit(".", 1)[-1] == short]
        close = full or difflib.get_close_matches(path, _all_key_paths(), n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else f"valid keys here: {', '.join(sorted(candidates))}"
    return ConfigError(f"{src.where(section, key)}: unknown key '{path}'", hint=hint)


def _validate_value(cls: type, section: str, key: str, value: Any, src: _Source,
                    label: str | None = None, index: int | None = None) -> Any:
    info = _field_info(cls)
    label = label or f"{section}.{key}"
    if key not in info:
        raise _unknown(label, list(info), src, section, key)
    tp, f = info[key]
    coerced = _check_type(tp, value)

    def where() -> str:  # file:line, looked up only for an error (a scan of the file per key)
        return src.where(section, key, index)

    if coerced is None:
        shown = repr(value) if not isinstance(value, (dict, list)) else _type_name(value)
        raise ConfigError(f"{where()}: {label} must be {_describe(tp)}, got {_type_name(value)} {shown}")
    if cls is Connection and key in ("headers", "api_key_env"):
        _check_connection_value(key, coerced, where)
    meta = f.metadata
    if meta.get("choices") and isinstance(coerced, str) and coerced not in meta["choices"]:
        close = difflib.get_close_matches(coerced, meta["choices"], n=1)
        hint = f"did you mean '{close[0]}'?" if close else None
        raise ConfigError(f"{where()}: {label} must be one of {', '.join(meta['choices'])}; got '{coerced}'",
                          hint=hint)
    if cls is ModelSettings and key == "price":
        from voicecli.pricing import price_problems

        problems = price_problems(coerced)
        if problems:
            raise ConfigError(f"{where()}: {label}: {problems[0]}", hint="e.g. price = { input = 0.5, output = 1.5 }")
    if isinstance(coerced, float) and not math.isfinite(coerced):  # NaN passes every range check
        raise ConfigError(f"{where()}: {label} must be a finite number; got {coerced}")
    if cls is ModelSettings and key == "name" and not coerced.strip():
        raise ConfigError(f"{where()}: {label} is empty: name a model", hint="e.g. -o model.name=gpt-5.5")
    if isinstance(coerced, (int, float)) and not isinstance(coerced, bool):
        lo, hi = meta.get("lo"), meta.get("hi")
        if (lo is not None and coerced < lo) or (hi is not None and coerced > hi):
            bounds = f"between {lo:g} and {hi:g}" if hi is not None else f"at least {lo:g}"
            raise ConfigError(f"{where()}: {label} must be {bounds}; got {coerced:g}")
    return coerced


HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP token (RFC 9110)


def _check_connection_value(key: str, value: Any, where: Callable[[], str]) -> None:
    """Header names and values that HTTP can carry; the NAME of the key variable, not a key.
    Errors never quote a value: it may be a secret."""
    if key == "headers":
        from voicecli.sanitize import header_value_problem

        for name, text in value.items():
            if not HEADER_NAME.match(name):
                raise ConfigError(f"{where()}: connection.headers: {name!r} is not a valid header name",
                                  hint="header names hold letters, digits and !#$%&'*+-.^_`|~")
            problem = header_value_problem(text)
            if problem:
                raise ConfigError(f"{where()}: connection.headers.{name} {problem}")
    elif value.startswith("sk-") or (len(value) >= 20 and not value.isidentifier()):
        raise ConfigError(f"{where()}: connection.api_key_env looks like an API key (not shown here); "
                          "it must be the NAME of the environment variable that holds the key",
                          hint='export the key, e.g. export OPENAI_API_KEY=sk-…, and write '
                               'api_key_env = "OPENAI_API_KEY"')


def _validate_raw(data: dict[str, Any], src: _Source, warnings: list | None = None) -> None:
    """Check one file's tables before merging, so an error names the file that has it; `warnings`
    collects (message, hint) pairs for what is allowed but risky (shown by `profiles validate`)."""
    for key, value in data.items():
        if key in TOP_LEVEL:
            if not isinstance(value, str):
                raise ConfigError(f"{src.where(None, key)}: {key} must be a string, got {_type_name(value)}")
        elif key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{src.where(None, key)}: {key} must be a table ([{key}]), got {_type_name(value)}")
            for k, v in value.items():
                _validate_value(SECTIONS[key], key, k, v, src)
        elif key == "tools":
            if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
                raise ConfigError(f"{src.where(None, key)}: tools must be an array of tables ([[tools]])")
            for i, tool in enumerate(value):
                _validate_tool(tool, i, src, warnings)
        elif key == "mcp":
            if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
                raise ConfigError(f"{src.where(None, key)}: mcp must be an array of tables ([[mcp]])")
            seen: set[str] = set()
            for i, server in enumerate(value):
                _validate_mcp(server, i, src)
                if server["name"] in seen:
                    raise ConfigError(f"{src.where('mcp', None, i)}: mcp[{i}]: another [[mcp]] server is "
                                      f"already named '{server['name']}'; names must be unique")
                seen.add(server["name"])
        else:
            raise _unknown(key, list(TOP_LEVEL) + list(SECTIONS) + ["tools", "mcp"], src, None, key)


MCP_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def _validate_mcp(server: dict[str, Any], index: int, src: _Source) -> None:
    name = server.get("name")
    label = f"mcp[{index}]" + (f" ({name})" if isinstance(name, str) else "")
    for k, v in server.items():
        _validate_value(McpServerDef, "mcp", k, v, src, label=f"{label}.{k}", index=index)
    where = src.where("mcp", None, index)
    if not isinstance(name, str) or not MCP_NAME.match(name) or "__" in name:
        raise ConfigError(f"{where}: {label}: name is required: letters, digits, _ and - (≤ 32, no '__'), "
                          "e.g. name = \"fs\"")
    if ("command" in server) == ("url" in server):
        raise ConfigError(f"{where}: {label}: an MCP server needs exactly one of command = [...] (stdio) "
                          "or url = \"https://…\" (Streamable HTTP)")
    if "command" in server and not server["command"]:
        raise ConfigError(f"{where}: {label}: command must name a program")
    if "url" in server and not re.match(r"^https?://", server["url"]):
        raise ConfigError(f"{where}: {label}: url must start with http:// or https://")
    stdio_only, http_only = ("env", "cwd"), ("headers",)
    for key in stdio_only if "url" in server else http_only:
        if key in server:
            raise ConfigError(f"{where}: {label}: {key} applies only to "
                              f"{'stdio (command)' if key in stdio_only else 'HTTP (url)'} servers")
    for tool, policy in server.get("tool_approval", {}).items():
        if policy not in ("ask", "auto", "never"):
            raise ConfigError(f"{where}: {label}: tool_approval.{tool} must be one of ask, auto, never; got '{policy}'")


def _validate_tool(tool: dict[str, Any], index: int, src: _Source, warnings: list | None = None) -> None:
    name = tool.get("name")
    label = f"tools[{index}]" + (f" ({name})" if isinstance(name, str) else "")
    kind = tool.get("type", "function")
    for k, v in tool.items():
        if kind in HOSTED_TYPES and k not in _field_info(ToolDef):
            continue  # hosted tool options (vector_store_ids, container, …) pass through
        _validate_value(ToolDef, "tools", k, v, src, label=f"{label}.{k}", index=index)
    where = src.where("tools", None, index)
    if kind == "mcp":
        missing = [k for k in ("server_label", "server_url") if not isinstance(tool.get(k), str)]
        if missing and not isinstance(tool.get("connector_id"), str):
            raise ConfigError(f"{where}: {label}: a hosted MCP tool needs server_label and server_url (strings)",
                              hint="or declare a local server in [[mcp]], which works on every transport")
    if kind == "function":
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise ConfigError(f"{where}: {label}: name is required and may hold only letters, digits, _ and - (≤ 64)")
        if ("command" in tool) == ("python" in tool):
            raise ConfigError(f"{where}: {label}: a function tool needs exactly one of command = [...] or python = 'module:function'")
        if "command" in tool and not tool["command"]:
            raise ConfigError(f"{where}: {label}: command must name a program")
        if "python" in tool and not re.match(r"^[\w.]+:[\w.]+$", tool["python"]):
            raise ConfigError(f"{where}: {label}: python must look like 'package.module:function'")
        params = tool.get("parameters")
        if params is not None and params.get("type", "object") != "object":
            raise ConfigError(f"{where}: {label}: parameters must be a JSON Schema of type 'object'")
        from voicecli.tool_schema import command_problems, command_warnings, tool_problems

        problems = tool_problems(tool)
        if problems:
            raise ConfigError(f"{where}: {label}: {problems[0]}")
        at_command = src.where("tools", "command", index)
        problems = command_problems(tool)
        if problems:
            raise ConfigError(f"{at_command}: {label}: {problems[0]}")
        if warnings is not None:
            warnings += [(f"{at_command}: {label}: {text}", hint) for text, hint in command_warnings(tool)]


def _expand_env(value: str) -> str:
    return os.path.expandvars(value)


def _tool_from_raw(raw: dict[str, Any]) -> ToolDef:
    known = _field_info(ToolDef)
    args = {k: v for k, v in raw.items() if k in known}
    extra = {k: v for k, v in raw.items() if k not in known}
    if extra:
        args["options"] = {**raw.get("options", {}), **extra}
    if args.get("type") == "mcp":
        args.setdefault("name", str(extra.get("server_label", "mcp")))
        headers = args.get("options", {}).get("headers")
        if isinstance(headers, dict):  # ${VAR} → its value; an unset one stays and is refused before sending
            args["options"]["headers"] = {k: _expand_env(str(v)) for k, v in headers.items()}
    if args.get("type", "function") != "function" and "name" not in args:
        args["name"] = args["type"]
    if args.get("command") and "parameters" not in args:
        from voicecli.tool_schema import placeholder_schema

        args["parameters"] = placeholder_schema(args["command"])
    return ToolDef(**args)


# --------------------------------------------------------------------------------------------
# Discovery and loading


@dataclass
class ProfileRef:
    """Where a profile's file is."""

    name: str
    source: str
    path: Path


def _looks_like_path(name: str) -> bool:
    return "/" in name or os.sep in name or name.endswith(".toml")


def discover() -> list[ProfileRef]:
    """All named profiles; a user profile shadows a built-in one with the same name."""
    found: dict[str, ProfileRef] = {}
    for source, folder in (("builtin", paths.builtin_profiles_dir()), ("user", paths.user_profiles_dir())):
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                found[path.stem] = ProfileRef(path.stem, source, path)
    return sorted(found.values(), key=lambda r: r.name)


def find(name: str, *, relative_to: Path | None = None) -> ProfileRef:
    if _looks_like_path(name):
        path = Path(name).expanduser()
        if not path.is_absolute() and relative_to is not None and not path.exists():
            path = relative_to / path
        if not path.is_file():
            raise ConfigError(f"profile file not found: {path}")
        return ProfileRef(path.stem, "path", path.resolve())
    for ref in discover():
        if ref.name == name:
            return ref
    known = [r.name for r in discover()]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"known profiles: {', '.join(known)}"
    raise ConfigError(f"no profile named '{name}' (looked in {paths.user_profiles_dir()} and the built-ins)",
                      hint=hint + " — `voicecli profiles list` shows them all")


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read profile {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        if m:
            msg = msg[: m.start()].strip()
            raise ConfigError(f"{path}:{m.group(1)}:{m.group(2)}: invalid TOML: {msg}") from None
        m = re.search(r"\(at end of document\)", msg)
        line = len(text.splitlines()) or 1
        raise ConfigError(f"{path}:{line}: invalid TOML: {msg.split(' (at')[0]}") from None


def _merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    out = dict(parent)
    for key, value in child.items():
        if key == "tools":
            # a child's tool replaces the parent's tool of the same name; new ones are appended
            names = {t.get("name", t.get("type")) for t in value}
            out["tools"] = [t for t in parent.get("tools", []) if t.get("name", t.get("type")) not in names] + value
        elif key == "mcp":  # likewise for servers, by name
            names = {t.get("name") for t in value}
            out["mcp"] = [t for t in parent.get("mcp", []) if t.get("name") not in names] + value
        elif isinstance(value, dict) and isinstance(out.get(key), dict) and key != "parameters":
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def _load_raw(ref: ProfileRef, chain: tuple[str, ...] = (), warnings: list | None = None) -> dict[str, Any]:
    key = str(ref.path)
    if key in chain:
        cycle = " → ".join(Path(p).stem for p in (*chain, key))
        raise ConfigError(f"{ref.path}: 'extends' loops back on itself: {cycle}")
    data, text = read_toml(ref.path)
    src = _Source(ref.path, text)
    _validate_raw(data, src, warnings)
    parent_name = data.get("extends")
    if not parent_name:
        return data
    if parent_name == ref.name and not _looks_like_path(parent_name):
        # a user profile may extend the built-in it shadows
        builtin = paths.builtin_profiles_dir() / f"{parent_name}.toml"
        if ref.source == "user" and builtin.is_file():
            parent_ref = ProfileRef(parent_name, "builtin", builtin)
        else:
            raise ConfigError(f"{src.where(None, 'extends')}: profile '{ref.name}' extends itself")
    else:
        try:
            parent_ref = find(parent_name, relative_to=ref.path.parent)
        except ConfigError as exc:
            raise ConfigError(f"{src.where(None, 'extends')}: extends = '{parent_name}': {exc.message}",
                              hint=exc.hint) from None
    parent = _load_raw(parent_ref, (*chain, key), warnings)
    merged = _merge(parent, data)
    merged["description"] = data.get("description", parent.get("description", ""))
    return merged


ENV_OVERRIDES = {
    "OPENAI_BASE_URL": "connection.base_url",
    "VOICECLI_MODEL": "model.name",
    "VOICECLI_TRANSPORT": "connection.transport",
}


def load(name: str | None = None, *, overrides: dict[str, Any] | None = None,
         env: typing.Mapping[str, str] | None = None, warnings: list | None = None) -> Profile:
    """Load a profile by name or path and apply environment and CLI overrides (dotted keys);
    `warnings`, when given, collects (message, hint) pairs for risky but valid settings."""
    env = os.environ if env is None else env
    from_env = not name and env.get("VOICECLI_PROFILE")
    name = name or env.get("VOICECLI_PROFILE") or "default"
    try:
        ref = find(name)
    except ConfigError as exc:
        if from_env:  # say where the name came from: the user may not remember setting it
            raise ConfigError(f"VOICECLI_PROFILE={name}: {exc.message}", hint=exc.hint) from None
        raise
    raw = _load_raw(ref, warnings=warnings)
    profile = _build(ref, raw)
    for var, key in ENV_OVERRIDES.items():
        value = env.get(var)
        if value and not (key == "connection.base_url" and profile.uses_simulator):
            apply_setting(profile, key, value, origin=f"environment variable {var}")
    for key, value in (overrides or {}).items():
        if value is not None:
            apply_setting(profile, key, value, origin="command line")
    return profile


def _build(ref: ProfileRef, raw: dict[str, Any]) -> Profile:
    profile = Profile(name=ref.name, source=ref.source, path=ref.path, description=raw.get("description", ""))
    for section, cls in SECTIONS.items():
        setattr(profile, section, cls(**raw.get(section, {})))
    profile.tools = [_tool_from_raw(t) for t in raw.get("tools", [])]
    profile.mcp = [McpServerDef(**m) for m in raw.get("mcp", [])]
    return profile


MODEL_ALIASES = {"model": "model.name", "system": "model.instructions"}


def _from(exc: ConfigError, origin: str | None) -> ConfigError:
    """A setting's error as its user typed it: `ORIGIN: …`, or the bare text (chat's /set)."""
    return ConfigError(exc.message.replace("<settings>: ", f"{origin}: " if origin else "", 1), hint=exc.hint)


def resolve_key(key: str, *, origin: str | None = None) -> tuple[str, str]:
    """'temperature' → ('model', 'temperature'); 'voice.speed' → ('voice', 'speed')."""
    try:
        return _resolve_key(key)
    except ConfigError as exc:
        raise _from(exc, origin) from None


def _resolve_key(key: str) -> tuple[str, str]:
    key = MODEL_ALIASES.get(key, key)
    section, _, name = key.rpartition(".")
    section = section or "model"
    if section not in SECTIONS:
        close = difflib.get_close_matches(key, _all_key_paths(), n=1, cutoff=0.5)
        raise ConfigError(f"unknown setting '{key}'", hint=f"did you mean '{close[0]}'?" if close else
                          f"settings live in {', '.join(SECTIONS)}")
    if name not in _field_info(SECTIONS[section]):
        raise _unknown(f"{section}.{name}", list(_field_info(SECTIONS[section])), _Source(None), section, name)
    return section, name


def parse_value(text: str) -> Any:
    """A command-line value: TOML literal when it is one (0.5, true, [..]), else the plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


UNSET_WORDS = ("null", "none", "unset")


def apply_setting(profile: Profile, key: str, value: Any, *, origin: str | None = None) -> bool:
    """Set one setting, checked; errors start with `origin:` when given (a file, `-o …`).

    A string value `none` (or `null`, `unset`) unsets the key: None where the setting may be unset,
    else its default (`connection.headers` → no headers) — unless `none` is one of the setting's own
    choices (`voice.turn_detection = "none"` is push-to-talk). Returns True when it unset the key."""
    section, name = resolve_key(key, origin=origin)
    cls = SECTIONS[section]
    if isinstance(value, str):
        tp, f = _field_info(cls)[name]
        optional = _is_union(tp) and type(None) in typing.get_args(tp)
        if value.lower() in UNSET_WORDS and (optional or value not in f.metadata.get("choices", ())):
            default = None if optional else f.default_factory() if f.default is dataclasses.MISSING else f.default
            setattr(getattr(profile, section), name, default)
            return True
        if _check_type(tp, "x") is None:  # not a string setting: a TOML literal (0.5, true, [..], {..})
            value = parse_value(value)
    if value is None:
        setattr(getattr(profile, section), name, None)
        return True
    src = _Source(None)
    try:
        coerced = _validate_value(cls, section, name, value, src)
    except ConfigError as exc:
        raise _from(exc, origin) from None
    setattr(getattr(profile, section), name, coerced)
    return False


def parse_options(options: list[str]) -> dict[str, Any]:
    """`-o KEY=VALUE` pairs → {dotted key: value}; the key defaults to the [model] table."""
    out: dict[str, Any] = {}
    for item in options or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"-o expects KEY=VALUE, got '{item}'", hint="e.g. -o temperature=0.2")
        section, name = resolve_key(key.strip(), origin=f"-o {item}")
        out[f"{section}.{name}"] = value.strip()
    return out
