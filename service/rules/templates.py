"""Marketers' texts: Jinja2 templates, checked when rules load and rendered in a sandbox.

Two layers keep marketer text from running code. `compile_text` refuses, with the line,
anything a swap text has no business doing: names other than the documented context,
attributes starting with an underscore, filters outside a small allow-list, includes,
imports and macros. Whatever slips past meets Jinja's immutable sandbox at render time,
and a render that fails yields no swap instead of a crash.

Most texts only print context values and literals (`{{ keyword(...) }} {{ city.in }}`): those
compile to a `_Printer` of literals and getters instead of a Jinja template, which renders
twice as fast and takes a fraction of the memory (10,000 rules are 10,000 texts). The
getters go through the sandbox's own `getattr` and `call`, so they print exactly what Jinja
would; everything else (tags, filters, operators) stays with Jinja.
"""

from __future__ import annotations

import difflib
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache, partial
from typing import Any, Protocol

import jinja2
from jinja2 import meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from service.rules import template_cost
from service.rules.phrase import KEYWORD_CASES
from service.rules.places import FORMS, Place

CONTEXT_NAMES = frozenset(
    {"keyword", "phrase", "city", "region", "country", "source", "medium", "campaign"}
)
PLACE_NAMES = frozenset({"city", "region", "country"})
PLACE_ATTRIBUTES = frozenset({*FORMS, "name", "short"})  # {{ city.in }}, {{ city.name }}, {{ region.short.in }}
KEYWORD_ARGS = ("default", "max", "case")  # keyword() in a text, in positional order
SAFE_FILTERS = frozenset(
    {
        "capitalize", "default", "d", "first", "last", "length", "lower", "replace",
        "string", "title", "trim", "truncate", "upper", "urlencode", "wordcount", "join",
    }
)
SAFE_TESTS = frozenset({"defined", "undefined", "none", "string", "number"})
FORBIDDEN_NODES = (
    nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport, nodes.Macro,
    nodes.CallBlock, nodes.FilterBlock, nodes.Assign, nodes.AssignBlock, nodes.With,
    # {{ phrase * 10**9 }} or {{ '%0999999999d' % 1 }} would build gigabytes per request
    nodes.Mul, nodes.Pow, nodes.Mod,
)
MAX_OUTPUT = 1000  # characters; a swap is a headline or a paragraph, not a page
# Rendering stops once it has made this much: spaces collapse afterwards, so a little more
# than MAX_OUTPUT is read, but a text never makes more than this, whatever it loops over.
MAX_RENDERED = 8 * MAX_OUTPUT

_env = ImmutableSandboxedEnvironment(autoescape=False)
_env.globals.clear()  # no range/lipsum/cycler/namespace: the context is all a text may see


def _default(value: Any, default_value: Any = "", boolean: bool = True) -> Any:
    """Jinja's `default`, for an empty value too: a campaign the URL does not name is an empty text
    and an unknown city a place with an empty name, never undefined, and `|default('весна')` is
    written for them."""
    if isinstance(value, jinja2.Undefined) or (boolean and not (value and str(value))):
        return default_value
    return value


_env.filters["default"] = _env.filters["d"] = _default


