"""botocore's Java-flavoured patterns keep their Java meaning in Python (java_regex.py)."""

from __future__ import annotations

from typing import Any

import pytest

from include.sandbox import java_regex
from include.sandbox.protocol import operation_model
from include.sandbox.server import HANDLERS


def matches(pattern: str, value: str) -> bool:
    search = java_regex.matcher(pattern)
    assert search is not None, java_regex.skipped().get(pattern)
    return bool(search(value))


@pytest.mark.parametrize(
    ("pattern", "accepted", "refused"),
    [
        # \w, \d and \s are US-ASCII in Java; a no-break space is not \s there.
        (r"^\w+$", ["web_01"], ["café"]),
        (r"^\d+$", ["2024"], ["٢٠٢٤"]),
        (r".*\S.*", ["x", "\u00a0"], ["", " \t\n"]),
        # POSIX classes are US-ASCII too, and \p{Punct} holds $+<=>^`|~ (Unicode punctuation does not).
        (r"^\p{Punct}+$", ["$+<=>^`|~!"], ["a", "«"]),
        (r"^[\p{Alnum}_]+$", ["Web_01"], ["é"]),
        (r"^\P{Cntrl}+$", ["ok"], ["a\x7f"]),
        # A UTF-16 surrogate pair is one code point: the XML-safe characters of the query services' models.
        (r"^[\u0020-\uD7FF\uE000-\uFFFD\uD800\uDC00-\uDBFF\uDFFF\r\n\t]*$", ["emoji \U0001f600", ""], ["\x01"]),
        (r"^\x{1F600}$", ["\U0001f600"], ["x"]),
        # "-" next to a class is a literal.
        (r"^[\w-.]+$", ["a-b.c"], ["a b"]),
        (r"^[\w- ]+$", ["a- b"], ["a.b"]),
        # Java 8's \v and \h are whitespace classes.
        (r"^[\P{C}\v]*$", ["a\nb\u2028"], ["\x00"]),
        (r"^a\hb$", ["a b", "a\u3000b"], ["a\nb"]),
        # \z, \Z, \Q...\E, and flags right after "^".
        (r"^\Qa.b\E\z", ["a.b"], ["axb", "a.b\n"]),
        (r"^ab\Z", ["ab", "ab\n"], ["ab\n\n"]),
        (r"^(?i)(true|false)$", ["TRUE", "false"], ["yes"]),
    ],
)
def test_java_meaning_is_kept(pattern: str, accepted: list[str], refused: list[str]) -> None:
    for value in accepted:
        assert matches(pattern, value), value
    for value in refused:
        assert not matches(pattern, value), value


def test_unicode_categories_use_the_regex_module() -> None:
    pytest.importorskip("regex")
    tag = r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$"  # SSM's TagKey
    assert matches(tag, "Übersicht 2024")
    assert not matches(tag, "a!b")
    assert matches(r"^\p{IsAlphabetic}+$", "ß")
    assert matches(r"^(\p{LD}|\p{Punct}| )+$", "é1 !")  # Directory Service's RadiusSharedSecret


@pytest.mark.parametrize(
    "pattern",
    [
        r"[\p{Print}&&[^|:/]]+",  # an intersection
        r"[a-z[0-9]]+",  # a union
        r"(?!(?i)AWS_)[a-zA-Z_][a-zA-Z0-9_]*",  # flags in mid-pattern apply from there on in Java
        r"^\p{javaLowerCase}+$",
        r"^[0-9a-zA-Z]{11}{0,1011}$",  # a quantified quantifier (rbin's RuleArn): Java takes it, Python does not
    ],
)
def test_patterns_python_cannot_read_as_java_does_are_skipped(pattern: str) -> None:
    assert java_regex.matcher(pattern) is None
    assert pattern in java_regex.skipped()


def test_patterns_are_compiled_once() -> None:
    assert java_regex.matcher(r"^[a-z]+$") is java_regex.matcher(r"^[a-z]+$")


def _input_patterns(shape: Any, found: set[str], seen: set[str]) -> None:
    if shape is None or shape.name in seen:
        return
    seen.add(shape.name)
    if "pattern" in shape.metadata:
        found.add(shape.metadata["pattern"])
    if shape.type_name == "structure":
        for member in shape.members.values():
            _input_patterns(member, found, seen)
    elif shape.type_name == "list":
        _input_patterns(shape.member, found, seen)
    elif shape.type_name == "map":
        _input_patterns(shape.key, found, seen)
        _input_patterns(shape.value, found, seen)


def test_every_pattern_of_the_operations_the_sandbox_serves_is_checked() -> None:
    # A botocore upgrade bringing a pattern the sandbox would skip is noticed here.
    found: set[str] = set()
    for service, operation in HANDLERS:
        _input_patterns(operation_model(service, operation).input_shape, found, set())
    assert found
    assert {pattern for pattern in found if java_regex.matcher(pattern) is None} == set()
