"""Read Nextcloud's ``config.php`` without running PHP.

config.php is PHP source, not data: real installations (and the official
container image's ``*.config.php`` files) use ``getenv()``, string
concatenation, arithmetic, class constants, ``OC::$SERVERROOT``, ``if`` blocks
and ``$CONFIG['key'] = …`` assignments. This module is a small evaluator for
that subset: a tokenizer, and a recursive-descent parser that evaluates as it
parses. Branches that are not taken are still parsed (so syntax errors are
found) but with ``live=False``, which suppresses assignments and side effects
such as reading a file.

The public entry points are :func:`read_nextcloud_config` (one file, or the
file and its ``*.config.php`` siblings) and :func:`evaluate_config_php` (one
source text). Every failure raises :class:`shared.errors.ConfigError` whose
option is ``file:line:column``.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, TypeAlias

from shared.errors import ConfigError

SOURCE = "config.php"


@dataclass(frozen=True, slots=True)
class PhpConstant:
    """A PHP constant whose value this product never needs (``\\Memcached::OPT_…``)."""

    name: str


PhpKey: TypeAlias = int | str
PhpValue: TypeAlias = "bool | int | float | str | PhpConstant | dict[PhpKey, PhpValue] | None"
PhpArray: TypeAlias = dict[PhpKey, PhpValue]


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "str", "int", "float", "name", "var", "op", "end"
    value: str | int | float
    line: int
    column: int


# Longest first, so that "===" is not read as "==" "=".
_PUNCTUATION = sorted(
    (
        *("===", "!==", "<=>", "**", "??", "?:", "::", "=>", "==", "!=", "<>", "<=", ">="),
        *("&&", "||", ".=", "+=", "-=", "*=", "/=", "?->", "(", ")", "[", "]", "{", "}"),
        *(",", ";", "=", ".", "+", "-", "*", "/", "%", "!", "?", ":", "<", ">", "&", "|"),
        *("^", "@", "~"),
    ),
    key=len,
    reverse=True,
)
_NAME = re.compile(r"\\?[A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*(?:\\[A-Za-z_][A-Za-z0-9_]*)*")
_NUMBER = re.compile(
    r"0[xX][0-9a-fA-F][0-9a-fA-F_]*|0[bB][01][01_]*|0[oO][0-7][0-7_]*"
    r"|(?:[0-9][0-9_]*)?\.[0-9][0-9_]*(?:[eE][+-]?[0-9]+)?"
    r"|[0-9][0-9_]*\.?(?:[eE][+-]?[0-9]+)?"
)
_DIGITS = "0123456789"
_SIMPLE_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "v": "\v",
    "e": "\x1b",
    "f": "\f",
    "\\": "\\",
    "$": "$",
    '"': '"',
}


class _Lexer:
    """Splits PHP source (after ``<?php``) into tokens, skipping comments."""

    def __init__(self, text: str, fail: Callable[[int, str], NoReturn]) -> None:
        self.text = text
        self.fail = fail  # fail(offset, message) raises with line and column

    def position(self, offset: int) -> tuple[int, int]:
        line = self.text.count("\n", 0, offset) + 1
        return line, offset - (self.text.rfind("\n", 0, offset) + 1) + 1

    def tokens(self) -> Iterator[_Token]:
        text = self.text
        start = text.find("<?php")
        if start < 0:
            self.fail(0, "no '<?php' open tag; this is not a config.php")
        i = start + len("<?php")
        while True:
            i = self._skip_space_and_comments(i)
            if i >= len(text) or text.startswith("?>", i):
                # Anything after the close tag is inline output, not configuration.
                yield self._token("end", "", i)
                return
            token, i = self._next(i)
            yield token

    def _token(self, kind: str, value: str | int | float, offset: int) -> _Token:
        line, column = self.position(offset)
        return _Token(kind, value, line, column)

    def _skip_space_and_comments(self, i: int) -> int:
        text = self.text
        while i < len(text):
            if text[i].isspace():
                i += 1
            elif text.startswith("/*", i):
                end = text.find("*/", i + 2)
                if end < 0:
                    self.fail(i, "unterminated /* comment")
                i = end + 2
            elif text.startswith("//", i) or (text[i] == "#" and not text.startswith("#[", i)):
                # A line comment ends at the newline or at a close tag.
                newline = text.find("\n", i)
                close = text.find("?>", i)
                ends = [e for e in (newline, close) if e >= 0]
                i = min(ends) if ends else len(text)
            else:
                return i
        return i

    def _next(self, i: int) -> tuple[_Token, int]:
        text = self.text
        char = text[i]
        if char == "'":
            value, end = self._single_quoted(i)
            return self._token("str", value, i), end
        if char == '"':
            value, end = self._double_quoted(i)
            return self._token("str", value, i), end
        if char == "$":
            match = _NAME.match(text, i + 1)
            if not match or match.group().startswith("\\"):
                self.fail(i, "expected a variable name after '$'")
            return self._token("var", match.group(), i), match.end()
        if char in _DIGITS or (char == "." and i + 1 < len(text) and text[i + 1] in _DIGITS):
            return self._number(i)
        match = _NAME.match(text, i)
        if match:
            return self._token("name", match.group(), i), match.end()
        for punct in _PUNCTUATION:
            if text.startswith(punct, i):
                return self._token("op", punct, i), i + len(punct)
        self.fail(i, f"unexpected character {char!r}")

    def _number(self, i: int) -> tuple[_Token, int]:
        match = _NUMBER.match(self.text, i)
        assert match is not None  # the caller saw a digit or '.digit'
        raw = match.group().replace("_", "")
        lower = raw.lower()
        if lower.startswith(("0x", "0b", "0o")):
            base = {"x": 16, "b": 2, "o": 8}[lower[1]]
            return self._token("int", int(raw[2:], base), i), match.end()
        if any(c in lower for c in ".e"):
            return self._token("float", float(raw), i), match.end()
        if len(raw) > 1 and raw.startswith("0"):
            # PHP reads a leading zero as octal (0660 is a file mode).
            if any(c in raw for c in "89"):
                self.fail(i, f"invalid octal literal {raw}")
            return self._token("int", int(raw, 8), i), match.end()
        return self._token("int", int(raw), i), match.end()

    def _single_quoted(self, i: int) -> tuple[str, int]:
        text = self.text
        out: list[str] = []
        j = i + 1
        while j < len(text):
            char = text[j]
            if char == "'":
                return "".join(out), j + 1
            if char == "\\" and j + 1 < len(text) and text[j + 1] in "\\'":
                out.append(text[j + 1])
                j += 2
                continue
            out.append(char)
            j += 1
        self.fail(i, "unterminated string")

    def _double_quoted(self, i: int) -> tuple[str, int]:
        text = self.text
        out: list[str] = []
        j = i + 1
        while j < len(text):
            char = text[j]
            if char == '"':
                return "".join(out), j + 1
            if (
                char == "$"
                and j + 1 < len(text)
                and (text[j + 1] == "{" or _NAME.match(text, j + 1))
            ):
                self.fail(j, "variables inside double-quoted strings are not supported")
            if char == "\\" and j + 1 < len(text):
                piece, j = self._escape(j)
                out.append(piece)
                continue
            out.append(char)
            j += 1
        self.fail(i, "unterminated string")

    def _escape(self, j: int) -> tuple[str, int]:
        """Decode the escape sequence at ``text[j] == '\\'``; unknown ones stay as written."""
        text = self.text
        nxt = text[j + 1]
        if nxt in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[nxt], j + 2
        octal = re.match(r"[0-7]{1,3}", text[j + 1 : j + 4])
        if octal:
            return chr(int(octal.group(), 8) & 0xFF), j + 1 + len(octal.group())
        hexa = re.match(r"x([0-9a-fA-F]{1,2})", text[j + 1 : j + 4])
        if hexa:
            return chr(int(hexa.group(1), 16)), j + 1 + len(hexa.group())
        uni = re.match(r"u\{([0-9a-fA-F]+)\}", text[j + 1 :])
        if uni:
            return chr(int(uni.group(1), 16)), j + 1 + len(uni.group())
        return "\\" + nxt, j + 2


# --------------------------------------------------------------------------- values


def php_truthy(value: PhpValue) -> bool:
    """PHP's boolean conversion: ``""``, ``"0"``, 0, 0.0, null, false and ``[]`` are false."""
    if isinstance(value, str):
        return value not in ("", "0")
    if isinstance(value, PhpConstant):
        return True
    return bool(value)


