"""The rules JSON Schema, and its complaints put so that a marketer can act on them."""

from __future__ import annotations

import difflib
import json
import re
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from service.rules.yamlsource import Path

NOTES = {"description", "default", "title", "examples"}  # keywords that check nothing
CREDENTIAL_WORDS = ("secret", "token", "key", "salt", "password")  # in the name of a value never to echo


@cache
def _schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(resources.files("service").joinpath("schema.json").read_text())
    return loaded


@cache
def validator() -> jsonschema.Draft202012Validator:
    """The schema with its `$defs` written where they are used, so that checking a rule follows
    no `$ref` (docs/PERFORMANCE.md, "Loading 10,000 rules")."""
    return jsonschema.Draft202012Validator(_inlined(_schema(), _schema()["$defs"]))


def is_id(text: str) -> bool:
    """Whether `text` is written as the rules write ids: a site's, a pool's, an experiment's."""
    return re.fullmatch(_schema()["$defs"]["id"]["pattern"], text) is not None


def least_length(path: Path) -> int | None:
    """The fewest characters the schema lets the value at `path` have when written out (a
    credential's `minLength`), or None. A `${NAME}` passes the schema whatever NAME holds: the
    rules hold what it reads to this when they load."""
    node = _schema()
    for part in path:
        if "$ref" in node:
            node = _schema()["$defs"][node["$ref"].removeprefix("#/$defs/")]
        node = node.get("items", {}) if isinstance(part, int) else node.get("properties", {}).get(part, {})
    return min((branch["minLength"] for branch in node.get("anyOf", [node]) if "minLength" in branch), default=None)


def _inlined(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inlined(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref", "")
    if ref.startswith("#/$defs/") and set(node) - {"$ref"} <= NOTES:
        return {**_inlined(defs[ref.removeprefix("#/$defs/")], defs), **{k: v for k, v in node.items() if k != "$ref"}}
    return {key: _inlined(value, defs) for key, value in node.items() if key != "$defs"}


def schema_problems(data: Any) -> list[tuple[Path, str]]:
    """Every way `data` breaks the schema, as (path of the value, message)."""
    errors = sorted(validator().iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    return [problem for error in errors for problem in _explain(error)]


def _explain(error: jsonschema.ValidationError) -> list[tuple[Path, str]]:
    path: Path = tuple(error.absolute_path)
    where = dotted(path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(error.schema.get("properties", {})) if isinstance(error.schema, dict) else []
        problems = []
        for key in error.instance:
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                inside = f" in {where}" if where else ""
                problems.append(((*path, key), f"unknown key {key!r}{inside}{suggestion}"))
        return problems
    if error.validator == "required":
        return [(path, f"{where or 'file'}: {error.message}")]
    best = _best(error)
    path = tuple(best.absolute_path)
    where = dotted(path)
    message = _described(error, best) or best.message + _hint(best)
    return [(path, f"{where}: {message}" if where else message)]


def _described(error: jsonschema.ValidationError, best: jsonschema.ValidationError) -> str | None:
    """A text of the wrong form, in the words of the schema's description rather than its
    regular expression; a credential's value is not echoed."""
    if best.validator not in ("pattern", "minLength"):
        return None
    # A credential written out, not as ${NAME}: what it lacks is length, not the form of a name.
    if isinstance(best.instance, str) and not best.instance.startswith("${"):
        best = next((e for e in error.context or () if e.validator == "minLength"), best)
    described = next((node for node in (best.schema, error.schema) if isinstance(node, dict) and "description" in node),
                     None)
    if described is None:
        return None
    name = str(best.absolute_path[-1]) if best.absolute_path else ""
    value = "this" if any(word in name for word in CREDENTIAL_WORDS) else repr(best.instance)
    if best.validator == "minLength":
        return f"{value} is too short: at least {best.validator_value} characters ({described['description']})"
    return f"{value} is not written as it should be: {described['description']}"


def _best(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """The error of the alternative that fits the value's type: for `country: [RU, ru]` the
    list's bad item, not "is not of type 'string'"."""
    if not error.context:
        return error
    fitting = [e for e in error.context if e.relative_path or e.validator != "type"]
    return jsonschema.exceptions.best_match(fitting or error.context) or error


def _hint(error: jsonschema.ValidationError) -> str:
    """What YAML did to a value that was meant as text."""
    if error.validator != "type":
        return ""
    if isinstance(error.instance, bool):
        return (
            "; YAML reads unquoted yes/no/on/off/true/false (and the country code NO) as true or false: "
            "put the value in quotes"
        )
    if error.validator_value == "string" and isinstance(error.instance, dict | list):
        return "; a text that starts with '{' or '[' must be in quotes: \"{{ city.in }}\""
    if error.validator_value == "string":
        return "; put the value in quotes"
    if error.validator_value == "array" and isinstance(error.instance, str):
        return f"; write a list: [{error.instance}]"
    return ""


def dotted(path: Path) -> str:
    """`("rules", 0, "swap")` → `rules[0].swap`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text