class TemplateError(ValueError):
    """A swap text that cannot be used; `lineno` counts from 1 within the text."""

    def __init__(self, message: str, lineno: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.lineno = lineno


class _Renderer(Protocol):
    def render(self, context: Mapping[str, Any]) -> str: ...


# Renders remembered across texts, by source and the values of the names it uses: a text is
# a pure function of those, and visitors share them (a city, a popular phrase). Printed texts
# (see _Printer) too: a place's form or the keyword costs them two to four times a lookup.
# Bounded: it is emptied when full.
RENDERED: dict[tuple[Any, ...], str | None] = {}
RENDERS_KEPT = 16_384
FAILED: set[str] = set()  # texts whose failure was logged
FAILURES_KEPT = 1_000
log = logging.getLogger("swapline")


@dataclass(frozen=True, slots=True)
class Text:
    source: str
    names: frozenset[str]  # context names the text uses
    _template: _Renderer | None  # a Jinja template or a _Printer; None: the text is constant
    _key_names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_key_names", tuple(sorted(self.names)))

    @property
    def constant(self) -> bool:
        return self._template is None

    @property
    def uses_places(self) -> bool:
        return not self.names.isdisjoint(PLACE_NAMES)

    def render(self, context: Mapping[str, Any]) -> str | None:
        if self._template is None:
            return self.source
        key = (self.source, *[context.get(name, _MISSING) for name in self._key_names])
        try:
            return RENDERED[key]
        except KeyError:
            pass
        except TypeError:  # a value that cannot be a key (none of the service's own)
            return self._render(context)
        if len(RENDERED) >= RENDERS_KEPT:
            RENDERED.clear()
        text = RENDERED[key] = self._render(context)
        return text

    def failure(self, context: Mapping[str, Any]) -> Exception | None:
        """What rendering with `context` raises, if anything: the rules loader tries each text once
        with a visitor's full context, and refuses one that would fail for every visitor."""
        try:
            self._made(context)
        except Exception as exc:
            return exc
        return None

    def _render(self, context: Mapping[str, Any]) -> str | None:
        try:
            text = self._made(context)
        except Exception as exc:  # a broken text must cost a swap, never a request
            _failed(self.source, exc)
            return None
        return " ".join(text.split())[:MAX_OUTPUT]

    def _made(self, context: Mapping[str, Any]) -> str:
        if self._template is None:
            return self.source
        if isinstance(self._template, jinja2.Template):
            return _bounded(self._template.generate(context))
        return self._template.render(context)


def _failed(source: str, error: Exception) -> None:
    """Say once per text that it failed: its swaps are left out, silently for the visitor."""
    if source not in FAILED and len(FAILED) < FAILURES_KEPT:
        FAILED.add(source)
        log.warning("a text failed for a visitor, so its swap was left out (and is, for whoever it fails): "
                    "%r: %s: %s", source[:200], type(error).__name__, error)


@dataclass(frozen=True, slots=True)
class Checked(Text):
    """A text that stands only where `allowed` takes its rendering, such as a link's address
    made of the visitor's phrase: any other rendering sets nothing (the page keeps its own)."""

    allowed: Callable[[str], bool] = bool

    def render(self, context: Mapping[str, Any]) -> str | None:
        rendered = Text.render(self, context)  # remembered as any text's, checked each time
        return rendered if rendered is not None and self.allowed(rendered) else None


def _bounded(chunks: Iterator[str]) -> str:
    """What a template made, up to MAX_RENDERED characters: the rest is never made."""
    made: list[str] = []
    size = 0
    for chunk in chunks:
        made.append(chunk)
        size += len(chunk)
        if size >= MAX_RENDERED:
            break
    return "".join(made)[:MAX_RENDERED]


def compile_text(source: str, allowed: Callable[[str], bool] | None = None) -> Text:
    """The text of `source`; with `allowed`, one that sets nothing where a rendering is not allowed."""
    try:
        tree = _env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}", exc.lineno) from None
    every = list(tree.find_all(nodes.Node))  # one walk of the tree for all the checks
    _refuse_unsafe(every)
    _check_calls(every)
    growth, line = template_cost.degree(tree, CONTEXT_NAMES)
    if growth > 1:
        raise TemplateError("this text takes time that grows faster than the phrase (a replace or join by a "
                            "context value, or a loop in a loop over it): each visitor's phrase could cost "
                            "seconds; write it without", line)
    # With assignments refused, the only names a text can bind are `for` loop targets; without
    # them every name it reads comes from the context, which spares Jinja's code generator.
    named = [node for node in every if isinstance(node, nodes.Name)]
    loop_names = {node.name for node in named if node.ctx == "store"}
    names = frozenset(meta.find_undeclared_variables(tree) if loop_names
                      else (node.name for node in named if node.ctx == "load"))
    for node in named:
        if node.ctx == "load" and node.name not in CONTEXT_NAMES | loop_names:
            raise TemplateError(
                f"unknown name {node.name!r} in template; "
                f"available: {', '.join(sorted(CONTEXT_NAMES))}",
                node.lineno or 1,
            )
    names = _NAME_SETS.setdefault(names, names)
    made = Text if allowed is None else partial(Checked, allowed=allowed)
    parts = _printed(tree)
    if parts is None:
        return made(source, names, _env.from_string(tree))
    if all(isinstance(part, str) for part in parts):  # literal text: rendered once, here
        return made(" ".join(_Printer(parts).render({}).split())[:MAX_OUTPUT], names, None)
    return made(source, names, _Printer(parts))