def php_string(value: PhpValue) -> str:
    """PHP's string conversion, as ``.`` and ``(string)`` apply it."""
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, dict):
        return "Array"
    if isinstance(value, PhpConstant):
        return value.name
    return str(value)


def _php_number(value: PhpValue) -> int | float:
    """PHP's numeric conversion for arithmetic (a leading numeric prefix of a string)."""
    if isinstance(value, bool | int | float):
        return int(value) if isinstance(value, bool) else value
    if isinstance(value, str):
        match = re.match(r"\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?", value)
        if not match:
            return 0
        number = match.group()
        return float(number) if any(c in number for c in ".eE") else int(number)
    return 0


def _php_int(value: PhpValue) -> int:
    number = _php_number(value)
    return int(number)


def _loose_equal(left: PhpValue, right: PhpValue) -> bool:
    """PHP 8 ``==`` for the scalar cases config files use."""
    if isinstance(left, bool) or isinstance(right, bool) or left is None or right is None:
        if left is None and isinstance(right, str):
            return right == ""
        if right is None and isinstance(left, str):
            return left == ""
        return php_truthy(left) == php_truthy(right)
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if isinstance(left, str) and isinstance(right, str):
        if _is_numeric(left) and _is_numeric(right):
            return float(left) == float(right)
        return left == right
    if isinstance(left, int | float) and isinstance(right, str):
        return _is_numeric(right) and float(right) == left
    if isinstance(right, int | float) and isinstance(left, str):
        return _is_numeric(left) and float(left) == right
    return left == right


