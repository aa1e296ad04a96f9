"""`distill.teacher` as a model spec: the teacher is trained first where its run_dir holds
none, resumed to its end where a training there was cut off, used as it is when finished,
and a run_dir holding another teacher is refused in one line with nothing lost."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from bnn_nas.config import DEFAULT_TEACHER_CONFIG, TeacherSpec, config_from_dict, load_config
from bnn_nas.errors import ConfigError
from tests.fixtures import kill_after_epochs, make_image_folder, metrics_rows

# the teacher's own config: its seed, schedule and network settings (its data section is
# the student's, so this one's is never read)
TEACHER = """\
seed: 1
device: auto
data: {name: cifar10_sample}
model: {family: bireal}
final: {epochs: EPOCHS, batch_size: 20, optimizer: sgd, lr: 0.05, checkpoint_every: 1}
"""


def _files(tmp_path: Path, teacher_epochs: int = 2) -> tuple[Path, Path]:
    """A student config (resnet20 bireal, one epoch) whose teacher spec names
    ``teacher.yaml`` beside it and run_dir ``tmp_path/teacher``; and the data folder."""
    data = tmp_path / "images"
    if not data.exists():
        make_image_folder(data, train_per_class=4, test_per_class=2)
    (tmp_path / "teacher.yaml").write_text(TEACHER.replace("EPOCHS", str(teacher_epochs)))
    student = tmp_path / "student.yaml"
    student.write_text(
        f"device: cpu\ndata: {{name: image_folder, root: {data}}}\nmodel: {{family: bireal}}\n"
        "final:\n  epochs: 1\n  batch_size: 20\n"
        f"  distill: {{teacher: {{model: resnet20, family: float, config: teacher.yaml, "
        f"run_dir: {tmp_path / 'teacher'}}}, loss: kl, temperature: 4.0}}\n"
    )
    return student, data


def _train(config: Path, run_dir: Path, *extra: str):
    from click.testing import CliRunner

    from bnn_nas.cli import main

    return CliRunner().invoke(main, ["train", "--config", str(config), "--model", "resnet20",
                                     "--run-dir", str(run_dir), *extra])  # fmt: skip


def _state(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir()) if p.is_file()}


def test_a_student_trains_its_teacher_first_and_the_next_one_reuses_it(tmp_path, monkeypatch):
    student, data = _files(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # teacher.yaml is found beside the student's config
    teacher = tmp_path / "teacher"
    first = _train(student, tmp_path / "s1")
    assert first.exit_code == 0, first.output
    assert f"training the teacher (resnet20 float, 2 epochs of {tmp_path / 'teacher.yaml'}) " \
           f"in {teacher} first" in first.output
    assert len(metrics_rows(teacher)) == 2
    made = json.loads((teacher / "report.json").read_text())
    assert made["epochs"] == 2 and made["float_params"] > 0 and made["binary_params"] == 0
    taught = load_config(teacher / "config.yaml")
    assert taught.data.root == str(data) and taught.data.name == "image_folder"  # the student's
    assert taught.seed == 1 and taught.final.optimizer == "sgd"  # the teacher config's own
    assert taught.model.type == "resnet20" and taught.model.options["act"] == "identity"
    report = json.loads((tmp_path / "s1" / "report.json").read_text())
    assert report["distill_teacher"] == str(teacher) and report["binary_params"] > 0
    recorded = load_config(tmp_path / "s1" / "config.yaml").final.distill
    assert recorded is not None and recorded.teacher == TeacherSpec(
        run_dir=str(teacher), model="resnet20", family="float",
        config=str(tmp_path / "teacher.yaml"))  # fmt: skip

    before = _state(teacher)
    second = _train(student, tmp_path / "s2")
    assert second.exit_code == 0, second.output
    assert f"using the teacher in {teacher} (resnet20 float)" in second.output
    assert "training the teacher" not in second.output
    assert _state(teacher) == before  # checkpoint, metrics and report untouched
    assert json.loads((tmp_path / "s2" / "report.json").read_text())["distill_teacher"] == str(
        teacher)  # fmt: skip


def test_a_bad_student_setting_fails_before_its_teacher_spec_trains(tmp_path):
    """The student's cheap checks (batch size, Cutout) come before minutes of teacher
    training: the error is the student's, and no teacher run directory is made."""
    student, _ = _files(tmp_path)
    for bad in ("final.batch_size=100000", "final.cutout=64"):
        result = _train(student, tmp_path / "s1", "--set", bad)
        assert result.exit_code != 0, bad
        assert "training the teacher" not in result.output, bad
        assert bad.split("=")[0].split(".")[1] in result.output, result.output
        assert not (tmp_path / "teacher").exists(), bad


