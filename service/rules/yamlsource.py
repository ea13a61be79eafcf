"""YAML that remembers where each value came from, so rule errors can say `file:line`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import yaml
from yaml.composer import ComposerError

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
    text: str = ""
    # Keywords written in double quotes, which YAML takes for its own: Direct's quotes are lost.
    double_quoted: frozenset[Path] = frozenset()

    @cached_property
    def positions(self) -> dict[Path, int]:
        """Value path → 1-based line. Only a problem needs them: parsed again then, so that
        loading 10,000 good rules does not hold a line for each of their 100,000 values."""
        positions: dict[Path, int] = {}
        _build(self.text, positions)
        return positions

    @cached_property
    def source(self) -> list[str]:
        """The file's lines, as YAML counts them: at \n only, not at form feeds."""
        return self.text.split("\n")

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
    double_quoted: set[Path] = set()
    return Document(_build(text, None, double_quoted), text, frozenset(double_quoted))


def _build(text: str, positions: dict[Path, int] | None, double_quoted: set[Path] | None = None) -> Any:
    """The document's data, noting the line of each value in `positions` if given. LibYAML's
    parser, in C, reads it several times faster; a file with a mistake is read again by
    PyYAML's own, whose messages say more («found character '\\t' that cannot start any token»)."""
    if yaml.__with_libyaml__:
        try:
            return _read(yaml.CSafeLoader(text), positions, double_quoted)
        except YAMLProblem:
            pass
    return _read(yaml.SafeLoader(text), positions, double_quoted)


def _read(loader: _Loader, positions: dict[Path, int] | None, double_quoted: set[Path] | None) -> Any:
    data = None
    try:
        loader.get_event()  # the stream's start
        if not loader.check_event(yaml.StreamEndEvent):
            start = loader.get_event().start_mark
            data = _Builder(loader, double_quoted).value((), positions)
            loader.get_event()  # the document's end
            if not loader.check_event(yaml.StreamEndEvent):
                raise ComposerError("expected a single document in the stream", start,
                                    "but found another document", loader.get_event().start_mark)
    except yaml.MarkedYAMLError as exc:
        raise _problem(exc) from None
    finally:
        loader.dispose()
    return data


def _problem(exc: yaml.MarkedYAMLError) -> YAMLProblem:
    message = f"YAML syntax error: {exc.problem}"
    context = exc.context or ""
    if exc.context_mark is not None and context.startswith("while parsing a flow"):
        # An unclosed '[' or '{' is noticed lines later: point at the line that opened it.
        noticed = exc.problem_mark or exc.context_mark
        found = _unclosed(noticed.buffer, noticed.index) if noticed.buffer else None
        bracket, line = found or ("[" if "sequence" in context else "{", exc.context_mark.line + 1)
        return YAMLProblem(f"{message} (the {bracket!r} on this line is not closed)", line)
    if "tag" in context or "for the tag" in (exc.problem or ""):
        # `- !купить кондиционер`: Direct's operator, which YAML reads as a tag of its own
        message += "; a value starting with '!' is a YAML tag: put it in quotes, - '!купить кондиционер'"
    mark = exc.problem_mark or exc.context_mark
    return YAMLProblem(message, mark.line + 1 if mark else 1)


def _unclosed(text: str, end: int) -> tuple[str, int] | None:
    """The last '[' or '{' before `end` that opens a flow collection still open there, and its
    line. Brackets in quotes, in comments, or inside a plain text (`Цена [от 5000`) open none."""
    opened: list[tuple[str, int]] = []
    line, before, quote, index = 1, "\n", "", 0
    while index < end:
        char = text[index]
        if quote:
            if char == "\\" and quote == '"':
                index += 1
            elif char == quote:
                quote = ""
        elif char == "#" and before in " \t\n":
            while index < end and text[index] != "\n":
                index += 1
            continue
        elif char in "'\"" and before in ":-,[{ \t\n":
            quote = char
        elif char in "[{" and _starts_value(text, index):
            opened.append((char, line))
        elif char in "]}" and opened:
            opened.pop()
        if char == "\n":
            line += 1
        before = char
        index += 1
    return opened[-1] if opened else None


def _starts_value(text: str, index: int) -> bool:
    """Whether what begins at `index` begins a value: after a key's ':', a list's '-' or ',',
    another bracket, or nothing but indentation on its line."""
    start = index
    while start > 0 and text[start - 1] in " \t":
        start -= 1
    return start == 0 or text[start - 1] in ":-,[{\n"


class _Loader(Protocol):
    """What the builder uses of yaml.SafeLoader, typed (types-PyYAML leaves the parser untyped)."""

    def get_event(self) -> Any: ...
    def peek_event(self) -> Any: ...
    def check_event(self, *choices: type[yaml.Event]) -> bool: ...
    def resolve(self, kind: type[yaml.Node], value: str, implicit: tuple[bool, bool]) -> str: ...
    def construct_document(self, node: yaml.Node) -> Any: ...
    def dispose(self) -> None: ...


class _Builder:
    """Builds the values straight from the parser's events, as yaml.compose and the loader's
    constructor would, but without holding a node (and its marks) for every value: the
    node tree of a 10,000-rule file took 107 MiB."""

    def __init__(self, loader: _Loader, double_quoted: set[Path] | None = None) -> None:
        self.loader = loader
        self.anchors: dict[str, tuple[Any, yaml.Mark]] = {}
        self.double_quoted = double_quoted if double_quoted is not None else set()

    def value(self, path: Path, positions: dict[Path, int] | None) -> Any:
        loader = self.loader
        event = loader.get_event()
        start = event.start_mark
        if positions is not None:
            positions.setdefault(path, start.line + 1)
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in self.anchors:
                raise ComposerError(None, None, f"found undefined alias {event.anchor!r}", start)
            return self.anchors[event.anchor][0]
        if event.anchor in self.anchors:
            raise ComposerError(f"found duplicate anchor {event.anchor!r}; first occurrence",
                                self.anchors[event.anchor][1], "second occurrence", start)
        result: Any
        if isinstance(event, yaml.ScalarEvent):
            tag = event.tag
            if tag is None or tag == "!":
                tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
            if event.style == '"' and len(path) > 1 and path[-2] == "keywords":
                self.double_quoted.add(path)
            node = yaml.ScalarNode(tag, event.value, start, None, style=event.style)
            result = loader.construct_document(node)  # which forgets the node once built
        elif isinstance(event, yaml.SequenceStartEvent):
            result = []
            while not loader.check_event(yaml.SequenceEndEvent):
                result.append(self.value((*path, len(result)), positions))
            loader.get_event()
        else:
            result = {}
            while not loader.check_event(yaml.MappingEndEvent):
                line = loader.peek_event().start_mark.line + 1
                key = str(self.value((*path, "<key>"), None))
                if key in result:
                    raise YAMLProblem(f"duplicate key {key!r}", line)
                if positions is not None:
                    positions[(*path, key)] = line
                result[key] = self.value((*path, key), positions)
            loader.get_event()
        if event.anchor is not None:
            self.anchors[event.anchor] = (result, start)
        return result
