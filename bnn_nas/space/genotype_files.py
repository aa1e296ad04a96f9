"""Loading a genotype from a file: YAML, JSON or DARTS text, and telling paths from text.

Split out of :mod:`bnn_nas.space.genotype` so that module owns the value and its rules,
and this one owns the file system and the YAML/JSON readers, with their error messages.
:func:`bnn_nas.space.genotype.load_genotype` is the public entry point.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import yaml

from bnn_nas.errors import GenotypeError
from bnn_nas.space.genotype import (
    _KEYS,
    Genotype,
    _from_mapping,
    _short,
    validate_genotype,
)
from bnn_nas.space.genotype_text import _parse_text


def _looks_like_text(text: str) -> bool:
    return "Genotype" in text or "=" in text or "[" in text


def _missing(given: str, path: Path) -> str:
    if path.is_dir():
        return f"{given} is a directory, not a genotype file; name the file"
    return (
        f"no such file: {given}; pass a genotype file (.yaml, .yml, .json or DARTS "
        f"text) or the text Genotype(normal=[...], ...)"
    )


def _existing_file(text: str) -> Path | None:
    try:
        path = Path(text).expanduser()
        return path if path.is_file() else None
    except (OSError, ValueError):  # too long or a NUL byte: not a path
        return None


def _validate_at(g: Genotype, where: str) -> None:
    try:
        validate_genotype(g)
    except GenotypeError as exc:
        raise GenotypeError(f"{where}: {exc}") from None


def _load_file(path: Path) -> Genotype:
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
        return _parse_text(raw, where)
    if isinstance(data, Mapping) and "genotype" in data:
        where = f"{where}: genotype"
        data = data["genotype"]
        if not isinstance(data, (str, Mapping)):
            raise GenotypeError(
                f"{where} must be DARTS text or a mapping with keys {', '.join(_KEYS)}, "
                f"not {type(data).__name__}"
            )
    if isinstance(data, str):
        return _parse_text(data, where)
    return _from_mapping(data, where)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return _short(exc.problem + at, 120)
    return _short(exc, 120)
