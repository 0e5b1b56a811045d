"""Profile loading: built-ins, precedence, inheritance, and every configuration error."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from voicecli import profiles
from voicecli.errors import ConfigError, ExitCode, UsageError


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICECLI_HOME", str(tmp_path))
    for var in ("OPENAI_BASE_URL", "VOICECLI_PROFILE", "VOICECLI_MODEL", "VOICECLI_TRANSPORT"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "profiles").mkdir()
    return tmp_path


def write(home: Path, name: str, text: str) -> Path:
    path = home / "profiles" / f"{name}.toml"
    path.write_text(textwrap.dedent(text))
    return path


def error_of(fn, *args, **kw) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        fn(*args, **kw)
    assert info.value.exit_code == ExitCode.CONFIG
    return info.value


# ---- built-ins and defaults ------------------------------------------------------------------


def test_builtins_load_with_their_transports(home):
    assert {r.name for r in profiles.discover()} >= {"default", "sse", "compatible", "offline"}
    assert profiles.load("default").connection.transport == "ws"
    assert profiles.load("sse").connection.transport == "sse"
    compat = profiles.load("compatible")
    assert (compat.connection.transport, compat.connection.base_url) == ("chat", "http://localhost:11434/v1")
    assert compat.api_key() is None  # Ollama needs no key
    assert profiles.load("offline").uses_simulator


def test_unset_model_settings_are_omitted_not_null(home):
    settings = profiles.load("default").model.request_settings()
    assert settings == {"store": False}
    assert None not in settings.values()


def test_default_profile_comes_from_env_var(home, monkeypatch):
    monkeypatch.setenv("VOICECLI_PROFILE", "sse")
    assert profiles.load().name == "sse"


# ---- precedence: flag > env > profile > default -------------------------------------------


def test_precedence_flag_over_env_over_profile_over_default(home, monkeypatch):
    write(home, "p", """
        [model]
        name = "from-profile"
        [connection]
        base_url = "http://profile.invalid/v1"
    """)
    p = profiles.load("p")
    assert p.model.name == "from-profile"
    assert p.connection.read_timeout == 60.0  # built-in default
    monkeypatch.setenv("VOICECLI_MODEL", "from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env.invalid/v1")
    p = profiles.load("p")
    assert (p.model.name, p.connection.base_url) == ("from-env", "http://env.invalid/v1")
    p = profiles.load("p", overrides={"model.name": "from-flag", "connection.base_url": "http://flag.invalid/v1"})
    assert (p.model.name, p.connection.base_url) == ("from-flag", "http://flag.invalid/v1")


def test_env_base_url_does_not_redirect_the_offline_profile(home, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env.invalid/v1")
    assert profiles.load("offline").uses_simulator


def test_options_are_typed_and_default_to_the_model_table(home):
    overrides = profiles.parse_options(["temperature=0.25", "voice.speed=1.2", "parallel_tool_calls=false",
                                        "instructions=be brief", "seed=7"])
    p = profiles.load("default", overrides=overrides)
    assert p.model.temperature == 0.25
    assert p.voice.speed == 1.2
    assert p.model.parallel_tool_calls is False
    assert p.model.instructions == "be brief"
    assert p.model.seed == 7


def test_bad_option_value_names_the_key_and_origin(home):
    err = error_of(profiles.load, "default", overrides=profiles.parse_options(["temperature=hot"]))
    assert "command line" in err.message and "model.temperature" in err.message
    assert "a number" in err.message and "'hot'" in err.message
    err = error_of(profiles.load, "default", overrides=profiles.parse_options(["temperature=5"]))
    assert "between 0 and 2" in err.message
    err = error_of(profiles.parse_options, ["temperatur=1"])
    assert "did you mean 'temperature'" in err.hint
    with pytest.raises(UsageError) as info:  # not a bad value: a badly formed flag (exit 2)
        profiles.parse_options(["novalue"])
    assert "KEY=VALUE" in info.value.message and info.value.exit_code == ExitCode.USAGE


# ---- inheritance --------------------------------------------------------------------------


def test_extends_merges_tables_and_tools(home):
    write(home, "base", """
        description = "base"
        [model]
        name = "m1"
        temperature = 0.5
        [[tools]]
        name = "clock"
        command = ["date"]
        [[tools]]
        name = "echo"
        command = ["echo", "{text}"]
    """)
    write(home, "child", """
        extends = "base"
        [model]
        temperature = 0.1
        [[tools]]
        name = "echo"
        command = ["printf", "%s", "{text}"]
        approval = "auto"
    """)
    p = profiles.load("child")
    assert (p.model.name, p.model.temperature) == ("m1", 0.1)
    assert [t.name for t in p.tools] == ["clock", "echo"]
    echo = p.tools[1]
    assert echo.command == ["printf", "%s", "{text}"] and echo.effective_approval == "auto"
    assert p.tools[0].effective_approval == "ask"  # command tools ask by default
    assert p.description == "base"  # inherited, since the child sets none


def test_user_profile_can_shadow_and_extend_the_builtin_of_the_same_name(home):
    write(home, "default", 'extends = "default"\n[model]\nname = "mine"\n')
    p = profiles.load("default")
    assert (p.source, p.model.name, p.connection.transport) == ("user", "mine", "ws")


def test_extends_cycle_is_reported(home):
    write(home, "a", 'extends = "b"\n')
    write(home, "b", 'extends = "a"\n')
    err = error_of(profiles.load, "a")
    assert "loops back" in err.message and "a → b → a" in err.message


def test_extends_unknown_parent_names_file_and_line(home):
    path = write(home, "a", '# comment\nextends = "nope"\n')
    err = error_of(profiles.load, "a")
    assert err.message.startswith(f"{path}:2:") and "'nope'" in err.message


# ---- errors ---------------------------------------------------------------------------------


def test_toml_syntax_error_names_file_line_column(home):
    path = write(home, "bad", '[model]\nname = "x"\ntemperature = = 1\n')
    err = error_of(profiles.load, "bad")
    assert err.message.startswith(f"{path}:3:")
    assert "invalid TOML" in err.message


def test_unknown_key_names_path_and_suggests(home):
    path = write(home, "bad", '[model]\nname = "x"\ntemprature = 1\n')
    err = error_of(profiles.load, "bad")
    assert err.message == f"{path}:3: unknown key 'model.temprature'"
    assert err.hint == "did you mean 'temperature'?"


def test_key_in_the_wrong_table_suggests_the_right_one(home):
    write(home, "bad", "temperature = 1\n")
    err = error_of(profiles.load, "bad")
    assert "unknown key 'temperature'" in err.message and "model.temperature" in err.hint


def test_unknown_table_is_reported(home):
    write(home, "bad", "[modle]\nname='x'\n")
    err = error_of(profiles.load, "bad")
    assert "unknown key 'modle'" in err.message and "did you mean 'model'" in err.hint


def test_wrong_type_names_key_expected_and_given(home):
    path = write(home, "bad", '[connection]\ntransport = "ws"\nmax_retries = "three"\n')
    err = error_of(profiles.load, "bad")
    assert err.message == f"{path}:3: connection.max_retries must be an integer, got string 'three'"


def test_bad_choice_suggests_the_closest(home):
    write(home, "bad", '[connection]\ntransport = "wss"\n')
    err = error_of(profiles.load, "bad")
    assert "must be one of ws, sse, chat" in err.message and err.hint == "did you mean 'ws'?"


def test_missing_api_key_variable_says_what_to_set(home, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    write(home, "work", '[connection]\napi_key_env = "WORK_OPENAI_KEY"\n')
    err = error_of(profiles.load("work").api_key)
    assert "WORK_OPENAI_KEY is not set" in err.message and "profile 'work'" in err.message
    assert "export WORK_OPENAI_KEY=" in err.hint
    monkeypatch.setenv("WORK_OPENAI_KEY", "sk-test-123")
    assert profiles.load("work").api_key() == "sk-test-123"


@pytest.mark.parametrize("tool, expected", [
    ('name = "x"\n', "exactly one of command"),
    ('name = "x"\ncommand = ["a"]\npython = "m:f"\n', "exactly one of command"),
    ('name = "bad name"\ncommand = ["a"]\n', "name is required"),
    ('name = "x"\ncommand = "date"\n', "tools[0] (x).command must be an array of strings"),
    ('name = "x"\ncommand = ["a"]\napproval = "sometimes"\n', "must be one of ask, auto, never"),
    ('name = "x"\ncommand = ["a"]\ntimeout = 0\n', "must be between"),
    ('name = "x"\ncommand = ["a"]\nparameters = { type = "string" }\n', "JSON Schema of type 'object'"),
    ('name = "x"\npython = "not a ref"\n', "package.module:function"),
    ('name = "x"\ncommand = ["a"]\nshell = true\n', "unknown key 'tools[0] (x).shell'"),
])
def test_tool_table_shape_is_validated(home, tool, expected):
    path = write(home, "t", "[[tools]]\n" + tool)
    err = error_of(profiles.load, "t")
    assert expected in err.message
    assert err.message.startswith(str(path))


def test_hosted_tools_pass_their_options_through(home):
    write(home, "t", '[[tools]]\ntype = "file_search"\nvector_store_ids = ["vs_1"]\n')
    tool = profiles.load("t").tools[0]
    assert (tool.type, tool.name, tool.options) == ("file_search", "file_search", {"vector_store_ids": ["vs_1"]})


def test_header_values_are_redacted_in_show_data(home):
    # every value, not only secret-looking names: any header may carry a token (issue 13)
    write(home, "h", '[connection.headers]\nAuthorization = "Bearer sk-secret"\nX-Title = "mine"\n')
    shown = profiles.load("h").as_dict()["connection"]["headers"]
    assert shown == {"Authorization": "***", "X-Title": "***"}


def test_profile_by_path(home, tmp_path):
    path = tmp_path / "elsewhere.toml"
    path.write_text('extends = "sse"\n[model]\nname = "z"\n')
    p = profiles.load(str(path))
    assert (p.source, p.model.name, p.connection.transport) == ("path", "z", "sse")
    err = error_of(profiles.load, str(tmp_path / "missing.toml"))
    assert "not found" in err.message


def test_unknown_profile_suggests_close_names(home):
    err = error_of(profiles.load, "defualt")
    assert "no profile named 'defualt'" in err.message and "did you mean 'default'" in err.hint