def _is_numeric(text: str) -> bool:
    return (
        re.fullmatch(r"\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\s*", text) is not None
    )


def _strict_equal(left: PhpValue, right: PhpValue) -> bool:
    return type(left) is type(right) and left == right


def _array_key(value: PhpValue) -> PhpKey:
    """PHP's key normalisation: ``"5"`` is the integer 5, ``true`` is 1, null is ``""``."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if value is None:
        return ""
    text = php_string(value)
    if re.fullmatch(r"-?[1-9][0-9]*|0", text):
        return int(text)
    return text


def _next_index(array: PhpArray) -> int:
    ints = [k for k in array if isinstance(k, int)]
    return max(ints) + 1 if ints and max(ints) >= 0 else 0


# --------------------------------------------------------------------------- evaluator

_CASTS = {"int", "integer", "string", "bool", "boolean", "float", "double", "array"}
_MAGIC = {"true": True, "false": False, "null": None}
# Binary operators by precedence, loosest first (PHP 8 order; '.' below '+' '-').
_BINARY_LEVELS: tuple[tuple[str, ...], ...] = (
    ("or",),
    ("xor",),
    ("and",),
    (),  # _TERNARY_LEVEL: '? :', '?:' and '??', parsed by ternary()
    ("||",),
    ("&&",),
    ("|",),
    ("^",),
    ("&",),
    ("==", "!=", "===", "!==", "<>"),
    ("<", "<=", ">", ">="),
    (".",),
    ("+", "-"),
    ("*", "/", "%"),
)
_TERNARY_LEVEL = 3
_MAX_NESTING = 32


@dataclass(slots=True)
class _Evaluator:
    """Parses and evaluates one file's statements, collecting its variables."""

    tokens: list[_Token]
    filename: str
    environ: Mapping[str, str]
    serverroot: str
    config_dir: str
    pos: int = 0
    variables: dict[str, PhpValue] = field(default_factory=dict)
    depth: int = 0

    # ---- token helpers

    @property
    def tok(self) -> _Token:
        return self.tokens[self.pos]

    def fail(self, message: str, token: _Token | None = None) -> NoReturn:
        token = token or self.tok
        raise ConfigError(f"{self.filename}:{token.line}:{token.column}", SOURCE, message)

    def at(self, kind: str, value: str | None = None) -> bool:
        tok = self.tok
        if tok.kind != kind:
            return False
        if value is None:
            return True
        if kind == "name":
            return isinstance(tok.value, str) and tok.value.lower() == value
        return tok.value == value

    def accept(self, kind: str, value: str | None = None) -> _Token | None:
        if self.at(kind, value):
            token = self.tok
            self.pos += 1
            return token
        return None

    def expect(self, kind: str, value: str) -> _Token:
        token = self.accept(kind, value)
        if token is None:
            self.fail(f"expected '{value}' but found {self.describe(self.tok)}")
        return token

    @staticmethod
    def describe(token: _Token) -> str:
        if token.kind == "end":
            return "end of file"
        if token.kind == "str":
            return "a string"
        if token.kind == "var":
            return f"'${token.value}'"
        return f"'{token.value}'"

    # ---- statements

    def run(self) -> None:
        while not self.at("end"):
            self.statement(live=True)

    def statement(self, live: bool) -> None:
        if self.accept("op", ";"):
            return
        if self.accept("op", "{"):
            if self.depth >= _MAX_NESTING:
                self.fail("nested too deeply")
            self.depth += 1
            while not self.accept("op", "}"):
                if self.at("end"):
                    self.fail("missing '}'")
                self.statement(live)
            self.depth -= 1
            return
        if self.at("name", "if"):
            self.if_statement(live)
            return
        if self.at("var"):
            self.assignment(live)
            return
        # An expression statement, e.g. a lone function call.
        self.expression(live)
        self.end_statement()

    def end_statement(self) -> None:
        if not (self.accept("op", ";") or self.at("end")):
            self.fail(f"expected ';' but found {self.describe(self.tok)}")

    def if_statement(self, live: bool) -> None:
        self.pos += 1  # 'if'
        taken = self.condition(live)
        self.statement(live and taken)
        done = taken
        while True:
            if self.accept("name", "elseif"):
                taken = self.condition(live and not done)
                self.statement(live and not done and taken)
                done = done or taken
            elif self.accept("name", "else"):
                if self.accept("name", "if"):
                    taken = self.condition(live and not done)
                    self.statement(live and not done and taken)
                    done = done or taken
                else:
                    self.statement(live and not done)
                    return
            else:
                return

    def condition(self, live: bool) -> bool:
        self.expect("op", "(")
        value = self.expression(live)
        self.expect("op", ")")
        return php_truthy(value)

    def assignment(self, live: bool) -> None:
        var = self.tok
        self.pos += 1
        if self.at("op", "::") or self.at("op", "?->"):
            self.fail("unsupported statement")
        keys: list[PhpKey | None] = []  # None means '[]' (append)
        while self.accept("op", "["):
            if self.accept("op", "]"):
                keys.append(None)
                continue
            keys.append(_array_key(self.expression(live)))
            self.expect("op", "]")
        operator = self.tok
        if not (self.accept("op", "=") or self.accept("op", ".=") or self.accept("op", "+=")):
            self.fail(f"expected '=' but found {self.describe(self.tok)}")
        value = self.expression(live)
        self.end_statement()
        if live:
            self.store(str(var.value), keys, value, str(operator.value), var)

    def store(
        self, name: str, keys: list[PhpKey | None], value: PhpValue, operator: str, var: _Token
    ) -> None:
        """Assign ``value`` to ``$name[k1][k2]…``, creating arrays on the way like PHP."""
        if not keys:
            old = self.variables.get(name)
            self.variables[name] = self.combine(old, value, operator, var)
            return
        container = self.variables.get(name)
        if container is None or container is False:
            container = {}
            self.variables[name] = container
        for index, key in enumerate(keys):
            if not isinstance(container, dict):
                self.fail(f"${name} is not an array here", var)
            slot = _next_index(container) if key is None else key
            if index == len(keys) - 1:
                container[slot] = self.combine(container.get(slot), value, operator, var)
                return
            child = container.get(slot)
            if child is None:
                child = {}
                container[slot] = child
            container = child

    def combine(self, old: PhpValue, value: PhpValue, operator: str, var: _Token) -> PhpValue:
        # PHP arrays are values: a later change through $CONFIG[...] must not
        # show through another variable that was assigned the same array.
        value = copy.deepcopy(value)
        if operator == ".=":
            return php_string(old) + php_string(value)
        if operator == "+=":
            if isinstance(old, dict) and isinstance(value, dict):
                return {**value, **old}
            return self.arithmetic("+", old, value, var)
        return value

    # ---- expressions

    def expression(self, live: bool) -> PhpValue:
        # Parse with limits: nesting is bounded so hostile input cannot
        # exhaust the Python stack (real config files nest a few levels).
        if self.depth >= _MAX_NESTING:
            self.fail("nested too deeply")
        self.depth += 1
        try:
            return self.binary(0, live)
        finally:
            self.depth -= 1

    def binary(self, level: int, live: bool) -> PhpValue:
        if level == _TERNARY_LEVEL:
            return self.ternary(live)
        if level == len(_BINARY_LEVELS):
            return self.unary(live)
        operators = _BINARY_LEVELS[level]
        left = self.binary(level + 1, live)
        while True:
            token = self.tok
            if not (
                (token.kind == "op" and token.value in operators)
                or (token.kind == "name" and str(token.value).lower() in operators)
            ):
                return left
            self.pos += 1
            operator = str(token.value).lower()
            if operator in ("||", "or"):
                right = self.binary(level + 1, live and not php_truthy(left))
                left = php_truthy(left) or php_truthy(right)
            elif operator in ("&&", "and"):
                right = self.binary(level + 1, live and php_truthy(left))
                left = php_truthy(left) and php_truthy(right)
            else:
                right = self.binary(level + 1, live)
                left = self.apply(operator, left, right, token) if live else None

    def ternary(self, live: bool) -> PhpValue:
        condition = self.coalesce(live)
        while True:
            if self.accept("op", "?:"):
                other = self.coalesce(live and not php_truthy(condition))
                condition = condition if php_truthy(condition) else other
            elif self.accept("op", "?"):
                if self.accept("op", ":"):
                    other = self.coalesce(live and not php_truthy(condition))
                    condition = condition if php_truthy(condition) else other
                    continue
                taken = php_truthy(condition)
                then = self.ternary(live and taken)
                self.expect("op", ":")
                otherwise = self.coalesce(live and not taken)
                condition = then if taken else otherwise
            else:
                return condition

    def coalesce(self, live: bool) -> PhpValue:
        left = self.binary(_TERNARY_LEVEL + 1, live)
        if self.accept("op", "??"):
            right = self.coalesce(live and left is None)
            return left if left is not None else right
        return left

    def apply(self, operator: str, left: PhpValue, right: PhpValue, token: _Token) -> PhpValue:
        if operator == ".":
            return php_string(left) + php_string(right)
        if operator in ("==",):
            return _loose_equal(left, right)
        if operator in ("!=", "<>"):
            return not _loose_equal(left, right)
        if operator == "===":
            return _strict_equal(left, right)
        if operator == "!==":
            return not _strict_equal(left, right)
        if operator == "xor":
            return php_truthy(left) != php_truthy(right)
        if operator in ("<", "<=", ">", ">="):
            a, b = _php_number(left), _php_number(right)
            if (
                isinstance(left, str)
                and isinstance(right, str)
                and not (_is_numeric(left) and _is_numeric(right))
            ):
                return _compare(operator, left, right)
            return _compare(operator, a, b)
        if operator in ("|", "&", "^"):
            a, b = _php_int(left), _php_int(right)
            return a | b if operator == "|" else a & b if operator == "&" else a ^ b
        return self.arithmetic(operator, left, right, token)

    def arithmetic(self, operator: str, left: PhpValue, right: PhpValue, token: _Token) -> PhpValue:
        if isinstance(left, dict) or isinstance(right, dict):
            self.fail(f"unsupported operand types for '{operator}'", token)
        try:
            result = _calculate(operator, _php_number(left), _php_number(right))
        except ZeroDivisionError:
            self.fail("division by zero", token)
        except (OverflowError, ValueError):
            self.fail(f"'{operator}' gives no number here", token)
        # PHP turns an integer that leaves 64 bits into a float; that also
        # keeps hostile input from building huge integers.
        if isinstance(result, int) and not -(2**63) <= result < 2**63:
            return float(result)
        return result

    def unary(self, live: bool) -> PhpValue:
        token = self.tok
        if self.accept("op", "!"):
            return not php_truthy(self.unary(live))
        if self.accept("op", "-"):
            value = self.unary(live)
            return self.arithmetic("-", 0, value, token) if live else None
        if self.accept("op", "+"):
            value = self.unary(live)
            return _php_number(value) if live else None
        if self.accept("op", "@"):
            return self.unary(live)  # error suppression changes nothing here
        if self.at("op", "(") and self.is_cast():
            self.pos += 1
            kind = str(self.tok.value).lower()
            self.pos += 2
            return self.cast(kind, self.unary(live))
        value = self.postfix(live)
        if self.accept("op", "**"):
            exponent = self.unary(live)
            return self.arithmetic("**", value, exponent, token) if live else None
        return value

    def is_cast(self) -> bool:
        end = len(self.tokens) - 1  # the "end" token, which every read past it sees
        nxt = self.tokens[min(self.pos + 1, end)]
        after = self.tokens[min(self.pos + 2, end)]
        return (
            nxt.kind == "name"
            and str(nxt.value).lower() in _CASTS
            and after.kind == "op"
            and after.value == ")"
        )

    @staticmethod
    def cast(kind: str, value: PhpValue) -> PhpValue:
        if kind in ("int", "integer"):
            return _php_int(value)
        if kind in ("float", "double"):
            return float(_php_number(value))
        if kind in ("bool", "boolean"):
            return php_truthy(value)
        if kind == "string":
            return php_string(value)
        if isinstance(value, dict):
            return value
        return {} if value is None else {0: value}

    def postfix(self, live: bool) -> PhpValue:
        value = self.primary(live)
        while True:
            token = self.tok
            if not self.accept("op", "["):
                return value
            key = self.expression(live)
            self.expect("op", "]")
            value = self.index(value, key, token) if live else None

    def index(self, value: PhpValue, key: PhpValue, token: _Token) -> PhpValue:
        if isinstance(value, dict):
            return value.get(_array_key(key))
        if isinstance(value, str):
            position = _php_int(key)
            return value[position] if -len(value) <= position < len(value) else ""
        # Indexing null or false yields null in PHP (with a warning).
        return None

    def primary(self, live: bool) -> PhpValue:
        token = self.tok
        self.pos += 1
        if token.kind in ("str", "int", "float"):
            return token.value
        if token.kind == "var":
            return self.variables.get(str(token.value)) if live else None
        if token.kind == "op" and token.value == "(":
            value = self.expression(live)
            self.expect("op", ")")
            return value
        if token.kind == "op" and token.value == "[":
            return self.array_items("]", live)
        if token.kind == "name":
            return self.named(token, live)
        self.fail(f"unexpected {self.describe(token)}", token)

    def named(self, token: _Token, live: bool) -> PhpValue:
        name = str(token.value)
        lower = name.lower().lstrip("\\")
        if lower == "array" and self.accept("op", "("):
            return self.array_items(")", live)
        if self.accept("op", "::"):
            return self.class_member(name, token)
        if self.at("op", "("):
            return self.call(lower, token, live)
        if lower in _MAGIC:
            return _MAGIC[lower]
        if name == "__DIR__":
            return self.config_dir
        if name == "__FILE__":
            return self.filename
        # Any other constant (PHP_EOL, OC_…): accepted, its value is never needed.
        return PhpConstant(name)

    def class_member(self, name: str, token: _Token) -> PhpValue:
        member = self.tok
        self.pos += 1
        if member.kind == "var":
            if name.lstrip("\\") == "OC" and member.value == "SERVERROOT":
                return self.serverroot
            self.fail(f"unknown static property {name}::${member.value}", member)
        if member.kind == "name":
            return PhpConstant(f"{name}::{member.value}")
        self.fail(f"expected a constant name after '{name}::'", member)

    def array_items(self, closer: str, live: bool) -> PhpArray:
        array: PhpArray = {}
        while not self.accept("op", closer):
            first = self.expression(live)
            if self.accept("op", "=>"):
                array[_array_key(first)] = self.expression(live)
            else:
                array[_next_index(array)] = first
            if not self.accept("op", ","):
                self.expect("op", closer)
                break
        return array

    def arguments(self, live: bool) -> list[PhpValue]:
        self.expect("op", "(")
        values: list[PhpValue] = []
        while not self.accept("op", ")"):
            values.append(self.expression(live))
            if not self.accept("op", ","):
                self.expect("op", ")")
                break
        return values

    def call(self, name: str, token: _Token, live: bool) -> PhpValue:
        function = _FUNCTIONS.get(name)
        if function is None:
            self.fail(f"unsupported function {name}()", token)
        args = self.arguments(live)
        if not live:
            return None
        try:
            return function(self, args)
        except (TypeError, IndexError):
            self.fail(f"wrong arguments for {name}()", token)


