"""Maestro's `${...}` expressions, evaluated before the run where the harness needs the value (appId).

Maestro replaces every `${script}` in a header value with its JavaScript result (`Env.evaluateScripts`:
the regex `(?<!\\\\)\\$\\{([^$]*)}`), with the `-e` variables, the `MAESTRO_*` shell variables and the header
`env` defined; undeclared names are `undefined` on purpose, so `${APP_ID || 'com.example.app'}` is an
idiom. This evaluates the subset such values use: names, string and number literals, `||`, `&&`, `??`,
`==`/`===`/`!=`/`!==`, `!`, `? :`, `+` and parentheses. Anything else raises `Unsupported`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# Maestro's own pattern (Env.kt): `${` then anything but `$` up to the last `}` before the next `$`.
TEMPLATE = re.compile(r"(?<!\\)\$\{([^$]*)\}")
_TOKEN = re.compile(r"""\s*(?:(?P<str>'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"|`(?:\\.|[^`\\$])*`)"""
                    r"""|(?P<num>\d+(?:\.\d+)?)|(?P<name>[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*)"""
                    r"""|(?P<op>===|!==|==|!=|\|\||&&|\?\?|[!?:+()]))""")


class Unsupported(ValueError):
    """JavaScript beyond what the harness evaluates."""


class _Undefined:
    def __repr__(self) -> str:
        return "undefined"


UNDEFINED = _Undefined()
Value = str | float | bool | None | _Undefined
# Properties of Maestro's JavaScript objects known before the run (the harness runs Android only).
KNOWN_PROPERTIES: dict[str, Value] = {"maestro.platform": "android"}


@dataclass
class _Parser:
    tokens: list[tuple[str, str]]
    variables: Mapping[str, str]
    pos: int = 0

    def peek(self) -> str:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else ""

    def take(self, op: str) -> bool:
        if self.pos < len(self.tokens) and self.tokens[self.pos] == ("op", op):
            self.pos += 1
            return True
        return False

    def expression(self) -> Value:
        test = self.logical()
        if self.take("?"):
            yes = self.expression()
            if not self.take(":"):
                raise Unsupported("'?' without ':'")
            no = self.expression()
            return yes if truthy(test) else no
        return test

    def logical(self) -> Value:
        """JavaScript's ShortCircuitExpression: `||` over `&&` (which binds tighter), or a chain of `??`.

        `??` next to `||` or `&&` without parentheses is a SyntaxError in JavaScript: Unsupported here.
        """
        first = self.equality()
        if self.peek() == "??":
            value = first
            while self.take("??"):
                right = self.equality()
                value = right if value is None or value is UNDEFINED else value
        else:
            value = self.logical_or(first)
        if self.peek() in ("||", "&&", "??"):
            raise Unsupported("'??' mixed with '||' or '&&' without parentheses (a SyntaxError in JavaScript)")
        return value

    def logical_or(self, first: Value) -> Value:
        value = self.logical_and(first)
        while self.take("||"):
            right = self.logical_and(self.equality())
            value = value if truthy(value) else right
        return value

    def logical_and(self, first: Value) -> Value:
        value = first
        while self.take("&&"):
            right = self.equality()
            value = right if truthy(value) else value
        return value

    def equality(self) -> Value:
        value = self.additive()
        while self.peek() in ("==", "===", "!=", "!=="):
            op = self.tokens[self.pos][1]
            self.pos += 1
            right = self.additive()
            same = _loose_equal(value, right) if op in ("==", "!=") else _strict_equal(value, right)
            value = same if op.startswith("=") else not same
        return value

    def additive(self) -> Value:
        value = self.unary()
        while self.take("+"):
            right = self.unary()
            if isinstance(value, float) and isinstance(right, float):
                value = value + right
            else:
                value = to_string(value) + to_string(right)
        return value

    def unary(self) -> Value:
        if self.take("!"):
            return not truthy(self.unary())
        if self.take("("):
            value = self.expression()
            if not self.take(")"):
                raise Unsupported("unbalanced parentheses")
            return value
        if self.pos >= len(self.tokens):
            raise Unsupported("the expression ends too early")
        kind, text = self.tokens[self.pos]
        self.pos += 1
        if kind == "str":
            return _unquote(text)
        if kind == "num":
            return float(text)
        if kind == "name":
            if self.peek() == "(":
                raise Unsupported(f"a function call ({text}(...))")
            literal: dict[str, Value] = {"true": True, "false": False, "null": None, "undefined": UNDEFINED}
            if text in literal:
                return literal[text]
            if text in KNOWN_PROPERTIES:
                return KNOWN_PROPERTIES[text]
            if "." in text:
                raise Unsupported(f"a property ({text})")
            return self.variables.get(text, UNDEFINED)
        raise Unsupported(f"'{text}'")


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def truthy(value: Value) -> bool:
    if value is UNDEFINED or value is None:
        return False
    if isinstance(value, float):
        return value != 0
    return bool(value)


def _strict_equal(a: Value, b: Value) -> bool:
    return type(a) is type(b) and a == b


def _loose_equal(a: Value, b: Value) -> bool:
    nullish = (None, UNDEFINED)
    if a in nullish or b in nullish:
        return a in nullish and b in nullish
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    try:
        return float(a) == float(b)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def to_string(value: Value) -> str:
    """JavaScript's String(value)."""
    if value is UNDEFINED:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def evaluate(script: str, variables: Mapping[str, str]) -> Value:
    """The value of one `${...}` body; Unsupported for JavaScript outside the subset."""
    tokens: list[tuple[str, str]] = []
    pos, text = 0, script.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise Unsupported(f"'{text[pos:].strip()[:20]}'")
        kind = match.lastgroup or "op"
        tokens.append((kind, match.group(kind)))
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    parser = _Parser(tokens, variables)
    value = parser.expression()
    if parser.pos != len(tokens):
        raise Unsupported(f"'{tokens[parser.pos][1]}'")
    return value


@dataclass(frozen=True)
class Evaluated:
    text: str  # the value, as Maestro would substitute it
    empty: bool  # an expression in it was undefined, null or ''
    undefined: tuple[str, ...]  # names the expressions read that no variable defines


def evaluate_template(text: str, variables: Mapping[str, str]) -> Evaluated:
    """A header value with every `${...}` replaced as Maestro does (Unsupported for other JavaScript)."""
    empty = False
    missing: list[str] = []

    def one(match: re.Match[str]) -> str:
        nonlocal empty
        script = match.group(1)
        if not script.strip():
            return ""
        value = evaluate(script, variables)
        for name in re.findall(r"(?<![\w$.'\"])[A-Za-z_$][\w$]*", re.sub(r"'[^']*'|\"[^\"]*\"|`[^`]*`", "", script)):
            if name not in variables and name not in ("true", "false", "null", "undefined") and name not in missing:
                missing.append(name)
        if value is UNDEFINED or value is None or value == "":
            empty = True
            return ""
        return to_string(value)

    return Evaluated(TEMPLATE.sub(one, text), empty, tuple(missing))
