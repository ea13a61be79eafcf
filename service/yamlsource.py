"""YAML that remembers where each value came from, so rule errors can say `file:line`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]

# `text: |` or `text: >-`: the text starts on the next line.
_BLOCK_SCALAR = re.compile(r":\s+([|>])[1-9+-]{0,2}\s*(?:#.*)?$")


class YAMLProblem(ValueError):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass
class Document:
    data: Any
    source: list[str] = field(default_factory=list)  # the file's lines, as YAML counts them
    positions: dict[Path, int] = field(default_factory=dict)  # value path → 1-based line

    def line(self, path: Path) -> int:
        """The line of `path`, or of its nearest ancestor that has one."""
        while path not in self.positions and path:
            path = path[:-1]
        return self.positions.get(path, 1)

    def text_line(self, path: Path, lineno: int) -> int:
        """The file line of line `lineno` of the text at `path`."""
        first = self.line(path)
        key = self.source[first - 1] if first <= len(self.source) else ""
        block = _BLOCK_SCALAR.search(key)
        if block is None and lineno == 1:
            return first
        if block is not None and block[1] == "|":
            return first + lineno  # a literal block keeps its lines as they are
        # `>` and quoted or plain texts fold their lines into one: only an empty line
        # starts a new line of text. The text ends at a line indented no more than its key.
        indent = len(key) - len(key.lstrip())
        current = 1
        for number in range(first + (block is not None), len(self.source) + 1):
            line = self.source[number - 1]
            if not line.strip():
                current += 1
            elif number > first and len(line) - len(line.lstrip()) <= indent:
                break
            elif current >= lineno:
                return number
        return first


def parse(text: str) -> Document:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise _problem(exc) from None
    document = Document(None, text.split("\n"))  # YAML breaks lines at \n only, not at form feeds
    try:
        if node is not None:
            document.data = _build(node, (), document.positions)
    finally:
        # construct_object() remembers every node it built (and each node its marks and the
        # text): without this the loader kept every rules file ever parsed alive.
        _scalars.constructed_objects.clear()
        _scalars.recursive_objects.clear()
    return document


def _problem(exc: yaml.MarkedYAMLError) -> YAMLProblem:
    message = f"YAML syntax error: {exc.problem}"
    context = exc.context or ""
    if exc.context_mark is not None and context.startswith("while parsing a flow"):
        # An unclosed '[' or '{' is noticed lines later: point at the line that opened it.
        bracket = "[" if "sequence" in context else "{"
        return YAMLProblem(f"{message} (the {bracket!r} on this line is not closed)", exc.context_mark.line + 1)
    mark = exc.problem_mark or exc.context_mark
    return YAMLProblem(message, mark.line + 1 if mark else 1)


_scalars = yaml.SafeLoader("")


def _build(node: yaml.Node, path: Path, positions: dict[Path, int]) -> Any:
    positions.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(_build(key_node, (*path, "<key>"), {}))
            if key in result:
                raise YAMLProblem(f"duplicate key {key!r}", key_node.start_mark.line + 1)
            positions[(*path, key)] = key_node.start_mark.line + 1
            result[key] = _build(value_node, (*path, key), positions)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, index), positions) for index, item in enumerate(node.value)]
    return _scalars.construct_object(node, deep=True)
