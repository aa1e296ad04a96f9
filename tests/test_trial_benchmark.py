"""benchmarks.trial's reference run: the lean stand-alone trial's figure read from its
JSON output (as data) and the ratio of ours to it, in the same call."""

from __future__ import annotations

import json

import pytest

from benchmarks.trial import reference_trials_per_hour, run_reference

LEAN = {"device": "NVIDIA H200", "graph": True, "streams": 8, "epochs": 5,
        "by_procs": {"1": {"trials": 8, "trials_per_gpu_hour": 638.0},
                     "2": {"trials": 16, "trials_per_gpu_hour": 602.0}}}  # fmt: skip


def test_the_best_figure_of_the_last_json_line_is_taken():
    output = "1 {'trials': 8}\nnot json\n" + json.dumps(LEAN) + "\n"
    assert reference_trials_per_hour(output) == 638.0
    older = json.dumps({"by_procs": {"1": {"trials_per_gpu_hour": 1.0}}})
    assert reference_trials_per_hour(older + "\n" + json.dumps(LEAN)) == 638.0


@pytest.mark.parametrize("output", ["", "1 {'trials': 8}", json.dumps({"by_procs": {}}),
                                    json.dumps({"by_procs": {"1": {"trials": 3}}}),
                                    json.dumps([1, 2])])  # fmt: skip
def test_output_without_the_figure_is_one_line_error(output):
    with pytest.raises(SystemExit, match="printed no JSON line with by_procs"):
        reference_trials_per_hour(output)


def test_a_reference_script_runs_and_its_failure_is_named(tmp_path):
    script = tmp_path / "lean.py"
    script.write_text(f"import json\nprint('warming up')\nprint(json.dumps({LEAN!r}))\n")
    assert run_reference(f"{script} --procs 1 2") == 638.0
    broken = tmp_path / "broken.py"
    broken.write_text("import sys\nprint('CUDA not available', file=sys.stderr)\nsys.exit(3)\n")
    with pytest.raises(SystemExit, match=r"failed \(exit 3\): CUDA not available"):
        run_reference(str(broken))