def _calculate(operator: str, a: int | float, b: int | float) -> int | float:
    """One arithmetic operator with PHP's result types; raises ZeroDivisionError,
    OverflowError or ValueError where PHP raises or gives INF/NAN."""
    if operator == "+":
        return a + b
    if operator == "-":
        return a - b
    if operator == "*":
        return a * b
    if operator == "**":
        if isinstance(a, int) and isinstance(b, int) and 0 <= b <= 64:
            return int(a**b)
        result: float | complex = float(a) ** float(b)
        if isinstance(result, complex):
            raise ValueError("complex result")
        return result
    if operator == "%":
        # PHP's % works on integers and keeps the dividend's sign.
        dividend, divisor = int(a), int(b)
        remainder = abs(dividend) % abs(divisor)
        return -remainder if dividend < 0 else remainder
    quotient = a / b
    if isinstance(a, int) and isinstance(b, int) and a % b == 0:
        return int(a // b)
    return quotient


def _compare(operator: str, a: int | float | str, b: int | float | str) -> bool:
    if operator == "<":
        return a < b  # type: ignore[operator]
    if operator == "<=":
        return a <= b  # type: ignore[operator]
    if operator == ">":
        return a > b  # type: ignore[operator]
    return a >= b  # type: ignore[operator]


def _fn_getenv(ev: _Evaluator, args: list[PhpValue]) -> PhpValue:
    # PHP's getenv() gives false for a missing variable; callers read false as unset.
    return ev.environ.get(php_string(args[0]), False)


def _fn_file_get_contents(ev: _Evaluator, args: list[PhpValue]) -> PhpValue:
    # The container image reads secrets this way (REDIS_HOST_PASSWORD_FILE).
    path = php_string(args[0])
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        ev.fail(f"file_get_contents({path!r}) failed: {exc.strerror}")


def _fn_array_merge(ev: _Evaluator, args: list[PhpValue]) -> PhpValue:
    merged: PhpArray = {}
    for arg in args:
        if not isinstance(arg, dict):
            ev.fail("array_merge() takes arrays")
        for key, value in arg.items():
            merged[_next_index(merged) if isinstance(key, int) else key] = value
    return merged


_FUNCTIONS: dict[str, Callable[[_Evaluator, list[PhpValue]], PhpValue]] = {
    "getenv": _fn_getenv,
    "file_get_contents": _fn_file_get_contents,
    "array_merge": _fn_array_merge,
    "trim": lambda ev, a: php_string(a[0]).strip(" \t\n\r\0\x0b"),
    "rtrim": lambda ev, a: php_string(a[0]).rstrip(" \t\n\r\0\x0b"),
    "ltrim": lambda ev, a: php_string(a[0]).lstrip(" \t\n\r\0\x0b"),
    "strtolower": lambda ev, a: php_string(a[0]).lower(),
    "strtoupper": lambda ev, a: php_string(a[0]).upper(),
    "intval": lambda ev, a: _php_int(a[0]),
    "strval": lambda ev, a: php_string(a[0]),
    "boolval": lambda ev, a: php_truthy(a[0]),
    "dirname": lambda ev, a: os.path.dirname(php_string(a[0])),
    "is_numeric": lambda ev, a: isinstance(a[0], int | float) or _is_numeric(php_string(a[0])),
}


# --------------------------------------------------------------------------- files


def evaluate_config_php(
    text: str, filename: str, environ: Mapping[str, str], serverroot: str | None = None
) -> PhpArray | None:
    """Evaluate config.php source and return its ``$CONFIG`` array.

    Returns None when the file never sets ``$CONFIG`` to an array (the
    container image's optional ``*.config.php`` files do that when their
    environment variable is unset). ``serverroot`` is what ``OC::$SERVERROOT``
    means; by default the folder above the file's folder.

    Raises ConfigError(``filename:line:column``, ``config.php``, message) on
    syntax PHP would reject or on constructs this reader does not support.
    """
    config_dir = os.path.dirname(os.path.abspath(filename))
    root = serverroot if serverroot is not None else os.path.dirname(config_dir)
    evaluator = _Evaluator([], filename, environ, root, config_dir)

    def fail(offset: int, message: str) -> NoReturn:
        line, column = lexer.position(offset)
        raise ConfigError(f"{filename}:{line}:{column}", SOURCE, message)

    lexer = _Lexer(text, fail)
    evaluator.tokens = list(lexer.tokens())
    evaluator.run()
    config = evaluator.variables.get("CONFIG")
    return config if isinstance(config, dict) else None


def read_config_file(path: str, environ: Mapping[str, str]) -> PhpArray | None:
    """Read and evaluate one file; see :func:`evaluate_config_php`.

    Raises ConfigError when the file cannot be read or parsed.
    """
    try:
        # utf-8-sig: some editors save config.php with a byte-order mark.
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(path, SOURCE, f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, SOURCE, f"not UTF-8 text at byte {exc.start}") from None
    return evaluate_config_php(text, path, environ)


def config_files(path: str, glob: bool) -> list[str]:
    """The files Nextcloud reads: ``path``, then with ``glob`` every ``*.config.php``
    in its folder sorted by name (Nextcloud's order; later files win)."""
    files = [path]
    if glob:
        folder = Path(path).parent
        try:
            names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".config.php"))
        except OSError as exc:
            raise ConfigError(str(folder), SOURCE, f"cannot list: {exc.strerror}") from None
        files += [str(folder / name) for name in names if str(folder / name) != path]
    return files


def read_nextcloud_config(path: str, environ: Mapping[str, str], glob: bool = False) -> PhpArray:
    """The merged ``$CONFIG`` of config.php (and with ``glob`` its siblings).

    Merging is per top-level key, a later file replacing the whole value, as
    Nextcloud's ``array_merge`` does. Raises ConfigError when a file cannot
    be read or parsed, or when the main file sets no ``$CONFIG`` array.
    """
    merged: PhpArray = {}
    for index, file in enumerate(config_files(path, glob)):
        config = read_config_file(file, environ)
        if config is None:
            if index == 0:
                raise ConfigError(file, SOURCE, "does not set a $CONFIG array")
            continue
        merged.update(config)
    return merged
