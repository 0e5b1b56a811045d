"""Faster pygments lexing for the streaming renderer: first-character dispatch.

pygments' RegexLexer tries a state's rules one after another at each position — some 36 regex
calls per token in its Python lexer, the bulk of highlighting's cost. Most of those rules cannot
match at all given the character at the position (a string rule at a letter, a number rule at a
quote). `tokens()` works out, from each rule's parsed regex, the ASCII characters a match can
start with, and tries only the rules that can match there, in the same order, with pygments' own
state machine otherwise unchanged — so the tokens are exactly pygments'. A rule whose start it
cannot tell (empty matches, back-references, long alternations that cost more to parse than to
try) is always tried, as is every rule at a non-ASCII character.

The tables are built per lexer state when first entered (a few ms for Python's); a lexer uses
them only after WARM lines, so a short code block never pays for them.
"""

from __future__ import annotations

import re
from re import _constants as K
from re import _parser as P

from pygments.lexer import RegexLexer
from pygments.token import Error, Whitespace, _TokenType

WARM = 32  # lines a lexer highlights the plain way before its dispatch tables are worth building
_LONG = 900  # characters: a longer alternation is tried at every position rather than parsed

ALL = frozenset(range(128))
_CATS: dict = {}  # a regex category (\d, \s, \w, …) -> the ASCII codes in it
for _name, _rx in {"DIGIT": r"\d", "NOT_DIGIT": r"\D", "SPACE": r"\s", "NOT_SPACE": r"\S", "WORD": r"\w",
                   "NOT_WORD": r"\W", "LINEBREAK": r"\n", "NOT_LINEBREAK": r"[^\n]"}.items():
    _codes = frozenset(i for i in range(128) if re.match(_rx, chr(i)))
    _CATS[getattr(K, "CATEGORY_" + _name)] = _CATS[getattr(K, "CATEGORY_UNI_" + _name)] = _codes


class _Unknown(Exception):
    pass


def _in(items):
    out, negate = set(), False
    for op, av in items:
        if op is K.NEGATE:
            negate = True
        elif op is K.LITERAL:
            if av < 128:
                out.add(av)
        elif op is K.RANGE:
            out.update(range(av[0], min(av[1], 127) + 1))
        elif op is K.CATEGORY:
            out |= _CATS[av]
        else:
            raise _Unknown(op)
    return ALL - out if negate else out


def _first(seq):
    """(ASCII codes a match can start with, can it match empty)."""
    out = set()
    for op, av in seq:
        f, empty = _item(op, av)
        out |= f
        if not empty:
            return out, False
    return out, True


def _item(op, av):
    if op is K.LITERAL:
        return ({av} if av < 128 else set()), False
    if op is K.NOT_LITERAL:
        return ALL - {av}, False
    if op is K.ANY:
        return ALL, False
    if op is K.IN:
        return _in(av), False
    if op in (K.MAX_REPEAT, K.MIN_REPEAT, K.POSSESSIVE_REPEAT):
        lo, _, sub = av
        f, empty = _first(sub)
        return f, empty or lo == 0
    if op is K.SUBPATTERN:
        return _first(av[3])
    if op is K.ATOMIC_GROUP:
        return _first(av)
    if op is K.BRANCH:
        out, empty = set(), False
        for branch in av[1]:
            f, e = _first(branch)
            out |= f
            empty = empty or e
        return out, empty
    if op in (K.AT, K.ASSERT, K.ASSERT_NOT):
        return set(), True  # zero width: what follows decides (a superset is safe)
    if op is K.CATEGORY:
        return set(_CATS[av]), False
    raise _Unknown(op)


def first_chars(rex):
    """ASCII codes a match of compiled `rex` can start with, or None: any (also empty)."""
    if not isinstance(rex, re.Pattern) or not isinstance(rex.pattern, str):
        return None
    if len(rex.pattern) > _LONG and not rex.pattern.startswith("["):  # parsing costs more than trying it
        return None
    try:
        f, empty = _first(P.parse(rex.pattern, rex.flags))
    except Exception:  # _Unknown, or a pattern form this does not know: try the rule everywhere
        return None
    if empty:
        return None
    if rex.flags & re.IGNORECASE or "(?i" in rex.pattern:  # any letter: Unicode folding (K → k) included
        f |= set(range(65, 91)) | set(range(97, 123))
    return f


