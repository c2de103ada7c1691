"""The published contracts in tests/contracts/, as validators the loopback fakes run on every
request (and the contract tests run on every answer).

Stricter than the published schemas, so a typo cannot pass:

- an object that lists its properties takes no other property (a published schema that leaves
  ``additionalProperties`` open is closed here);
- an "open enum" (``anyOf: [{type: string}, {type: string, enum: [...]}]``, the OpenAPI way of
  saying "these, or anything") is closed to the values it publishes, plus the few a contract's
  own text names (``also``).

A request that breaks the contract raises :class:`ContractViolation`, whose message names the
field (``body.response_format: 'b64_json' is not one of ['base64', 'url']``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

__all__ = [
    "CONTRACTS",
    "ContractViolation",
    "Schema",
    "discord_limits",
    "load_contract",
    "request_schema",
    "response_schema",
    "schema_of",
]

CONTRACTS = Path(__file__).resolve().parent.parent / "contracts"
JSON = dict[str, Any]


class ContractViolation(Exception):
    """A message that leaves the published contract; ``field`` is its dotted path."""

    def __init__(self, contract: str, field: str, problem: str) -> None:
        self.contract = contract
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem} (contract: tests/contracts/{contract})")


@cache
def load_contract(name: str) -> JSON:
    data = yaml.safe_load((CONTRACTS / name).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{name} is not a mapping")
    return data


def discord_limits() -> JSON:
    return load_contract("discord-limits.yaml")


class Schema:
    """One schema of a contract, resolved and made strict, with a validator."""

    def __init__(self, contract: str, schema: JSON, where: str = "body") -> None:
        self.contract = contract
        self.where = where
        self.schema = schema
        Draft202012Validator.check_schema(schema)
        self._validator = Draft202012Validator(schema)

    def check(self, value: Any) -> None:
        """Raise ContractViolation naming the first field (by path) that breaks the schema."""
        violations = self.violations(value)
        if violations:
            raise violations[0]

    def violations(self, value: Any) -> list[ContractViolation]:
        """Every way `value` breaks the schema, each naming its field, the deepest first."""
        errors = sorted(self._validator.iter_errors(value), key=_error_order)
        return [self._violation(_deepest(error)) for error in errors]

    def problems(self, value: Any) -> list[str]:
        return [str(violation) for violation in self.violations(value)]

    def _violation(self, error: ValidationError) -> ContractViolation:
        path = [self.where, *(str(p) for p in error.absolute_path)]
        problem = error.message
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            schema = error.schema if isinstance(error.schema, dict) else {}
            known = schema.get("properties", {})
            name = next(str(k) for k in error.instance if k not in known)
            path.append(name)
            problem = f"not a field of the published schema ({name!r} was unexpected)"
        return ContractViolation(self.contract, ".".join(path), problem)


def request_schema(
    contract: str,
    path: str,
    method: str = "post",
    *,
    also: Mapping[str, Iterable[str]] | None = None,
) -> Schema:
    """The JSON request body of `method path` in `contract`. `also` adds values to a closed
    enum, by property name, where the contract's text names more than its enum lists."""
    operation = load_contract(contract)["paths"][path][method]
    raw = operation["requestBody"]["content"]["application/json"]["schema"]
    return Schema(contract, schema_of(contract, raw, also=also), "body")


def response_schema(contract: str, path: str, method: str, status: str = "200") -> Schema:
    """The JSON answer of `method path` with `status` in `contract`."""
    operation = load_contract(contract)["paths"][path][method]
    raw = operation["responses"][status]["content"]["application/json"]["schema"]
    return Schema(contract, schema_of(contract, raw), "answer")


def schema_of(
    contract: str, schema: JSON, *, also: Mapping[str, Iterable[str]] | None = None
) -> JSON:
    """`schema` with every ``$ref`` into the contract inlined, made strict (see the module)."""
    document = load_contract(contract)
    resolved = _inline(copy.deepcopy(schema), document, ())
    extra = {name: list(values) for name, values in (also or {}).items()}
    strict: JSON = _strict(resolved, extra, None)
    return strict


def _inline(node: Any, document: JSON, seen: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_inline(item, document, seen) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise ValueError(f"only local references are supported, not {ref!r}")
        if ref in seen:
            raise ValueError(f"recursive reference {ref}")
        target: Any = document
        for part in ref[2:].split("/"):
            target = target[part]
        merged = {**copy.deepcopy(target), **{k: v for k, v in node.items() if k != "$ref"}}
        return _inline(merged, document, (*seen, ref))
    return {key: _inline(value, document, seen) for key, value in node.items()}


def _strict(node: Any, also: dict[str, list[str]], name: str | None) -> Any:
    if isinstance(node, list):
        return [_strict(item, also, name) for item in node]
    if not isinstance(node, dict):
        return node
    node = {k: v for k, v in node.items() if not k.startswith("x-") and k != "discriminator"}
    if node.pop("nullable", False) and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    closed = _closed_enum(node)
    if closed is not None:
        node = {k: v for k, v in node.items() if k != "anyOf"}
        node["type"], node["enum"] = "string", [*closed, *also.get(name or "", [])]
    elif name in also and isinstance(node.get("enum"), list):
        node["enum"] = [*node["enum"], *also[name or ""]]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in node:
            node[key] = [_strict(branch, also, name) for branch in node[key]]
    if "items" in node:
        node["items"] = _strict(node["items"], also, None)
    if isinstance(node.get("properties"), dict):
        node["properties"] = {
            prop: _strict(sub, also, prop) for prop, sub in node["properties"].items()
        }
        node.setdefault("additionalProperties", False)
    elif isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _strict(node["additionalProperties"], also, None)
    return node


def _closed_enum(node: JSON) -> list[str] | None:
    """The values of an open string enum (anyOf a bare string and a string enum), else None."""
    branches = node.get("anyOf")
    if not isinstance(branches, list) or len(branches) < 2:
        return None
    values: list[str] = []
    open_string = False
    for branch in branches:
        if not isinstance(branch, dict) or branch.get("type") != "string":
            return None
        keys = set(branch) - {"type", "description", "example"}
        if keys == {"enum"}:
            values.extend(branch["enum"])
        elif not keys:
            open_string = True
        else:
            return None
    return values if open_string and values else None


def _deepest(error: ValidationError) -> ValidationError:
    """For an anyOf/oneOf failure: the error of the branch that came nearest to matching (the
    fewest errors, then the deepest), which names the field best."""
    if not error.context:
        return error
    branches: dict[object, list[ValidationError]] = {}
    for inner in error.context:
        branches.setdefault(inner.relative_schema_path[0], []).append(inner)
    nearest = min(
        branches.values(),
        key=lambda errors: (len(errors), -max(len(e.absolute_path) for e in errors)),
    )
    return _deepest(max(nearest, key=lambda e: len(e.absolute_path)))


def _error_order(error: ValidationError) -> tuple[int, str]:
    return (-len(error.absolute_path), str(list(error.absolute_path)))
