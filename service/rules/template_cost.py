"""How a swap text's rendering time grows with what visitors send.

Context values (the phrase, the source…) are up to a few hundred characters of the
visitor's making. A text may take time in proportion to them (`{{ phrase|upper }}`, a
loop over the phrase's letters), never faster: `phrase|replace('', phrase)` is quadratic,
a loop over the phrase inside a loop over the phrase too, and a second `replace` on top
makes it quartic: 0.3-2.4 s of CPU a decision from a 200-character phrase.

`degree(tree)` is the polynomial degree, in the length of the context values, of the work
a template does: the rules loader refuses texts above 1. Each expression has a size (the
degree of its value's length) and a work (the degree of the time to make it, at least its
size). Filters outside `_GROWING` and `_COUNTING` return at most what they are given.
"""

from __future__ import annotations

from collections.abc import Iterable

from jinja2 import nodes

_COUNTING = frozenset({"length", "wordcount"})  # a number, whatever they are given
# value|replace(old, new): |value| + |value|·|new|; items|join(separator): |items|·|separator|.
_GROWING = {"replace": 1, "join": 0}  # the argument (by position) that multiplies the value


def degree(tree: nodes.Template, context_names: frozenset[str]) -> tuple[int, int]:
    """The degree of the work `tree` does, and the line where it is highest."""
    return _Cost(context_names).statements(tree.body, {})


class _Cost:
    def __init__(self, context_names: frozenset[str]) -> None:
        self.context_names = context_names

    def statements(self, body: Iterable[nodes.Node], bound: dict[str, int]) -> tuple[int, int]:
        """(work, line) of a run of statements: their highest."""
        highest = (0, 1)
        for node in body:
            highest = max(highest, self.statement(node, bound), key=lambda found: found[0])
        return highest

    def statement(self, node: nodes.Node, bound: dict[str, int]) -> tuple[int, int]:
        line = getattr(node, "lineno", 1) or 1
        if isinstance(node, nodes.Output):  # printing a value takes as long as the value is
            return max((max(self.expression(child, bound)) for child in node.nodes), default=0), line
        if isinstance(node, nodes.If):
            branches = [self.statements(node.body, bound), self.statements(node.else_, bound),
                        *(self.statement(elif_, bound) for elif_ in node.elif_)]
            return max([(self.expression(node.test, bound)[1], line), *branches], key=lambda found: found[0])
        if isinstance(node, nodes.For):
            size, work = self.expression(node.iter, bound)
            targets = [node.target] if isinstance(node.target, nodes.Name) else node.target.find_all(nodes.Name)
            inner = {**bound, **{name.name: self.element(node.iter, bound) for name in targets}}
            test = self.expression(node.test, inner)[1] if node.test is not None else 0
            body, body_line = self.statements(node.body, inner)
            other, other_line = self.statements(node.else_, bound)
            # The body runs once per item: as many as a text has letters, or a literal list items.
            count = 0 if isinstance(node.iter, nodes.List | nodes.Tuple) else size
            looped = max(work, count + max(body, test))
            return max((looped, body_line if looped > work else line), (other, other_line),
                       key=lambda found: found[0])
        return self.statements(node.iter_child_nodes(), bound)  # blocks and the like: what they hold

    def expression(self, node: nodes.Node, bound: dict[str, int]) -> tuple[int, int]:
        """(size, work) of an expression."""
        if isinstance(node, nodes.Name):
            return bound.get(node.name, 1 if node.name in self.context_names else 0), 0
        if isinstance(node, nodes.Call):  # keyword(): the phrase, cut short
            return 1, self.works(node.iter_child_nodes(), bound)
        if isinstance(node, nodes.Filter):
            return self.filter(node, bound)
        if isinstance(node, nodes.Compare | nodes.Not | nodes.Test):  # a boolean
            return 0, self.works(node.iter_child_nodes(), bound)
        if isinstance(node, nodes.Getitem | nodes.Getattr):  # a part of the value
            return self.expression(node.node, bound)[0], self.works(node.iter_child_nodes(), bound)
        parts = [self.expression(child, bound) for child in node.iter_child_nodes()]
        size = max((part[0] for part in parts), default=0)  # concatenations, literals, conditions
        return size, max([size, *(part[1] for part in parts)])

    def filter(self, node: nodes.Filter, bound: dict[str, int]) -> tuple[int, int]:
        value = self.expression(node.node, bound) if node.node is not None else (0, 0)
        arguments = [self.expression(argument, bound) for argument in node.args]
        arguments += [self.expression(keyword.value, bound) for keyword in node.kwargs]
        if node.name in _COUNTING:
            size = 0
        elif node.name in _GROWING:
            position = _GROWING[node.name]
            times = arguments[position][0] if position < len(arguments) else 0
            size = value[0] + times
        else:
            size = max([value[0], *(argument[0] for argument in arguments)])
        return size, max([size, value[1], *(argument[1] for argument in arguments)])

    def element(self, iterable: nodes.Node, bound: dict[str, int]) -> int:
        """The size of one item: a letter of a text, or an item of a literal list."""
        if isinstance(iterable, nodes.List | nodes.Tuple):
            return max((self.expression(item, bound)[0] for item in iterable.items), default=0)
        return 0

    def works(self, children: Iterable[nodes.Node], bound: dict[str, int]) -> int:
        return max((self.expression(child, bound)[1] for child in children), default=0)
