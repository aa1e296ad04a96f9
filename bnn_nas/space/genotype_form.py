"""The genotype's form: reading and checking its four fields, with one-line messages.

A leaf module: the value (:mod:`bnn_nas.space.genotype`), the DARTS text reader
(:mod:`bnn_nas.space.genotype_text`) and the file loader
(:mod:`bnn_nas.space.genotype_files`) all read fields through these helpers, and none of
them imports another's private names.
"""

from __future__ import annotations

import difflib
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bnn_nas.errors import GenotypeError

Edge = tuple[str, int]

KINDS = ("normal", "reduce")
KEYS = ("normal", "normal_concat", "reduce", "reduce_concat")


def suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(choices), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


# --- form: shared by the constructor, the text and the mapping readers ---------------------


def short(value: object, limit: int = 70) -> str:
    """One line, at most ``limit`` characters: error messages must stay one line."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def show(item: object) -> str:
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return short(f"({item[0]!r}, {item[1]!r})")
    return short(repr(item))


def as_int(value: object, message: str) -> int:
    if isinstance(value, bool):
        raise GenotypeError(message)
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise GenotypeError(message) from None


def is_list_like(value: object) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping))


def read_edges(value: object, field: str, where: str) -> tuple[Edge, ...]:
    if not is_list_like(value):
        raise GenotypeError(
            f"{where}: {field} must be a list of ('op', input) pairs, not {type(value).__name__}"
        )
    return tuple(
        read_edge(item, f"{where}: {field} edge {i} {show(item)}")
        for i, item in enumerate(value)  # type: ignore[arg-type]
    )


def read_edge(item: object, place: str) -> Edge:
    if isinstance(item, Mapping):
        for key in item:
            if key not in ("op", "input"):
                raise GenotypeError(
                    f"{place}: unknown key {key!r}; write {{op: NAME, input: INDEX}}"
                )
        for key in ("op", "input"):
            if key not in item:
                raise GenotypeError(
                    f"{place}: missing key {key!r}; write {{op: NAME, input: INDEX}}"
                )
        item = (item["op"], item["input"])
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise GenotypeError(f"{place}: must be a pair ('op', input)")
    op, index = item
    if not isinstance(op, str) or not op:
        raise GenotypeError(f"{place}: op must be a non-empty string naming a primitive")
    return str(op), as_int(index, f"{place}: input must be an integer node index")


def read_concat(value: object, field: str, where: str) -> tuple[int, ...]:
    if not is_list_like(value):
        raise GenotypeError(
            f"{where}: {field} must be a list of node indices like [2, 3, 4, 5], "
            f"not {type(value).__name__}"
        )
    return tuple(
        as_int(
            node, f"{where}: {field} item {i} {short(repr(node))}: must be an integer node index"
        )
        for i, node in enumerate(value)  # type: ignore[arg-type]
    )


def mapping_fields(data: object, where: str) -> dict[str, Any]:
    """The four fields of a genotype's mapping form, each read and checked."""
    if not isinstance(data, Mapping):
        raise GenotypeError(
            f"{where} must be a mapping with keys {', '.join(KEYS)}, not {type(data).__name__}"
        )
    for key in data:
        check_key(key, where)
    for key in KEYS:
        if key not in data:
            raise GenotypeError(f"{where}: missing key {key!r}; the keys are {', '.join(KEYS)}")
    return read_fields(data, read_edges, read_concat, where)


def check_key(key: object, where: str) -> None:
    """One of Genotype's four fields, or an error suggesting the closest."""
    if key not in KEYS:
        raise GenotypeError(
            f"{where}: unknown key {key!r}{suggest(str(key), KEYS)}; "
            f"the keys are {', '.join(KEYS)}"
        )


def read_fields(
    parts: Mapping[str, Any],
    read_edges: Callable[[Any, str, str], tuple[Edge, ...]],
    read_concat: Callable[[Any, str, str], tuple[int, ...]],
    where: str,
) -> dict[str, Any]:
    """A genotype's four fields (``Genotype(**fields)``), each read and checked by the
    given readers."""
    values: dict[str, Any] = {}
    for kind in KINDS:
        values[kind] = read_edges(parts[kind], kind, where)
        field = f"{kind}_concat"
        values[field] = read_concat(parts[field], field, where)
    return values