def test_a_run_dir_of_another_teacher_is_refused_in_one_line_and_kept(tmp_path):
    student, _ = _files(tmp_path)
    assert _train(student, tmp_path / "s1").exit_code == 0
    teacher = tmp_path / "teacher"
    before = _state(teacher)
    other = {
        "final.distill.teacher.family=bireal": "model.options.act 'identity' there, None in",
        "final.distill.teacher.model=resnet18": "model.type 'resnet20' there, 'resnet18' in",
    }
    for override, difference in other.items():
        refused = _train(student, tmp_path / "s2", "--set", override)
        assert refused.exit_code == 2, refused.output
        lines = refused.output.strip().splitlines()
        assert len(lines) == 1, refused.output
        assert f"final.distill.teacher.run_dir {teacher} holds another teacher's" in lines[0]
        assert difference in lines[0]
        assert f"give final.distill.teacher.run_dir another directory, or delete {teacher}" \
               in lines[0]
    # the teacher's config file changed since (more epochs): another teacher as well
    (tmp_path / "teacher.yaml").write_text(TEACHER.replace("EPOCHS", "3"))
    refused = _train(student, tmp_path / "s2")
    assert refused.exit_code == 2 and "final.epochs 2 there, 3 in the spec" in refused.output
    assert _state(teacher) == before and not (tmp_path / "s2").exists()


@pytest.mark.slow
def test_a_teacher_killed_mid_training_is_resumed_to_its_end_by_the_next_student(tmp_path):
    """SIGKILL while the first student trains its teacher; the next student resumes the
    teacher to its end: every epoch's figures equal those of a teacher never interrupted."""
    student, _ = _files(tmp_path, teacher_epochs=5)
    teacher = tmp_path / "teacher"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "bnn_nas.cli", "train", "--config", str(student),
               "--model", "resnet20", "--run-dir", str(tmp_path / "s1")]  # fmt: skip
    kill_after_epochs(command, teacher, 2, env)
    done = len(metrics_rows(teacher))
    assert 2 <= done < 5 and not (teacher / "report.json").exists(), "the kill came too late"
    assert not (tmp_path / "s1").exists()  # the student had not begun
    resumed = _train(student, tmp_path / "s1")
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming the teacher in {teacher} (resnet20 float) to its end first" in resumed.output
    straight = _train(student, tmp_path / "s2", "--set",
                      f"final.distill.teacher.run_dir={tmp_path / 'straight'}")  # fmt: skip
    assert straight.exit_code == 0 and "training the teacher" in straight.output
    a, b = metrics_rows(tmp_path / "straight"), metrics_rows(teacher)
    assert len(a) == len(b) == 5
    for row_a, row_b in zip(a, b, strict=True):
        for key in ("epoch", "lr", "train_loss", "train_acc", "eval_loss", "eval_acc"):
            assert float(row_a[key]) == pytest.approx(float(row_b[key]), rel=1e-5), key


