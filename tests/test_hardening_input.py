"""Issue 13, "Bad input": oversized and non-UTF-8 stdin/files, empty prompts, files that are not what
their name says, and tool command templates that `profiles validate` must catch.

Every test runs the real CLI as a subprocess (against the simulator where a model is involved).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from clihelp import cli_env, run_cli

MIB = 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + b"\0\0\0\rIHDR" + b"\0" * 16
JPEG = b"\xff\xd8\xff\xe0\0\x10JFIF\0" + b"\0" * 16
GIF = b"GIF89a" + b"\0" * 16
WEBP = b"RIFF\x1a\0\0\0WEBPVP8 " + b"\0" * 16


@pytest.fixture
def home(tmp_path):
    """A sandboxed VOICECLI_HOME for the CLI under test."""
    return tmp_path / "home"


def infer_bytes(home, sim, *args: str, data: bytes | None = None, timeout: float = 60,
                **env: str) -> subprocess.CompletedProcess:
    """`voicecli infer` against `sim` with raw bytes on stdin (stdout/stderr kept as bytes)."""
    return subprocess.run(
        [sys.executable, "-m", "voicecli", "infer", "-p", "offline", "--base-url", sim.base_url, *args],
        input=data, stdin=None if data is not None else subprocess.DEVNULL,
        capture_output=True, timeout=timeout, env=cli_env(home, **env))


def infer(home, sim, *args: str, input: str | None = None):
    return run_cli(home, "infer", "-p", "offline", "--base-url", sim.base_url, *args, input=input)


def model_requests(sim) -> list[dict]:
    """The request bodies the simulator received for model responses."""
    out = []
    for entry in sim.log:
        body = entry.get("event") or entry.get("body")
        if isinstance(body, dict) and ("input" in body or "messages" in body):
            out.append(body)
    return out


def one_error_line(err: str) -> None:
    """An error is one `voicecli:` line (plus an optional hint), never a traceback."""
    lines = err.strip().splitlines()
    assert lines and lines[0].startswith("voicecli: ") and "Traceback" not in err, err
    assert all(line.startswith("  hint: ") for line in lines[1:]), err


# ---- 8. input size limit ---------------------------------------------------------------------


def test_stdin_over_the_default_50_mib_limit_is_an_error_not_a_silent_cut(home, sim):
    r = infer_bytes(home, sim, "summarise", data=b"a" * (50 * MIB + 1))
    err = r.stderr.decode()
    assert r.returncode == 2, err
    one_error_line(err)
    assert "stdin" in err and "50 MiB" in err and "ui.max_input_mib" in err
    assert r.stdout == b"" and model_requests(sim) == []


@pytest.mark.slow
def test_the_input_limit_is_a_setting_and_applies_to_files(home, sim, tmp_path):
    limit = 0.01  # MiB
    size = int(limit * MIB)
    r = infer_bytes(home, sim, "-o", f"ui.max_input_mib={limit}", "x", data=b"a" * size)
    assert r.returncode == 0, r.stderr.decode()
    r = infer_bytes(home, sim, "-o", f"ui.max_input_mib={limit}", "x", data=b"a" * (size + 1))
    assert r.returncode == 2 and b"stdin" in r.stderr and b"0.01 MiB" in r.stderr

    big = tmp_path / "big.txt"
    big.write_bytes(b"b" * (size + 1))
    r = infer_bytes(home, sim, "-o", f"ui.max_input_mib={limit}", "-f", str(big), "x")
    err = r.stderr.decode()
    assert r.returncode == 2, err
    one_error_line(err)
    assert str(big) in err and "0.01 MiB" in err and "ui.max_input_mib" in err
    big.write_bytes(b"b" * size)
    r = infer_bytes(home, sim, "-o", f"ui.max_input_mib={limit}", "-f", str(big), "x")
    assert r.returncode == 0, r.stderr.decode()


def test_the_input_limit_from_a_profile(home, sim, tmp_path):
    prof = tmp_path / "small.toml"
    prof.write_text('extends = "offline"\n[ui]\nmax_input_mib = 0.001\n')
    r = subprocess.run([sys.executable, "-m", "voicecli", "infer", "-p", str(prof), "--base-url", sim.base_url, "x"],
                       input=b"z" * 2000, capture_output=True, timeout=60, env=cli_env(home))
    assert r.returncode == 2 and b"0.001 MiB" in r.stderr, r.stderr.decode()
    prof.write_text('extends = "offline"\n[ui]\nmax_input_mib = 0\n')
    r = run_cli(home, "profiles", "validate", str(prof))
    assert r.code == 3 and "ui.max_input_mib must be" in r.err and f"{prof}:3" in r.err


# ---- 9. invalid UTF-8 on stdin and in files ---------------------------------------------------


@pytest.mark.parametrize("locale", ["C", "POSIX", "C.UTF-8"])
def test_invalid_utf8_on_stdin_is_replaced_with_one_warning_under_any_locale(home, sim, locale):
    data = "héllo ".encode() + b"\xff\xfe world \xc3"  # two bad bytes at offset 7, a cut sequence at the end
    env = {"LC_ALL": locale, "LANG": locale, "PYTHONUTF8": "", "PYTHONIOENCODING": "", "PYTHONCOERCECLOCALE": ""}
    r = infer_bytes(home, sim, "what", data=data, **env)
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode == 0, err
    assert r.stdout.decode("utf-8") == "You said: héllo \ufffd\ufffd world \ufffd\n\nwhat\n"
    warnings = [line for line in err.splitlines() if line.strip()]
    assert len(warnings) == 1, err
    assert warnings[0].startswith("voicecli: warning: stdin is not valid UTF-8")
    assert "offset 7" in warnings[0] and "0xff" in warnings[0] and "U+FFFD" in warnings[0]
    sent = json.dumps(model_requests(sim)[0], ensure_ascii=False)
    assert "héllo \ufffd\ufffd world \ufffd" in sent


def test_invalid_utf8_in_a_file_is_replaced_with_a_warning_naming_the_file(home, sim, tmp_path):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café au lait".encode("latin-1"))
    r = infer(home, sim, "-f", str(latin1), "what is this?")
    assert r.code == 0, r.err
    assert "caf\ufffd au lait" in r.out
    assert r.err.count("voicecli: warning:") == 1 and str(latin1) in r.err and "offset 3" in r.err, r.err


def test_valid_utf8_needs_no_warning_even_under_the_c_locale(home, sim):
    r = infer_bytes(home, sim, "ok", data="naïve ☃\n".encode(), LC_ALL="C", LANG="C")
    assert (r.returncode, r.stderr) == (0, b"")
    assert r.stdout.decode() == "You said: naïve ☃\n\nok\n"


# ---- 10. empty prompts --------------------------------------------------------------------------


@pytest.mark.parametrize("args, stdin", [
    ([""], None),
    (["   ", "\t"], None),
    ([], " \n\n\t\n"),
    (["  "], "\n   \n"),
])
def test_an_empty_or_blank_prompt_is_a_usage_error_and_is_not_sent(home, sim, args, stdin):
    r = infer(home, sim, *args, input=stdin)
    assert r.code == 2, (r.out, r.err)
    one_error_line(r.err)
    assert "empty" in r.err or "no prompt" in r.err
    assert r.out == "" and model_requests(sim) == []


def test_a_blank_file_alone_is_an_empty_prompt(home, sim, tmp_path):
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n")
    r = infer(home, sim, "-f", str(blank))
    assert r.code == 2 and "empty" in r.err and model_requests(sim) == [], r.err


# ---- 11. images are checked by content ---------------------------------------------------------


def test_a_text_file_named_png_is_not_accepted_as_an_image(home, sim, tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_text("just some notes\n")
    r = infer(home, sim, "--image", str(fake), "what is this?")
    assert r.code == 2, r.err
    one_error_line(r.err)
    assert str(fake) in r.err and "not a PNG, JPEG, GIF or WEBP image" in r.err and "text" in r.err
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    r = infer(home, sim, "--image", str(empty), "x")
    assert r.code == 2 and "empty" in r.err, r.err
    binary = tmp_path / "photo.webp"
    binary.write_bytes(b"\x00\x11\x22\x33" + b"\0" * 30)
    r = infer(home, sim, "--image", str(binary), "x")
    assert r.code == 2 and "00 11 22 33" in r.err, r.err
    assert model_requests(sim) == []


@pytest.mark.parametrize("name, data, mime", [
    ("a.png", PNG, "image/png"), ("b.jpg", JPEG, "image/jpeg"), ("c.gif", GIF, "image/gif"),
    ("d.webp", WEBP, "image/webp"), ("really-a-jpeg.png", JPEG, "image/jpeg"), ("no-extension", PNG, "image/png"),
])
def test_images_are_recognised_by_their_magic_bytes(home, sim, tmp_path, name, data, mime):
    path = tmp_path / name
    path.write_bytes(data)
    r = infer(home, sim, "--image", str(path), "what is this?")
    assert r.code == 0, r.err
    assert f"data:{mime};base64," in json.dumps(model_requests(sim)[0])


def test_an_image_given_as_a_text_file_points_to_image(home, sim, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(PNG)
    r = infer(home, sim, "-f", str(photo), "describe it")
    assert r.code == 2, r.err
    one_error_line(r.err)
    assert str(photo) in r.err and "PNG image" in r.err and f"--image {photo}" in r.err
    r = infer_bytes(home, sim, "describe it", data=JPEG)
    assert r.returncode == 2 and b"stdin" in r.stderr and b"JPEG image" in r.stderr and b"--image" in r.stderr
    assert model_requests(sim) == []


# ---- 12. tool command templates -------------------------------------------------------------------


def write_tool_profile(tmp_path, body: str):
    path = tmp_path / "tools.toml"
    path.write_text(textwrap.dedent(body).lstrip())
    return path


@pytest.mark.parametrize("params", [
    'parameters = { type = "object", properties = { town = { type = "string" } } }',
    "",  # no parameters: the schema comes from the whole-element placeholders, and there are none
])
def test_a_placeholder_inside_text_naming_no_parameter_is_a_validation_error(home, tmp_path, params):
    path = write_tool_profile(tmp_path, f"""
        extends = "offline"

        [[tools]]
        name = "weather"
        command = ["weather-cli", "--city={{city}}"]
        {params}
    """)
    r = run_cli(home, "profiles", "validate", str(path))
    assert r.code == 3, (r.out, r.err)
    one_error_line(r.err)
    assert f"{path}:5: " in r.err and "--city={city}" in r.err and '"--city", "{city}"' in r.err
    r = run_cli(home, "infer", "-p", str(path), "weather")
    assert r.code == 3 and "--city={city}" in r.err


def test_literal_braces_that_are_not_placeholders_still_pass(home, tmp_path):
    path = write_tool_profile(tmp_path, """
        extends = "offline"

        [[tools]]
        name = "fmt"
        command = ["awk", "{ print $1 }", "--", "{file}"]
    """)
    r = run_cli(home, "profiles", "validate", str(path))
    assert (r.code, r.err) == (0, ""), r.err


def test_validate_warns_about_a_bare_placeholder_without_a_double_dash(home, tmp_path):
    path = write_tool_profile(tmp_path, """
        extends = "offline"

        [[tools]]
        name = "sorted"
        description = "Sort a file."
        command = ["sort", "{file}"]
    """)
    r = run_cli(home, "profiles", "validate", str(path))
    assert r.code == 0 and r.out.startswith("ok: "), r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"voicecli: warning: {path}:6: ") and "{file}" in lines[0], r.err
    assert '"--"' in r.err and '["sort", "--", "{file}"]' in r.err
    # only `validate` warns: running the profile stays quiet
    r = run_cli(home, "tools", "list", "-p", str(path))
    assert r.code == 0 and "warning" not in r.err


@pytest.mark.parametrize("command", [
    '["sort", "--", "{file}"]',                      # the idiom
    '["weather-cli", "--city", "{city}"]',           # the value of a long option
    '["head", "-n", "{count}"]',                     # a number cannot become an option
])
def test_no_warning_when_the_placeholder_cannot_become_an_option(home, tmp_path, command):
    params = ('\n[tools.parameters]\ntype = "object"\nrequired = ["count"]\n'
              'properties.count = { type = "integer", minimum = 1 }\n') if "count" in command else ""
    path = write_tool_profile(tmp_path, f'extends = "offline"\n[[tools]]\nname = "t"\ncommand = {command}\n{params}')
    r = run_cli(home, "profiles", "validate", str(path))
    assert (r.code, r.err) == (0, ""), r.err


def test_the_double_dash_idiom_stops_option_injection(home, tmp_path):
    """What the warning is about: a model-chosen `--output=…` becomes an option without `--`."""
    target = tmp_path / "written"
    (tmp_path / "data.txt").write_text("b\na\n")
    for command, injected in (('["sort", "{file}"]', True), ('["sort", "--", "{file}"]', False)):
        path = write_tool_profile(tmp_path, f'extends = "offline"\n[[tools]]\nname = "s"\ncommand = {command}\n'
                                            'approval = "auto"\n')
        r = run_cli(home, "tools", "run", "s", json.dumps({"file": f"--output={target}"}), "-p", str(path))
        assert target.exists() is injected, (r.out, r.err)
        target.unlink(missing_ok=True)


def test_the_built_in_profiles_validate_without_warnings(home):
    names = ["default", "sse", "compatible", "offline", "tools-demo"]
    r = run_cli(home, "profiles", "validate", *names)
    assert r.code == 0 and r.err == "", r.err
    assert len(r.out.splitlines()) == len(names)
