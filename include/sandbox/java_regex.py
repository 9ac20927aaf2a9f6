r"""botocore's string ``pattern`` constraints, compiled for Python with the meaning AWS gives them.

The models' patterns are written for AWS's Java services (java.util.regex), and some of them mean
something else to Python, or nothing at all. ``matcher`` rewrites the Java-only constructs whose
meaning is certain before compiling:

* ``\d``, ``\w``, ``\s`` (and ``\D``, ``\W``, ``\S``) are US-ASCII classes in Java, as are its POSIX
  classes ``\p{Alpha}``, ``\p{Punct}``, ``\p{Print}``, ...: they become explicit ranges (Python's
  own are Unicode, and the ``regex`` module's ``\p{Punct}`` is Unicode punctuation, not ``$+<=>^`|~``);
* a UTF-16 surrogate pair ``\uD800\uDC00`` is one code point in Java (U+10000);
* ``\v`` and ``\h`` (Java 8's vertical and horizontal whitespace), ``\x{10FFFF}``, ``\z``, ``\Z``,
  ``\Q...\E``, ``\p{IsAlphabetic}``, ``\p{LD}``, ``\p{all}``, and ``^(?i)`` (flags must lead in Python);
* a ``-`` next to a class in a character class (``[\w-.]``) is a literal ``-`` in Java.

Unicode general categories (``\p{L}``, ``\p{Zs}``, ...) need the ``regex`` module, used when it is
installed (moto[server] brings it, through cfn-lint). A pattern that still cannot be compiled, or
uses a construct whose Java meaning is not reproduced here (nested classes and ``&&``, ``\R``,
flags in mid-pattern, ...), gets no matcher: it is skipped (``skipped()``) rather than
risk refusing a request AWS accepts.
"""

from __future__ import annotations

import functools
import re
import threading
import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["Matcher", "matcher", "python_pattern", "skipped"]

try:  # a dependency of moto's CloudFormation support (cfn-lint), not of the project itself
    import regex as _regex_module
except ImportError:  # pragma: no cover - the sandbox's environment has it
    _regex_module = None

Matcher = Callable[[str], Any]
"""A compiled pattern's ``search``: a match (truthy) or None."""

_Ranges = tuple[tuple[int, int], ...]
_MAX = 0x10FFFF

# Java's predefined and POSIX classes are US-ASCII only (without UNICODE_CHARACTER_CLASS).
_DIGIT: _Ranges = ((0x30, 0x39),)
_WORD: _Ranges = ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))
_SPACE: _Ranges = ((0x09, 0x0D), (0x20, 0x20))  # [ \t\n\x0B\f\r]
# Java 8's \v and \h are whitespace classes (Python's \v is the vertical tab alone).
_VERTICAL: _Ranges = ((0x0A, 0x0D), (0x85, 0x85), (0x2028, 0x2029))
_HORIZONTAL: _Ranges = (
    (0x09, 0x09),
    (0x20, 0x20),
    (0xA0, 0xA0),
    (0x1680, 0x1680),
    (0x180E, 0x180E),
    (0x2000, 0x200A),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
)
_SHORTHANDS: dict[str, _Ranges] = {"d": _DIGIT, "w": _WORD, "s": _SPACE, "v": _VERTICAL, "h": _HORIZONTAL}
_POSIX: dict[str, _Ranges] = {
    "Lower": ((0x61, 0x7A),),
    "Upper": ((0x41, 0x5A),),
    "ASCII": ((0x00, 0x7F),),
    "Alpha": ((0x41, 0x5A), (0x61, 0x7A)),
    "Digit": _DIGIT,
    "Alnum": ((0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)),
    "Punct": ((0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)),
    "Graph": ((0x21, 0x7E),),
    "Print": ((0x20, 0x7E),),
    "Blank": ((0x09, 0x09), (0x20, 0x20)),
    "Cntrl": ((0x00, 0x1F), (0x7F, 0x7F)),
    "XDigit": ((0x30, 0x39), (0x41, 0x46), (0x61, 0x66)),
    "Space": _SPACE,
    "all": ((0, _MAX),),
}
# Java properties the regex module knows under another name (class bodies; the regex module only).
_PROPERTIES = {
    "IsAlphabetic": (r"\p{Alphabetic}", r"\P{Alphabetic}"),
    "IsWhite_Space": (r"\p{White_Space}", r"\P{White_Space}"),
    "IsWhitespace": (r"\p{White_Space}", r"\P{White_Space}"),
    "LD": (r"\p{L}\p{Nd}", None),  # Character.isLetterOrDigit; its negation is not a class body
}
# Unicode general categories, optionally "Is"-prefixed, as Java and the regex module both read them.
_CATEGORY = re.compile(r"(?:Is)?(L[ultmo]?|M[nce]?|N[dlo]?|P[cdseifo]?|S[mcko]?|Z[slp]?|C[cfson]?)")
_INLINE_FLAGS = re.compile(r"\(\?[a-zA-Z]*(?:-[a-zA-Z]*)?\)")
_LOW_SURROGATE = re.compile(r"\\u(d[c-f][0-9a-f]{2})", re.IGNORECASE)
_JAVA_LINE_END = r"(?=(?:\r\n|[\n\r\u0085\u2028\u2029])?\Z)"  # Java's \Z
# Escapes Python reads as Java does (outside the ones rewritten above).
_SAME_ESCAPES = frozenset("tnrfaAbB0123456789")

