"""Loading a genotype from a file: YAML, JSON or DARTS text, and telling paths from text.

Split out of :mod:`bnn_nas.space.genotype` so that module owns the value and its rules,
and this one owns the file system and the YAML/JSON readers, with their error messages.
:func:`bnn_nas.space.genotype.load_genotype` is the public entry point.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from bnn_nas.errors import GenotypeError
from bnn_nas.space.genotype_form import KEYS, mapping_fields, short
from bnn_nas.space.genotype_text import parse_text


def looks_like_text(text: str) -> bool:
    return "Genotype" in text or "=" in text or "[" in text


def missing(given: str, path: Path) -> str:
    if path.is_dir():
        return f"{given} is a directory, not a genotype file; name the file"
    return (
        f"no such file: {given}; pass a genotype file (.yaml, .yml, .json or DARTS "
        f"text) or the text Genotype(normal=[...], ...)"
    )


def existing_file(text: str) -> Path | None:
    try:
        path = Path(text).expanduser()
        return path if path.is_file() else None
    except (OSError, ValueError):  # too long or a NUL byte: not a path
        return None


def load_file(path: Path) -> dict[str, Any]:
    """The four fields of the genotype a file holds (``Genotype(**fields)``), checked."""
    where = str(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise GenotypeError(
            f"{where}: not UTF-8 text; a genotype file holds YAML, JSON or DARTS text"
        ) from None
    except OSError as exc:
        raise GenotypeError(
            f"cannot read {where}: {exc.strerror}; check the path and permissions"
        ) from None
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        try:
            from bnn_nas.io import load_yaml

            data = load_yaml(raw)
        except yaml.YAMLError as exc:
            raise GenotypeError(f"{where}: not valid YAML: {_yaml_problem(exc)}") from None
    elif suffix == ".json":
        try:
            data = json.loads(raw)
        except RecursionError:
            raise GenotypeError(f"{where}: not valid JSON: nested too deeply") from None
        except json.JSONDecodeError as exc:
            raise GenotypeError(
                f"{where}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
            ) from None
    else:
        return parse_text(raw, where)
    if isinstance(data, Mapping) and "genotype" in data:
        where = f"{where}: genotype"
        data = data["genotype"]
        if not isinstance(data, (str, Mapping)):
            raise GenotypeError(
                f"{where} must be DARTS text or a mapping with keys {', '.join(KEYS)}, "
                f"not {type(data).__name__}"
            )
    if isinstance(data, str):
        return parse_text(data, where)
    return mapping_fields(data, where)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return short(exc.problem + at, 120)
    return short(exc, 120)