_FIRST: dict = {}  # compiled pattern -> first_chars()


class _Tables(dict):
    """state -> [rules to try for each ASCII first character], built when a state is first entered."""

    def __init__(self, tokendefs):
        super().__init__()
        self.tokendefs = tokendefs

    def __missing__(self, state):
        rules = self.tokendefs[state]
        firsts = []
        for rule in rules:
            rex = getattr(rule[0], "__self__", None)  # the compiled pattern behind `pattern.match`
            if rex is None:  # not what pygments builds today: try the rule everywhere
                firsts.append(None)
                continue
            if rex not in _FIRST:
                _FIRST[rex] = first_chars(rex)
            firsts.append(_FIRST[rex])
        table = self[state] = [tuple(r for r, f in zip(rules, firsts) if f is None or c in f) for c in range(128)]
        return table


_TABLES: dict = {}  # lexer class -> its _Tables


def _tables(lexer):
    cls = type(lexer)
    tables = _TABLES.get(cls)
    if tables is None:
        tables = _TABLES[cls] = _Tables(lexer._tokens)
    return tables


def fast_tokens(lexer, text, stack=("root",)):
    """RegexLexer.get_tokens_unprocessed with the rules that cannot match at a position's first
    character skipped; the same tokens. The loop is pygments' own (BSD-2-Clause, the Pygments
    authors), with the rule lookup added."""
    pos = 0
    tokendefs = lexer._tokens
    tables = _tables(lexer)
    statestack = list(stack)
    statetokens = tokendefs[statestack[-1]]
    table = tables[statestack[-1]]
    n = len(text)
    while 1:
        if pos < n:
            o = ord(text[pos])
            rules = table[o] if o < 128 else statetokens
        else:
            rules = statetokens
        for rexmatch, action, new_state in rules:
            m = rexmatch(text, pos)
            if m:
                if action is not None:
                    if type(action) is _TokenType:
                        yield pos, action, m.group()
                    else:
                        yield from action(lexer, m)
                pos = m.end()
                if new_state is not None:
                    if isinstance(new_state, tuple):
                        for state in new_state:
                            if state == '#pop':
                                if len(statestack) > 1:
                                    statestack.pop()
                            elif state == '#push':
                                statestack.append(statestack[-1])
                            else:
                                statestack.append(state)
                    elif isinstance(new_state, int):
                        if abs(new_state) >= len(statestack):
                            del statestack[1:]
                        else:
                            del statestack[new_state:]
                    elif new_state == '#push':
                        statestack.append(statestack[-1])
                    else:
                        assert False, f"wrong state def: {new_state!r}"
                    statetokens = tokendefs[statestack[-1]]
                    table = tables[statestack[-1]]
                break
        else:
            try:
                if text[pos] == '\n':
                    statestack = ['root']
                    statetokens = tokendefs['root']
                    table = tables['root']
                    yield pos, Whitespace, '\n'
                    pos += 1
                    continue
                yield pos, Error, text[pos]
                pos += 1
            except IndexError:
                break


_LINES: dict[type, int] = {}


def plain(lexer) -> bool:
    """A RegexLexer running pygments' own loop (not an ExtendedRegexLexer or an override)."""
    return isinstance(lexer, RegexLexer) and type(lexer).get_tokens_unprocessed is RegexLexer.get_tokens_unprocessed


def tokens(lexer, text: str):
    """(position, token type, value) for `text`, exactly as `lexer.get_tokens_unprocessed` gives them."""
    cls = type(lexer)
    seen = _LINES.get(cls, 0)
    if seen < WARM or not plain(lexer):
        _LINES[cls] = seen + 1
        return lexer.get_tokens_unprocessed(text)
    return fast_tokens(lexer, text)
