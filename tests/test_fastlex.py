"""The renderer's first-character dispatch gives exactly pygments' tokens, in every lexer it runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pygments.lexers import get_lexer_by_name

from voicecli.ui import fastlex

ROOT = Path(__file__).resolve().parent.parent
# real text of several kinds, fed to every lexer: odd input for a lexer explores its states well
CORPUS = ((ROOT / "voicecli" / "ui" / "render.py").read_text(encoding="utf-8").splitlines()
          + (ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:600]
          + ['SELECT name, COUNT(*) FROM t WHERE k = \'Kelvin \u212a\' GROUP BY name;',
             'echo "$HOME" | grep -E \'^[a-z]+$\' && printf "%s\\n" "naïve café"',
             '<div class="x" onclick="go(1)"><script>let a = `t${b}`;</script></div>',
             'fn main() { let s = r#"raw"#; println!("{s:?}"); }'])


@pytest.mark.parametrize("language", ["python", "bash", "javascript", "sql", "html", "rust", "markdown", "toml", "go"])
@pytest.mark.slow
def test_the_same_tokens_as_pygments(language):
    lexer = get_lexer_by_name(language)
    assert fastlex.plain(lexer)
    for line in CORPUS:
        assert list(fastlex.fast_tokens(lexer, line + "\n")) == list(lexer.get_tokens_unprocessed(line + "\n")), line
    text = "\n".join(CORPUS) + "\n"  # across lines: states that span them
    assert list(fastlex.fast_tokens(lexer, text)) == list(lexer.get_tokens_unprocessed(text))


def test_first_characters_of_rules():
    import re

    def first(pattern, flags=0):
        got = fastlex.first_chars(re.compile(pattern, flags))
        return None if got is None else "".join(sorted(map(chr, got)))

    assert first(r"[0-9]+\.?") == "0123456789"
    assert first(r"(?<!\.)(if|for)\b") == "fi"
    assert first(r"\s*") is None  # may match empty: tried everywhere
    assert first(r"\s*#.*") == "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f #"
    assert first(r"(\w)\1|x") == first(r"\w")  # a back-reference after the first character is no bother
    assert first(r"(x?)\1y") is None  # a back-reference at the start: unknown, so tried everywhere
    assert first(r"x?y") == "xy"
    assert first(r"select", re.IGNORECASE) == "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    assert first(r"(a)\1") == "a"
    assert first(r"(?P<q>['\"]).*?(?P=q)") == "\"'"
    assert first(r"\w+") == "".join(sorted(c for c in map(chr, range(128)) if re.match(r"\w", c)))


def test_short_code_uses_pygments_own_loop_and_other_lexers_keep_theirs(monkeypatch):
    monkeypatch.setattr(fastlex, "_LINES", {})
    python = get_lexer_by_name("python")
    gen = [fastlex.tokens(python, "x = 1\n") for _ in range(fastlex.WARM + 1)]
    assert all(g.gi_code.co_name == "get_tokens_unprocessed" for g in gen[:fastlex.WARM])
    assert gen[-1].gi_code.co_name == "fast_tokens"
    json = get_lexer_by_name("json")  # not a RegexLexer: its own tokenizer, always
    assert not fastlex.plain(json)
    for _ in range(fastlex.WARM + 1):
        toks = fastlex.tokens(json, '{"a": 1}\n')
    assert list(toks) == list(json.get_tokens_unprocessed('{"a": 1}\n'))