_COMPILE_ERRORS: tuple[type[Exception], ...] = (ValueError, OverflowError, re.error, Warning) + (
    (_regex_module.error,) if _regex_module is not None else ()
)
_lock = threading.Lock()
_skipped: dict[str, str] = {}


class _Untranslatable(ValueError):
    """The pattern uses a Java construct whose meaning this module does not reproduce."""


def skipped() -> dict[str, str]:
    """Patterns met so far that got no matcher, each with the reason."""
    with _lock:
        return dict(_skipped)


@functools.cache
def matcher(pattern: str) -> Matcher | None:
    """The ``search`` of ``pattern`` compiled with its Java meaning, or None when that cannot be done.

    Search, not full match: Smithy's ``@pattern`` is not implicitly anchored, so the models anchor
    their patterns with ``^...$`` where they mean the whole value.
    """
    translator = _Translator(pattern)
    try:
        text = translator.run()
        with warnings.catch_warnings():
            # re compiles "[[" and "||" with a FutureWarning and a meaning Java does not give them.
            warnings.simplefilter("error")
            if not translator.unicode_properties:
                # ASCII: Java's case-insensitive matching is US-ASCII unless asked otherwise.
                return re.compile(text, re.ASCII).search
            if _regex_module is None:
                raise _Untranslatable("Unicode properties need the regex module")
            # Not ASCII: the regex module's ASCII flag would make \p{L} the ASCII letters.
            return _regex_module.compile(text, _regex_module.V0).search  # type: ignore[no-any-return]
    except _COMPILE_ERRORS as exc:
        with _lock:
            _skipped[pattern] = f"{type(exc).__name__}: {exc}"
        return None


def python_pattern(pattern: str) -> str:
    """``pattern`` (java.util.regex) rewritten for Python; raises ValueError when it cannot be."""
    return _Translator(pattern).run()


