"""Reading the DARTS text form of a genotype, without evaluating it.

Split out of :mod:`bnn_nas.space.genotype` so that module owns the value and its rules,
and this one owns the parser: the text is read with :mod:`ast` and ``ast.literal_eval``
only, so pasted text never runs code. :func:`bnn_nas.space.genotype.parse_genotype` is
the public entry point; this module reads fields through :mod:`bnn_nas.space.genotype_form`.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from bnn_nas.errors import GenotypeError
from bnn_nas.space.genotype_form import (
    KEYS,
    Edge,
    as_int,
    check_key,
    read_concat,
    read_edges,
    read_fields,
    short,
)

_EXPECTED = (
    "expected Genotype(normal=[('op', input), ...], normal_concat=[...], "
    "reduce=[...], reduce_concat=[...])"
)
_MAX_RANGE = 10_000  # a concat written as range(...) longer than this is a typo, not a cell
# `DARTS_V2 = Genotype(...)`, as published genotypes are written in DARTS's genotypes.py.
_ASSIGN = re.compile(r"[A-Za-z_]\w*\s*=\s*(?=[A-Za-z_][\w.]*\s*\()")


def _prepare(text: str) -> tuple[str, int, int]:
    """Blank comment lines and drop leading space and a ``NAME =`` prefix, keeping positions.

    Returns the source, the line where it starts and how many columns were removed there.
    """
    lines = text.split("\n")
    text = "\n".join("" if line.lstrip().startswith("#") else line for line in lines)
    body = text.lstrip()
    leading = text[: len(text) - len(body)]
    first_line = leading.count("\n") + 1
    shift = len(leading) - (leading.rfind("\n") + 1)
    match = _ASSIGN.match(body)
    if match:
        shift += match.end()
        body = body[match.end() :]
    return "\n" * (first_line - 1) + body, first_line, shift


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def parse_text(text: object, where: str) -> dict[str, Any]:
    """The four fields of a genotype's DARTS text (``Genotype(**fields)``), checked."""
    if not isinstance(text, str):
        raise GenotypeError(f"{where} must be a string, not {type(text).__name__}")
    source, first_line, shift = _prepare(text)
    if not source.strip():
        raise GenotypeError(f"{where} is empty; {_EXPECTED}")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        line, column = exc.lineno or 1, exc.offset or 1
        if line == first_line:
            column += shift
        at = f"line {line}, column {column}" if "\n" in text.strip() else f"column {column}"
        raise GenotypeError(
            f"{where} is not valid: {short(exc.msg)} at {at}; {_EXPECTED}"
        ) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise GenotypeError(f"{where} is not valid: {short(exc)}; {_EXPECTED}") from None
    call = tree.body
    name = _dotted(call.func) if isinstance(call, ast.Call) else None
    if not isinstance(call, ast.Call) or name is None or name.split(".")[-1] != "Genotype":
        raise GenotypeError(
            f"{where} must be one Genotype(...) call, found {short(ast.unparse(call))}; "
            f"{_EXPECTED}"
        )
    if call.args:
        raise GenotypeError(
            f"{where}: positional arguments are not accepted; name them: "
            f"Genotype(normal=..., normal_concat=..., reduce=..., reduce_concat=...)"
        )
    nodes: dict[str, ast.expr] = {}
    for keyword in call.keywords:
        key = keyword.arg
        if key is None:
            raise GenotypeError(f"{where}: '**' arguments are not accepted; {_EXPECTED}")
        check_key(key, where)
        if key in nodes:
            raise GenotypeError(f"{where}: {key}= is given twice; give it once")
        nodes[key] = keyword.value
    for key in KEYS:
        if key not in nodes:
            raise GenotypeError(f"{where}: missing {key}=...; {_EXPECTED}")
    return read_fields(nodes, _literal_edges, _literal_concat, where)


_LITERAL_ERRORS = (ValueError, TypeError, SyntaxError, MemoryError, RecursionError)


def _literal_edges(node: ast.expr, field: str, where: str) -> tuple[Edge, ...]:
    if not isinstance(node, (ast.List, ast.Tuple)):
        raise GenotypeError(
            f"{where}: {field} must be a list of ('op', input) pairs, "
            f"found {short(ast.unparse(node))}"
        )
    items = []
    for i, element in enumerate(node.elts):
        try:
            items.append(ast.literal_eval(element))
        except _LITERAL_ERRORS:
            raise GenotypeError(
                f"{where}: {field} edge {i} {short(ast.unparse(element))}: "
                f"must be a literal pair ('op', input)"
            ) from None
    return read_edges(items, field, where)


def _literal_concat(node: ast.expr, field: str, where: str) -> tuple[int, ...]:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        return _literal_range(node, field, where)
    try:
        value = ast.literal_eval(node)
    except _LITERAL_ERRORS:
        raise GenotypeError(
            f"{where}: {field} must be a literal list of node indices like [2, 3, 4, 5], "
            f"found {short(ast.unparse(node))}"
        ) from None
    return read_concat(value, field, where)


def _literal_range(node: ast.Call, field: str, where: str) -> tuple[int, ...]:
    bad = f"{where}: {field}={short(ast.unparse(node))}: write range(start, stop) with integers"
    if node.keywords or not 1 <= len(node.args) <= 3:
        raise GenotypeError(bad)
    bounds = []
    for arg in node.args:
        try:
            value = ast.literal_eval(arg)
        except _LITERAL_ERRORS:
            raise GenotypeError(bad) from None
        bounds.append(as_int(value, bad))
    try:
        nodes = range(*bounds)
    except ValueError:  # step 0
        raise GenotypeError(bad) from None
    if len(nodes) > _MAX_RANGE:
        raise GenotypeError(f"{where}: {field}={short(ast.unparse(node))} is too long; check it")
    return tuple(nodes)
