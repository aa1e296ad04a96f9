"""A distillation teacher given as a spec: trained first, where its run directory holds none.

``distill.teacher: {model | genotype, family, config, run_dir}`` names the training that
``bnn-nas train --config CONFIG --model MODEL --family FAMILY --run-dir RUN_DIR`` would do
(``config``'s ``final`` section, its seed and network settings), on the student's ``data``
section and device. Before the student trains (``bnn-nas train``, and a search whose trials
distil), :func:`ensure_teacher` makes ``run_dir`` hold that teacher, finished: it trains it
there when the folder holds no run, resumes a run that was cut off (``--resume``'s
machinery, to the same end as an uninterrupted one) and uses a finished one as it is. A run
there of another network or other settings is refused in one line, and left untouched.
The student then loads the teacher from ``run_dir`` as from a teacher given as a path.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bnn_nas.config import Config, TeacherSpec, config_to_dict, load_config
from bnn_nas.errors import BnnNasError, ConfigError
from bnn_nas.rundir import run_kind
from bnn_nas.space.genotype import Genotype, load_genotype
from bnn_nas.train.final_network import REPORT, saved_genotype, saved_run_config
from bnn_nas.train.network_choice import network_config

__all__ = ["ensure_teacher", "teacher_begun", "teacher_line", "teacher_run_config"]


def teacher_run_config(
    student: Config, spec: TeacherSpec, key: str
) -> tuple[Config, Genotype | None]:
    """The config (and genotype) that trains the teacher of ``spec``: ``spec.config`` set
    to its network as `bnn-nas train` sets it, with the student's data, device and
    plugins (``key``: where the spec is, for errors)."""
    path = Path(spec.config)
    if not path.is_file():
        raise ConfigError(
            f"{key}.config {spec.config}: no such file; give the config whose final section "
            "trains the teacher (e.g. configs/recipes/teacher.yaml, from the repository root)"
        )
    config = load_config(path)
    inner = config.final.distill
    if inner is not None and isinstance(inner.teacher, TeacherSpec):
        raise ConfigError(
            f"{key}.config {spec.config}: its final.distill trains a teacher of its own; a "
            "teacher trained first distils from a trained one only (a run directory)"
        )
    config = replace(config, data=student.data, device=student.device, plugins=student.plugins)
    try:
        genotype = load_genotype(spec.genotype) if spec.genotype is not None else None
        config = network_config(config, genotype, spec.model, spec.family)
    except BnnNasError as err:
        raise ConfigError(f"{key}: {err}") from None
    return config, genotype


def ensure_teacher(
    student: Config,
    section: str,
    train: Callable[..., dict],
    *,
    student_dir: Path | None = None,
    progress: bool = True,
    say: Callable[[str], None] | None = None,
) -> None:
    """Make the teacher of ``student``'s ``section`` (train | final) ``distill`` ready in
    its run directory when it is given as a spec (nothing for a path or no distillation):
    trained, resumed or found there; ``say`` gets one line saying which. ``student_dir``:
    the student's own run directory, which the teacher's must not be. ``train``:
    :func:`bnn_nas.train.run.train_run` (passed in: that module calls this one)."""
    distill = getattr(student, section).distill
    if distill is None or not isinstance(distill.teacher, TeacherSpec):
        return
    spec, key = distill.teacher, f"{section}.distill.teacher"
    config, genotype = teacher_run_config(student, spec, key)
    run_dir = Path(spec.run_dir)
    if student_dir is not None and run_dir.resolve() == Path(student_dir).resolve():
        raise ConfigError(
            f"{key}.run_dir {run_dir} is the student's own run directory; give the teacher "
            "another one (e.g. runs/teacher-r18-float)"
        )
    what = _network(spec)
    kind = run_kind(run_dir) if run_dir.is_dir() else None
    if kind == "search":
        raise ConfigError(
            f"{key}.run_dir {run_dir} holds a search run, not a teacher's training; give "
            "the spec another run_dir"
        )
    tell = say or (lambda line: None)
    if kind == "train":
        _check_same_teacher(run_dir, config, genotype, spec, key)
        if (run_dir / REPORT).is_file():  # written once the training's last epoch is done
            tell(f"using the teacher in {run_dir} ({what})")
            return
        tell(f"resuming the teacher in {run_dir} ({what}) to its end first")
        train(config, run_dir, genotype=genotype, resume=True, progress=progress, say=say)
        return
    tell(f"training the teacher ({what}, {config.final.epochs} epochs of {spec.config}) in "
         f"{run_dir} first")  # fmt: skip
    train(config, run_dir, genotype=genotype, resume=False, progress=progress, say=say)


def teacher_line(line: str) -> None:
    """Where a search shows :func:`ensure_teacher`'s line (training, resuming or using the
    teacher), `bnn-nas search` and :func:`bnn_nas.run_search` alike: stderr."""
    print(line, file=sys.stderr, flush=True)


def teacher_begun(student: Config, section: str) -> Path | None:
    """The run directory of ``student``'s ``section`` (train | final) ``distill`` teacher
    spec when a training of it was begun there and is not finished (a Ctrl-C while
    :func:`ensure_teacher` trained it: the next call resumes it), else None."""
    distill = getattr(student, section).distill
    if distill is None or not isinstance(distill.teacher, TeacherSpec):
        return None
    run_dir = Path(distill.teacher.run_dir)
    try:
        begun = run_dir.is_dir() and run_kind(run_dir) == "train"
    except (OSError, BnnNasError):  # a damaged marker: the plain hint
        return None
    return run_dir if begun and not (run_dir / REPORT).is_file() else None


def _network(spec: TeacherSpec) -> str:
    if spec.genotype is not None:
        return "a genotype"
    return spec.model if spec.family is None else f"{spec.model} {spec.family}"


def _check_same_teacher(
    run_dir: Path, config: Config, genotype: Genotype | None, spec: TeacherSpec, key: str
) -> None:
    """The training in ``run_dir`` is the one ``spec`` describes (the settings a resume
    compares, and the genotype), else the one-line refusal naming both."""
    from bnn_nas.train.settings_diff import changed_settings

    fix = f"give {key}.run_dir another directory, or delete {run_dir} to train it there"
    try:
        before = saved_run_config(run_dir)
    except ConfigError as err:
        raise ConfigError(
            f"{key}.run_dir {run_dir}: its config cannot be read ({err}); {fix}"
        ) from None
    if before is None:
        raise ConfigError(f"{key}.run_dir {run_dir} holds a training without config.yaml; {fix}")
    differences = []
    was, now = config_to_dict(before), config_to_dict(config)
    for name in changed_settings(before, config):
        differences.append(f"{name} {_at(was, name)} there, {_at(now, name)} in the spec")
    before_genotype = saved_genotype(run_dir)
    if (before_genotype is None) != (genotype is None) or (
        genotype is not None and before_genotype is not None
        and before_genotype.hash != genotype.hash
    ):  # fmt: skip
        differences.insert(0, "another network (genotype)")
    if differences:
        shown = "; ".join(differences[:3]) + ("; ..." if len(differences) > 3 else "")
        raise ConfigError(
            f"{key}.run_dir {run_dir} holds another teacher's training than {_network(spec)} "
            f"from {spec.config} ({shown}); {fix}"
        )


def _at(data: dict, dotted: str) -> str:
    value: object = data
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