class _Translator:
    def __init__(self, pattern: str) -> None:
        self.text = pattern
        self.pos = 0
        self.out: list[str] = []
        self.in_class = False
        self.class_items = 0  # items written since the class opened
        self.last_was_set = False  # the previous class item was a class itself (\w, \p{L}, ...)
        self.unicode_properties = False  # \p{L}-style categories, which only the regex module reads

    def run(self) -> str:
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char == "\\":
                self._escape()
            elif self.in_class:
                self._class_char(char)
            elif char == "[":
                self._open_class()
            else:
                flags = _INLINE_FLAGS.match(text, self.pos) if char == "(" else None
                if flags is not None and "".join(self.out) not in ("", "^"):
                    # Java applies them from here on; Python refuses them, the regex module applies them everywhere.
                    raise _Untranslatable("inline flags after the start of the pattern")
                if flags is not None:  # "^(?i)...": the same as "(?i)^...", which is all Python takes
                    self.out.insert(0, flags.group())
                    self.pos = flags.end()
                    continue
                self.out.append(char)
                self.pos += 1
        if self.in_class:
            raise _Untranslatable("unclosed character class")
        return "".join(self.out)

    # -- character classes -------------------------------------------------------------------
    def _open_class(self) -> None:
        self.in_class = True
        self.class_items = 0
        self.last_was_set = False
        self.pos += 1
        self.out.append("[")
        if self.text.startswith("^", self.pos):
            self.out.append("^")
            self.pos += 1

    def _class_char(self, char: str) -> None:
        text = self.text
        if char == "]" and self.class_items > 0:
            self.in_class = False
            self.out.append("]")
        elif char == "[":
            raise _Untranslatable("nested character class (a union in Java)")
        elif char == "&" and text.startswith("&&", self.pos):
            raise _Untranslatable("character class intersection (&&)")
        elif char == "-" and self._literal_dash():
            self.out.append(r"\-")
            self.last_was_set = False
            self.class_items += 1
        else:
            # A "]" first in the class is a literal to Python; Java would not have compiled it.
            self.out.append("\\]" if char == "]" else char)
            self.last_was_set = False
            self.class_items += 1
        self.pos += 1

    def _literal_dash(self) -> bool:
        """Whether a "-" in a class is a literal in Java: next to a class, or first / last."""
        following = self.text[self.pos + 1 : self.pos + 3]
        next_is_set = len(following) == 2 and following[0] == "\\" and following[1] in "dDwWsSpP"
        return self.last_was_set or next_is_set or self.class_items == 0 or following[:1] == "]"

    # -- escapes -------------------------------------------------------------------------------
    def _escape(self) -> None:
        text = self.text
        if self.pos + 1 >= len(text):
            raise _Untranslatable("trailing backslash")
        letter = text[self.pos + 1]
        self.pos += 2
        if letter.lower() in _SHORTHANDS:
            ranges = _SHORTHANDS[letter.lower()]
            self._set(ranges if letter.islower() else _complement(ranges))
        elif letter in "pP":
            self._property(negated=letter == "P")
        elif letter == "u":
            self._item(self._unicode_escape())
        elif letter == "x":
            self._item(self._hex_escape())
        elif letter == "Q":
            self._quoted()
        elif letter in "zZ" and not self.in_class:
            self.out.append(r"\Z" if letter == "z" else _JAVA_LINE_END)
        elif letter in _SAME_ESCAPES:
            self._item("\\" + letter)
        elif letter.isascii() and letter.isalnum():
            # \R \X \G \e \c, \k<name>, ...: Java-only, or read otherwise by Python.
            raise _Untranslatable(f"\\{letter} has no Python equivalent here")
        else:
            self._item(re.escape(letter))

    def _item(self, text: str) -> None:
        """A single character (or any non-class token) written as is."""
        self.out.append(text)
        if self.in_class:
            self.last_was_set = False
            self.class_items += 1

    def _set(self, ranges: _Ranges) -> None:
        body = _ranges_text(ranges)
        self.out.append(body if self.in_class else f"[{body}]")
        if self.in_class:
            self.last_was_set = True
            self.class_items += 1

    def _property(self, *, negated: bool) -> None:
        text = self.text
        if text.startswith("{", self.pos):
            end = text.find("}", self.pos)
            if end < 0:
                raise _Untranslatable("unclosed \\p{")
            name = text[self.pos + 1 : end]
            self.pos = end + 1
        else:  # \pL
            name = text[self.pos : self.pos + 1]
            self.pos += 1
        if name in _POSIX:
            self._set(_complement(_POSIX[name]) if negated else _POSIX[name])
            return
        category = _CATEGORY.fullmatch(name)
        if category is not None:
            body = f"\\{'P' if negated else 'p'}{{{category.group(1)}}}"
        elif name in _PROPERTIES:
            positive, negative = _PROPERTIES[name]
            if negated and negative is None:
                if self.in_class:
                    raise _Untranslatable(f"\\P{{{name}}} in a character class")
                body = f"[^{positive}]"
            else:
                body = negative if negated and negative is not None else positive
                body = body if self.in_class else f"[{body}]"
        else:
            raise _Untranslatable(f"Java property \\p{{{name}}}")
        self.out.append(body)
        self.unicode_properties = True
        if self.in_class:
            self.last_was_set = True
            self.class_items += 1

    def _unicode_escape(self) -> str:
        code = self._hex_digits(4)
        # Java reads a UTF-16 surrogate pair as the one code point it encodes.
        low = _LOW_SURROGATE.match(self.text, self.pos)
        if 0xD800 <= code <= 0xDBFF and low is not None:
            code = 0x10000 + ((code - 0xD800) << 10) + (int(low.group(1), 16) - 0xDC00)
            self.pos = low.end()
        return _code_point(code)

    def _hex_escape(self) -> str:
        text = self.text
        if text.startswith("{", self.pos):
            end = text.find("}", self.pos)
            if end < 0:
                raise _Untranslatable("unclosed \\x{")
            digits = text[self.pos + 1 : end]
            self.pos = end + 1
            if not re.fullmatch(r"[0-9a-fA-F]{1,6}", digits) or int(digits, 16) > _MAX:
                raise _Untranslatable(f"bad \\x{{{digits}}}")
            return _code_point(int(digits, 16))
        return _code_point(self._hex_digits(2))

    def _hex_digits(self, count: int) -> int:
        digits = self.text[self.pos : self.pos + count]
        if not re.fullmatch(f"[0-9a-fA-F]{{{count}}}", digits):
            raise _Untranslatable(f"bad hexadecimal escape {digits!r}")
        self.pos += count
        return int(digits, 16)

    def _quoted(self) -> None:
        if self.in_class:
            raise _Untranslatable("\\Q in a character class")
        end = self.text.find("\\E", self.pos)
        literal = self.text[self.pos :] if end < 0 else self.text[self.pos : end]
        self.pos = len(self.text) if end < 0 else end + 2
        self.out.append(re.escape(literal))


def _code_point(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _complement(ranges: _Ranges) -> _Ranges:
    result: list[tuple[int, int]] = []
    start = 0
    for low, high in sorted(ranges):
        if low > start:
            result.append((start, low - 1))
        start = max(start, high + 1)
    if start <= _MAX:
        result.append((start, _MAX))
    return tuple(result)


def _ranges_text(ranges: _Ranges) -> str:
    return "".join(
        _code_point(low) if low == high else f"{_code_point(low)}-{_code_point(high)}" for low, high in ranges
    )