@pytest.mark.slow
def test_ctrl_c_while_the_teacher_trains_says_the_same_command_resumes_it(tmp_path):
    import signal

    from tests.fixtures import signal_after_epochs

    student, _ = _files(tmp_path, teacher_epochs=5)
    teacher = tmp_path / "teacher"
    command = [sys.executable, "-m", "bnn_nas.cli", "train", "--config", str(student),
               "--model", "resnet20", "--run-dir", str(tmp_path / "s1")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code, stderr = signal_after_epochs(command, teacher, 1, env, signal.SIGTERM)
    assert not (teacher / "report.json").exists(), "the signal came too late"
    assert code == 143, stderr
    assert f"the teacher's training in {teacher} is kept; the same command resumes it: " \
           "bnn-nas train --config" in stderr
    assert "--resume" not in stderr.splitlines()[-1]


def test_a_search_whose_trials_distil_trains_the_teacher_before_its_run_directory(tmp_path):
    from click.testing import CliRunner

    from bnn_nas.cli import main

    config = _search_config(tmp_path)
    result = CliRunner().invoke(main, ["search", "--config", str(config), "--run-dir",
                                       str(tmp_path / "search")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "training the teacher (resnet20 float" in result.output
    assert json.loads((tmp_path / "teacher" / "report.json").read_text())["epochs"] == 2
    assert "1 trial done, 0 failed" in result.output
    # a search that cannot go on fails before a teacher spec trains: no teacher is made
    other = tmp_path / "other-teacher"
    config.write_text(config.read_text().replace(str(tmp_path / "teacher"), str(other)))
    for argv in (["--resume", "--run-dir", str(tmp_path / "nothing")],  # nothing to resume
                 ["--run-dir", str(tmp_path / "search"), "--set", "seed=5"]):  # other seed
        refused = CliRunner().invoke(main, ["search", "--config", str(config), *argv])
        assert refused.exit_code != 0, refused.output
        assert "training the teacher" not in refused.output and not other.exists(), argv


@pytest.mark.parametrize(
    "teacher, message",
    [
        ({"model": "resnet20", "run_dir": "t", "depth": 3},
         r"unknown key final\.distill\.teacher\.depth; .*allowed: run_dir, model, genotype"),
        ({"model": "resnet20", "family": "float"}, r"final\.distill\.teacher\.run_dir is missing"),
        ({"model": "resnet20", "genotype": "g", "run_dir": "t"}, "both model and genotype"),
        ({"family": "float", "run_dir": "t"}, "neither model nor genotype"),
        ({"model": "resnt20", "run_dir": "t"}, r"teacher\.model: unknown baseline model 'resnt20'"),
        ({"model": "resnet20", "family": "flaot", "run_dir": "t"}, r"teacher\.family: unknown"),
        ({"genotype": "g", "family": "float", "run_dir": "t"}, "family applies to a baseline"),
        ({"model": "resnet20", "run_dir": "t", "config": ""}, r"teacher\.config is empty"),
        ({"model": ["resnet20"], "run_dir": "t"}, r"teacher\.model must be"),
        (3, "final.distill.teacher must be str or a mapping, not 3"),
    ],
)
def test_bad_teacher_specs_are_one_line_config_errors(teacher, message):
    with pytest.raises(ConfigError, match=message) as caught:
        config_from_dict({"final": {"distill": {"teacher": teacher}}}, "c.yaml")
    assert "\n" not in str(caught.value)


def test_a_spec_config_resolves_beside_the_config_file_then_from_the_cwd(tmp_path, monkeypatch):
    """Stored absolute (a resumed run finds it from anywhere); the default is the
    repository's teacher recipe; a --set's relative path is the working directory's."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "mine.yaml").write_text("seed: 0\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "teacher.yaml").write_text("seed: 0\n")
    student = tmp_path / "sub" / "student.yaml"
    student.write_text("final: {distill: {teacher: {model: resnet20, run_dir: t}}}\n")
    monkeypatch.chdir(tmp_path)
    assert DEFAULT_TEACHER_CONFIG == "configs/recipes/teacher.yaml"
    (tmp_path / "configs" / "recipes").mkdir()
    (tmp_path / "configs" / "recipes" / "teacher.yaml").write_text("seed: 0\n")

    def spec(*overrides):
        return load_config(student, overrides).final.distill.teacher

    assert spec().config == str(tmp_path / DEFAULT_TEACHER_CONFIG)  # from the cwd
    assert spec("final.distill.teacher.config=teacher.yaml").config == "teacher.yaml"  # no such
    assert spec("final.distill.teacher.config=configs/mine.yaml").config == str(
        tmp_path / "configs" / "mine.yaml")  # fmt: skip
    student.write_text("final: {distill: {teacher: {model: resnet20, run_dir: t, "
                       "config: teacher.yaml}}}\n")  # fmt: skip
    assert spec().config == str(tmp_path / "sub" / "teacher.yaml")  # beside the file
    assert load_config(student, ("final.distill.teacher=runs/t",)).final.distill.teacher == "runs/t"


def test_the_literature_spec_is_the_teacher_its_documented_command_trains(monkeypatch):
    """configs/recipes/literature.yaml's teacher spec describes what `bnn-nas train --config
    configs/recipes/teacher.yaml --model resnet18 --family float --set data.root=DIR` trains:
    a teacher trained by hand so is used as it is, not refused or trained again."""
    from bnn_nas.train.network_choice import network_config
    from bnn_nas.train.settings_diff import changed_settings
    from bnn_nas.train.teacher_spec import teacher_run_config

    recipes = Path(__file__).resolve().parent.parent / "configs" / "recipes"
    monkeypatch.chdir(recipes.parent.parent)
    student = load_config(recipes / "literature.yaml", ("data.root=/data/cifar10",))
    spec = student.final.distill.teacher
    assert isinstance(spec, TeacherSpec) and spec.config == str(recipes / "teacher.yaml")
    assert spec.run_dir == "runs/teacher-r18-float"
    spec_config, genotype = teacher_run_config(student, spec, "final.distill.teacher")
    by_hand = network_config(load_config(recipes / "teacher.yaml", ("data.root=/data/cifar10",)),
                             None, "resnet18", "float")  # fmt: skip
    assert genotype is None and changed_settings(by_hand, spec_config) == []
    assert spec_config.final.epochs == 200 and spec_config.model.options["act"] == "identity"
    # on a CPU without a C++ compiler the recipe's comment says to train it uncompiled:
    # compile is a speed setting, so that teacher is the spec's too
    uncompiled = network_config(
        load_config(recipes / "teacher.yaml", ("data.root=/data/cifar10", "final.compile=false",
                                               "final.compile_scope=ops")),
        None, "resnet18", "float",
    )  # fmt: skip
    assert changed_settings(uncompiled, spec_config) == []
    other = network_config(load_config(recipes / "teacher.yaml", ("final.epochs=10",)),
                           None, "resnet18", "float")  # fmt: skip
    assert changed_settings(other, spec_config) == ["final.epochs"]


def test_a_genotype_teacher_is_trained_first_and_its_own_run_dir_is_the_students_never(
    tmp_path,
):
    from tests.conftest import SMALL_GENOTYPE

    student, _ = _files(tmp_path)
    (tmp_path / "g.txt").write_text(SMALL_GENOTYPE)
    genotype = f"final.distill.teacher={{genotype: {tmp_path / 'g.txt'}, config: " \
               f"{tmp_path / 'teacher.yaml'}, run_dir: {tmp_path / 'cells'}}}"
    made = _train(student, tmp_path / "s1", "--set", genotype)
    assert made.exit_code == 0, made.output
    assert "training the teacher (a genotype, 2 epochs" in made.output
    assert (tmp_path / "cells" / "genotype.yaml").is_file()
    assert json.loads((tmp_path / "s1" / "report.json").read_text())["distill_teacher"] == str(
        tmp_path / "cells")  # fmt: skip
    again = _train(student, tmp_path / "s2", "--set", genotype)
    assert again.exit_code == 0 and "using the teacher in" in again.output
    # a baseline spec on the genotype's run directory: another network
    refused = _train(student, tmp_path / "s3", "--set",
                     f"final.distill.teacher.run_dir={tmp_path / 'cells'}")  # fmt: skip
    assert refused.exit_code == 2 and "another network (genotype)" in refused.output
    own = _train(student, tmp_path / "s4", "--set",
                 f"final.distill.teacher.run_dir={tmp_path / 's4'}")  # fmt: skip
    assert own.exit_code == 2 and "is the student's own run directory" in own.output
    assert not (tmp_path / "s4").exists()


def _search_config(tmp_path: Path) -> Path:
    """A one-trial search of the tiny space whose trials distil from a teacher spec
    (resnet20 float, ``teacher.yaml``, run_dir ``tmp_path/teacher``)."""
    from tests.fixtures import TINY_SPACE

    _, data = _files(tmp_path)
    config = tmp_path / "search.yaml"
    config.write_text(TINY_SPACE + (
        f"device: cpu\ndata: {{name: image_folder, root: {data}}}\nmodel: {{family: bireal}}\n"
        "search: {controller: random, budget: 1}\n"
        "train:\n  epochs: 1\n  batch_size: 10\n"
        f"  distill: {{teacher: {{model: resnet20, family: float, config: teacher.yaml, "
        f"run_dir: {tmp_path / 'teacher'}}}}}\n"
    ))  # fmt: skip
    return config


def _cut_off(config, run_dir, **kwargs):
    """A teacher's training stopped by Ctrl-C once its run directory is made."""
    from bnn_nas.rundir import creating, release_run_dir

    with creating(Path(run_dir), "train"):
        pass
    release_run_dir(Path(run_dir))
    raise KeyboardInterrupt


def test_ctrl_c_while_a_searchs_teacher_trains_says_the_same_command_resumes_it(
    tmp_path, monkeypatch
):
    # it said `bnn-nas search interrupted`, the search's generic line, naming nothing kept
    from click.testing import CliRunner

    from bnn_nas.cli import main

    config = _search_config(tmp_path)
    monkeypatch.setattr("bnn_nas.search.engine.train_run", _cut_off)
    argv = ["search", "--config", str(config), "--run-dir", str(tmp_path / "search")]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 130, result.output
    assert "training the teacher (resnet20 float" in result.output
    assert result.output.strip().splitlines()[-1] == (
        f"bnn-nas: interrupted; the teacher's training in {tmp_path / 'teacher'} is kept; the "
        f"same command resumes it: bnn-nas search --config {config} --run-dir "
        f"{tmp_path / 'search'}"
    )
    assert not (tmp_path / "search").exists()  # the search had not begun


def test_run_search_says_when_it_trains_a_teacher_first_as_the_cli_does(
    tmp_path, monkeypatch, capsys
):
    # bnn_nas.run_search gave open_search no say: the teacher trained without a word
    import bnn_nas

    config = _search_config(tmp_path)
    monkeypatch.setattr("bnn_nas.search.engine.train_run", _cut_off)
    with pytest.raises(KeyboardInterrupt):
        bnn_nas.run_search(config, run_dir=tmp_path / "search", progress=False)
    err = capsys.readouterr().err
    assert f"training the teacher (resnet20 float, 2 epochs of {tmp_path / 'teacher.yaml'}) " \
           f"in {tmp_path / 'teacher'} first" in err
    from bnn_nas.train.teacher_spec import teacher_begun

    assert teacher_begun(load_config(config), "train") == tmp_path / "teacher"  # kept