# Texts share the set of names they use: a subset of the eight context names.
_NAME_SETS: dict[frozenset[str], frozenset[str]] = {}
_Getter = Callable[[Mapping[str, Any]], Any]
_MISSING = object()


class _Printer:
    """A text made of literals and context values, rendered as Jinja renders it: each value
    printed with str(), an unknown name or attribute printed as Jinja's undefined (empty)."""

    __slots__ = ("parts",)

    def __init__(self, parts: tuple[str | _Getter, ...]) -> None:
        self.parts = parts

    def render(self, context: Mapping[str, Any]) -> str:
        return "".join([part if isinstance(part, str) else str(part(context)) for part in self.parts])


def _printed(tree: nodes.Template) -> tuple[str | _Getter, ...] | None:
    """The text's literals and getters, or None when it needs Jinja (tags, filters...)."""
    parts: list[str | _Getter] = []
    for output in tree.body:
        if not isinstance(output, nodes.Output):
            return None
        for node in output.nodes:
            if isinstance(node, nodes.TemplateData):
                parts.append(sys.intern(node.data))  # texts of many rules share their words
            elif isinstance(node, nodes.Const):
                parts.append(str(node.value))
            elif (getter := _getter(node)) is not None:
                parts.append(getter)
            else:
                return None
    return tuple(parts)


def _getter(node: nodes.Node) -> _Getter | None:
    """`name`, `value.attribute` or `name(constants...)`, as a function of the context."""
    if isinstance(node, nodes.Name):
        return _name(node.name)
    if isinstance(node, nodes.Getattr) and (target := _getter(node.node)) is not None:
        return _attribute(target, node.attr)
    if (
        isinstance(node, nodes.Call)
        and isinstance(node.node, nodes.Name)
        and node.dyn_args is None
        and node.dyn_kwargs is None
    ):
        args = tuple(arg.value for arg in node.args if isinstance(arg, nodes.Const))
        kwargs = {kwarg.key: kwarg.value.value for kwarg in node.kwargs if isinstance(kwarg.value, nodes.Const)}
        if len(args) == len(node.args) and len(kwargs) == len(node.kwargs):
            return _call(_name(node.node.name), args, kwargs)
    return None


# Texts share getters: 10,000 texts that print {{ city.in }} hold one.
@cache  # compile_text lets only the context's names through
def _name(name: str) -> _Getter:
    def get(context: Mapping[str, Any]) -> Any:
        value = context.get(name, _MISSING)
        return _env.undefined(name=name) if value is _MISSING else value

    return get


@lru_cache(maxsize=1024)
def _attribute(target: _Getter, attribute: str) -> _Getter:
    if attribute not in PLACE_ATTRIBUTES:
        return lambda context: _env.getattr(target(context), attribute)

    def get(context: Mapping[str, Any]) -> Any:
        value = target(context)
        # A place's forms and name are strings that the sandbox's getattr hands out as they
        # are: reading them directly gives the same value in a fraction of the time (a form
        # through Place.__getattr__ costs an AttributeError first).
        if type(value) is Place:
            return value.forms[attribute] if attribute in FORMS else getattr(value, attribute)  # name, short
        return _env.getattr(value, attribute)

    return get


