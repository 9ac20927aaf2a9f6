"""JSONPath as SSM Automation reads it (Selector, PropertySelector): the Jayway subset runbooks use.

``$`` then any of: ``.name``, ``['name']``, ``[n]`` (negative from the end), ``[n,m]``, ``[a:b]``, ``.*`` /
``[*]``, ``..name`` / ``..*`` (deep scan) and ``[?(@.path OP literal)]`` filters (``==``, ``!=``, ``<``, ``<=``,
``>``, ``>=``, or ``@.path`` alone for "exists", joined by ``&&`` or ``||``). A *definite* path (names and
single indexes only) selects one value or nothing (Jayway's PathNotFoundException); any other path selects a
list, empty when nothing matches.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


class JsonPathError(ValueError):
    """A selector that is not JSONPath the sandbox understands."""


@dataclass(frozen=True)
class Selection:
    """What a path selected: `values` (one at most for a definite path) and whether the path is definite."""

    definite: bool
    values: list[Any]

    @property
    def found(self) -> bool:
        return bool(self.values) or not self.definite

    @property
    def value(self) -> Any:
        """The selected value: the one value of a definite path, the list of an indefinite one."""
        if self.definite:
            if not self.values:
                raise KeyError("no value")
            return self.values[0]
        return list(self.values)


# A step applies to every node selected so far and yields the nodes it selects from each.
_Step = Callable[[Any], Iterator[Any]]

_NAME = re.compile(r"[A-Za-z0-9_\-$@:]+")
_COMPARISON = re.compile(r"^\s*@((?:\.[A-Za-z0-9_\-]+|\[\d+\]|\['[^']*'\])*)\s*(?:(==|!=|<=|>=|<|>)\s*(.+?))?\s*$")


def select(document: Any, path: str) -> Selection:
    """Apply `path` to `document` (parsed JSON). JsonPathError when the path cannot be parsed."""
    steps, definite = _compile(path)
    nodes: list[Any] = [document]
    for step in steps:
        nodes = [found for node in nodes for found in step(node)]
    return Selection(definite, nodes[:1] if definite else nodes)


def _compile(path: str) -> tuple[list[_Step], bool]:
    text = path.strip()
    if not text.startswith("$"):
        raise JsonPathError(f"{path!r} is not a JSONPath expression: it must start with '$'")
    steps: list[_Step] = []
    definite = True
    i = 1
    while i < len(text):
        if text.startswith("..", i):
            i += 2
            if i < len(text) and text[i] == "[":
                step, i, _ = _bracket(text, i, path)
            elif text.startswith("*", i):
                step, i = _children, i + 1
            else:
                name, i = _name(text, i, path)
                step = _key(name)
            steps.append(_deep(step))
            definite = False
        elif text[i] == ".":
            i += 1
            if text.startswith("*", i):
                steps.append(_children)
                definite = False
                i += 1
            else:
                name, i = _name(text, i, path)
                steps.append(_key(name))
        elif text[i] == "[":
            step, i, single = _bracket(text, i, path)
            steps.append(step)
            definite = definite and single
        else:
            raise JsonPathError(f"{path!r}: unexpected {text[i]!r} at position {i}")
    return steps, definite


def _name(text: str, i: int, path: str) -> tuple[str, int]:
    match = _NAME.match(text, i)
    if not match:
        raise JsonPathError(f"{path!r}: a property name is expected at position {i}")
    return match.group(0), match.end()


def _bracket(text: str, i: int, path: str) -> tuple[_Step, int, bool]:
    """One [...] segment at text[i]: (step, index after it, whether it selects at most one value)."""
    if text.startswith("[?(", i):
        end = text.find(")]", i)
        if end < 0:
            raise JsonPathError(f"{path!r}: unterminated filter at position {i}")
        return _filter(text[i + 3 : end], path), end + 2, False
    end = text.find("]", i)
    if end < 0:
        raise JsonPathError(f"{path!r}: unterminated '[' at position {i}")
    inner = text[i + 1 : end].strip()
    after = end + 1
    if inner == "*":
        return _children, after, False
    if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
        return _key(inner[1:-1]), after, True
    if ":" in inner:
        start_text, _, stop_text = inner.partition(":")
        try:
            start = int(start_text) if start_text.strip() else None
            stop = int(stop_text) if stop_text.strip() else None
        except ValueError:
            raise JsonPathError(f"{path!r}: bad slice [{inner}]") from None
        return _slice(start, stop), after, False
    try:
        indexes = [int(part) for part in inner.split(",")]
    except ValueError:
        raise JsonPathError(f"{path!r}: bad index [{inner}]") from None
    return _indexes(indexes), after, len(indexes) == 1


def _key(name: str) -> _Step:
    def step(node: Any) -> Iterator[Any]:
        if isinstance(node, dict) and name in node:
            yield node[name]

    return step


def _children(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        yield from node.values()
    elif isinstance(node, list):
        yield from node


def _indexes(indexes: list[int]) -> _Step:
    def step(node: Any) -> Iterator[Any]:
        if isinstance(node, list):
            for index in indexes:
                if -len(node) <= index < len(node):
                    yield node[index]

    return step


def _slice(start: int | None, stop: int | None) -> _Step:
    def step(node: Any) -> Iterator[Any]:
        if isinstance(node, list):
            yield from node[start:stop]

    return step


def _deep(inner: _Step) -> _Step:
    """Deep scan: `inner` applied to the node and every node below it, in document order."""

    def step(node: Any) -> Iterator[Any]:
        stack = [node]
        while stack:
            current = stack.pop()
            yield from inner(current)
            if isinstance(current, dict):
                stack.extend(reversed(list(current.values())))
            elif isinstance(current, list):
                stack.extend(reversed(current))

    return step


def _filter(expression: str, path: str) -> _Step:
    """[?(...)]: the elements of an array (or values of an object) for which the expression holds."""
    alternatives = [[_condition(part, path) for part in group.split("&&")] for group in expression.split("||")]

    def holds(item: Any) -> bool:
        return any(all(condition(item) for condition in group) for group in alternatives)

    def step(node: Any) -> Iterator[Any]:
        items = node if isinstance(node, list) else list(node.values()) if isinstance(node, dict) else []
        yield from (item for item in items if holds(item))

    return step


def _condition(text: str, path: str) -> Callable[[Any], bool]:
    match = _COMPARISON.match(text)
    if not match:
        raise JsonPathError(f"{path!r}: the sandbox does not understand the filter condition {text.strip()!r}")
    relative, operator, literal_text = match.groups()
    sub_steps, _ = _compile("$" + relative)
    if operator is None:
        return lambda item: bool(_relative(item, sub_steps))
    literal = _literal(literal_text, path)

    def compare(item: Any) -> bool:
        found = _relative(item, sub_steps)
        return bool(found) and _compare(found[0], operator, literal)

    return compare


def _relative(item: Any, steps: list[_Step]) -> list[Any]:
    nodes = [item]
    for step in steps:
        nodes = [found for node in nodes for found in step(node)]
    return nodes


def _literal(text: str, path: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1]
    try:
        return json.loads(text)
    except ValueError:
        raise JsonPathError(f"{path!r}: {text!r} is not a literal (quote strings)") from None


def _compare(left: Any, operator: str, right: Any) -> bool:
    if operator == "==":
        return bool(left == right)
    if operator == "!=":
        return bool(left != right)
    if isinstance(left, str) and isinstance(right, str):
        return _ordered(left, right, operator)
    numbers = (int, float)
    if isinstance(left, numbers) and isinstance(right, numbers) and not isinstance(left, bool):
        return _ordered(float(left), float(right), operator)
    return False


def _ordered(left: Any, right: Any, operator: str) -> bool:
    """left OP right for two values of one ordered type (str, or float)."""
    if operator == "<":
        return bool(left < right)
    if operator == "<=":
        return bool(left <= right)
    if operator == ">":
        return bool(left > right)
    return bool(left >= right)