def _call(target: _Getter, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Getter:
    def call(context: Mapping[str, Any]) -> Any:
        function = target(context)
        # What the sandbox's call does for a plain function (the context holds no other kind).
        if not _env.is_safe_callable(function):
            raise SecurityError(f"{function!r} is not safely callable")
        try:
            return function(*args, **kwargs)
        except StopIteration:
            return _env.undefined("value was undefined because a callable raised a StopIteration exception")

    return call


def _refuse_unsafe(every: list[nodes.Node]) -> None:
    for node in every:
        lineno = getattr(node, "lineno", 1) or 1
        if isinstance(node, FORBIDDEN_NODES):
            kind = type(node).__name__.lower()
            raise TemplateError(f"unsafe template: {kind} is not allowed", lineno)
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            raise TemplateError(f"unsafe template: attribute {node.attr!r} is not allowed", lineno)
        if (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
            and node.arg.value.startswith("_")
        ):
            raise TemplateError(f"unsafe template: item {node.arg.value!r} is not allowed", lineno)
        if isinstance(node, nodes.Filter) and node.name not in SAFE_FILTERS:
            _refuse_name("filter", node.name, _env.filters, SAFE_FILTERS, lineno)
        if isinstance(node, nodes.Test) and node.name not in SAFE_TESTS:
            _refuse_name("test", node.name, _env.tests, SAFE_TESTS, lineno)


def _refuse_name(kind: str, name: str, jinjas: Mapping[str, Any], allowed: frozenset[str], lineno: int) -> None:
    """A filter or test Jinja has is refused as unsafe; one it has not is most often a typo (`|capitalise`)."""
    if name in jinjas:
        raise TemplateError(f"unsafe template: {kind} {name!r} is not allowed", lineno)
    hint = difflib.get_close_matches(name, sorted(allowed), n=1)
    listed = f"{kind}s a text may use: {', '.join(sorted(allowed))}"
    said = f"; did you mean {hint[0]!r}? {listed[0].upper()}{listed[1:]}" if hint else f"; {listed}"
    raise TemplateError(f"unknown {kind} {name!r}{said}", lineno)


def _check_calls(every: list[nodes.Node]) -> None:
    """What compile_text lets through but would fail, or print nonsense, on every visit, and
    calls of anything but keyword(): a value's methods (`phrase.ljust(10**8)`) are not for texts."""
    calls = [node for node in every if isinstance(node, nodes.Call)]
    for call in calls:
        unknown = isinstance(call.node, nodes.Name) and call.node.name not in CONTEXT_NAMES  # said below
        if not unknown and not (isinstance(call.node, nodes.Name) and call.node.name == "keyword"):
            raise TemplateError("only keyword() may be called in a text; use filters: {{ phrase|upper }}",
                                call.lineno)
    called = {id(call.node) for call in calls}
    for name in every:
        if isinstance(name, nodes.Name) and name.name == "keyword" and name.ctx == "load" and id(name) not in called:
            raise TemplateError("keyword is a function: write {{ keyword(default='...') }}", name.lineno)
    for call in calls:
        if isinstance(call.node, nodes.Name) and call.node.name == "keyword":
            _check_keyword(call)
    for attribute in every:
        if not isinstance(attribute, nodes.Getattr):
            continue
        if (place := _place_named(attribute.node)) and attribute.attr not in PLACE_ATTRIBUTES:
            raise TemplateError(
                f"{place} has no form {attribute.attr!r}; available: {', '.join(FORMS)}, short", attribute.lineno)


def _place_named(node: nodes.Node) -> str | None:
    """`city` for `city` and `city.short`: what a place's forms are read from."""
    if isinstance(node, nodes.Getattr) and node.attr == "short":
        inner = _place_named(node.node)
        return f"{inner}.short" if inner else None
    return node.name if isinstance(node, nodes.Name) and node.name in PLACE_NAMES else None


def _check_keyword(call: nodes.Call) -> None:
    usage = "keyword(default='...', max=40, case='sentence')"
    if call.dyn_args is not None or call.dyn_kwargs is not None or len(call.args) > len(KEYWORD_ARGS):
        raise TemplateError(f"write keyword() as {usage}", call.lineno)
    given: dict[str, nodes.Expr] = dict(zip(KEYWORD_ARGS, call.args, strict=False))
    for argument in call.kwargs:
        if argument.key not in KEYWORD_ARGS or argument.key in given:
            hint = difflib.get_close_matches(argument.key, KEYWORD_ARGS, n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            raise TemplateError(f"keyword() has no argument {argument.key!r}{suggestion}", call.lineno)
        given[argument.key] = argument.value
    case = _constant(given.get("case"))
    if case is not _MISSING and case not in KEYWORD_CASES:
        raise TemplateError(f"keyword(case={case!r}) is not a case; use one of: {', '.join(KEYWORD_CASES)}",
                            call.lineno)
    length = _constant(given.get("max"))
    if length is not _MISSING and not (length is None or (type(length) is int and length > 0)):
        raise TemplateError(f"keyword(max=...) is a number of characters, not {length!r}", call.lineno)


def _constant(node: nodes.Expr | None) -> Any:
    """The value of an argument written as a constant (`-5` is one too: a minus and a 5), else _MISSING."""
    if node is None:
        return _MISSING
    try:
        return node.as_const(nodes.EvalContext(_env))
    except nodes.Impossible:
        return _MISSING
