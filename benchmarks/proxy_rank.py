"""How well does a cheap training budget rank candidates as a long one would? (the proxy)

Samples N genotypes of a config's space, trains every one under each candidate fidelity
(a few epochs, a fraction of the data, ...) and under a reference budget, all scored on
the same search-valid split, and prints per fidelity: Kendall's tau-b (with a 95%
bootstrap interval over the genotypes) and Spearman's rho against the reference ranking,
the overlap of the top k, and the GPU-seconds it cost. And the pooling pathology (a short
proxy favours ops that need no training): per fidelity, Kendall's tau between its scores
and each genotype's parameter-free edges in the normal cell (registry precision ``free``:
zero, identity, pooling, shortcuts), and the mean free edges of its top k, beside the
reference's; a proxy that ranks by free edges where the reference does not is biased.

    python -m benchmarks.proxy_rank --config configs/cifar.yaml --set data.root=$DATA \\
        --genotypes 24 --out docs/results/proxy-rank \\
        --fidelity "e5-25k: train.epochs=5 data.search_train_size=25000" \\
        --fidelity "e3-45k: train.epochs=3 data.search_train_size=45000" \\
        --reference "e40-45k: train.epochs=40 train.warmup_epochs=2 data.search_train_size=45000"

A fidelity is a name and ``--set`` overrides of the config, and may end in
``stop_after=N``: scored after N epochs of its ``train.epochs`` schedule, as
``search.promotion: continue`` scores a lower rung (e.g. "c2-of-18: train.epochs=18
stop_after=2" against "e2: train.epochs=2": which ranks better, continued or retrained
rungs). Every fidelity trains on the base config's data (loaded once): one whose
overrides change which images are loaded (data.name, data.root, a plugin dataset's own
settings) is refused; its split (data.search_train_size, ...) is its own. Every score is
appended to
OUT/scores.csv as it finishes, so a killed run re-run with the same arguments trains only
what is missing; OUT/wall_seconds.json keeps each fidelity's wall seconds over such runs,
OUT/proxy_rank.json holds the table, OUT/genotypes.txt the genotypes.

One study in several processes (to fill a GPU, or over several sessions): give each its
own --out and the same --config, --set, --genotypes and --seed (so the same genotypes),
then make one table of them all without training:

    python -m benchmarks.proxy_rank ... --out A --fidelity "e5-25k: ..." --reference "e10-12k: ..."
    python -m benchmarks.proxy_rank ... --out B --reference "e40-25k: ..."
    python -m benchmarks.proxy_rank ... --out AB --scores-from A --scores-from B --no-train \\
        --fidelity "e5-25k: ..." --fidelity "e10-12k: ..." --reference "e40-25k: ..."

``--scores-from DIR`` (repeatable) counts DIR/scores.csv as scores already done: they are
in the table and not trained again, but they are not copied into OUT/scores.csv, which
keeps only what this study trained (so DIR may still grow, and a later table reads it
afresh). A fidelity's wall seconds are the sum of OUT's and every DIR's (each study's
wall_seconds.json counts only what that study trained). Refused: a DIR whose genotypes.txt
differs from this study's, and a genotype that two studies give different scores under
one fidelity name (they trained different budgets under one name).

``--no-train`` trains nothing and prints the table of the scores there are, so a study
whose time ran out still reports. Each row's statistics against the reference are taken
over the genotypes scored under both it and the reference ("n 9/24"; below 3 the row
gives none and says so), its free-edge columns and mean accuracy over the genotypes it
scored, and the top-k columns need k of them; proxy_rank.json keeps ``n`` (shared with
the reference) and ``scored`` per fidelity, ``null`` for a statistic not computed."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import random
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter

from bnn_nas.config import Config, load_config
from bnn_nas.data import data_settings, load_dataset
from bnn_nas.errors import BnnNasError
from bnn_nas.io import write_text_atomic
from bnn_nas.search.budget import checkpoint_name
from bnn_nas.search.engine import make_executor
from bnn_nas.search.evaluator import Evaluator, split_for_search
from bnn_nas.search.executors import OutcomeKind
from bnn_nas.search.trials import TrialRecord, TrialStatus
from bnn_nas.space.edge_limits import edge_counts
from bnn_nas.space.genotype import Genotype, parse_genotype
from bnn_nas.space.search_space import load_search_space
from bnn_nas.train import resolve_device

SCORE_FIELDS = ["fidelity", "index", "hash", "accuracy", "loss", "train_seconds"]
MIN_SHARED = 3  # genotypes scored under both a fidelity and the reference for its statistics
STOP_KEY = "stop_after"  # a fidelity's token that is no config override (Fidelity)


@dataclass(frozen=True)
class Fidelity:
    """A name, ``--set`` overrides of the config, and ``stop_after``: score after that many
    epochs of the configured schedule (None: at its end). A stopped fidelity is what
    ``search.promotion: continue`` scores at a lower rung: every rung trains under the last
    rung's schedule, stopped early, so its learning rate has not decayed."""

    name: str
    overrides: tuple[str, ...]
    stop_after: int | None = None

    @classmethod
    def parse(cls, text: str) -> Fidelity:
        name, sep, rest = text.partition(":")
        if not sep or not name.strip():
            raise SystemExit(f"fidelity {text!r} must look like 'NAME: key=value key=value'")
        name, tokens = name.strip(), rest.split()
        stops = [t for t in tokens if t.startswith(f"{STOP_KEY}=")]
        if not stops:
            return cls(name, tuple(tokens))
        value = stops[-1].partition("=")[2]
        if len(stops) > 1 or not value.isdigit() or int(value) < 1:
            raise SystemExit(f"fidelity {name}: {STOP_KEY} takes one whole number of epochs "
                             f">= 1, e.g. {STOP_KEY}=2 (got {' '.join(stops)})")  # fmt: skip
        return cls(name, tuple(t for t in tokens if t not in stops), int(value))


def kendall_tau_b(x: list[float], y: list[float]) -> float:
    """Kendall's tau-b (ties in either ranking corrected for), O(n^2)."""
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denominator if denominator else float("nan")


def ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties given their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            result[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return result


def spearman_rho(x: list[float], y: list[float]) -> float:
    """Pearson correlation of the ranks (ties averaged)."""
    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return cov / math.sqrt(vx * vy) if vx and vy else float("nan")


def bootstrap_interval(
    x: list[float], y: list[float], statistic, resamples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile bootstrap interval of ``statistic(x, y)`` over the paired items.

    Why: with N = 24 genotypes one Kendall tau carries a spread of about +-0.15, so a
    proxy's tau of 0.6 against another's 0.5 says little without it. Resamples whose
    statistic is undefined (NaN: every resampled item alike) are left out."""
    rng = random.Random(seed)
    n = len(x)
    values = []
    for _ in range(resamples):
        pick = [rng.randrange(n) for _ in range(n)]
        value = statistic([x[i] for i in pick], [y[i] for i in pick])
        if not math.isnan(value):
            values.append(value)
    if not values:
        return float("nan"), float("nan")
    values.sort()
    low = values[int(0.025 * (len(values) - 1))]
    high = values[math.ceil(0.975 * (len(values) - 1))]
    return low, high


def top_k(v: list[float], k: int) -> list[int]:
    """Indices of the k best under ``v`` (ties: the lower index first)."""
    return sorted(range(len(v)), key=lambda i: -v[i])[:k]


def top_k_overlap(x: list[float], y: list[float], k: int) -> float:
    """Share of the k best under ``y`` that are also among the k best under ``x``."""
    return len(set(top_k(x, k)) & set(top_k(y, k))) / k


def normal_free_edges(genotype: Genotype) -> int:
    """Parameter-free edges of the normal cell, by the registry's declared precision."""
    return edge_counts(genotype.normal)[0]


def sample_genotypes(config: Config, n: int, seed: int) -> list[Genotype]:
    space = load_search_space(config.search_space)
    rng = random.Random(seed)
    genotypes: list[Genotype] = []
    for _ in range(100 * n):
        g = space.random_sample(rng)
        if g not in genotypes:
            genotypes.append(g)
        if len(genotypes) == n:
            return genotypes
    raise SystemExit(f"the space holds fewer than {n} distinct genotypes")


def read_scores(path: Path) -> list[dict]:
    """scores.csv's rows. A last line without its newline is a row a kill cut off while
    it was written: not a score (its genotype trains again); any other bad row is refused
    in one line, naming it."""
    if not path.is_file():
        return []
    text = path.read_text()
    rows = list(csv.DictReader(io.StringIO(text[: text.rfind("\n") + 1])))
    for line, row in enumerate(rows, start=2):
        try:
            int(row["index"]), float(row["accuracy"]), str(row["fidelity"])
        except (KeyError, TypeError, ValueError):
            raise SystemExit(
                f"{path}, line {line}: not a score row; delete that line (its genotype then "
                "trains again) or give another --out"
            ) from None
    return rows


def drop_cut_off_row(path: Path) -> None:
    """Remove a last line a kill cut off (see read_scores), so appended rows start on a
    line of their own."""
    if path.is_file():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            path.write_bytes(data[: data.rfind(b"\n") + 1])


def read_wall_seconds(path: Path) -> dict[str, float]:
    if not path.is_file():
        return {}
    try:
        wall = json.loads(path.read_text())
    except ValueError:
        wall = None
    if not isinstance(wall, dict) or not all(
        isinstance(v, int | float) for v in wall.values()
    ):
        raise SystemExit(
            f"{path}: not a mapping of fidelity names to seconds; delete it (the table then "
            "shows 0 seconds for the trials before) or give another --out"
        )
    return wall


def read_study(directory: Path, listing: str) -> tuple[list[dict], dict[str, float]]:
    """Another study's scores.csv rows and wall_seconds.json, refused unless its
    genotypes.txt is ``listing`` (this study's)."""
    genotypes = directory / "genotypes.txt"
    if not genotypes.is_file():
        raise SystemExit(f"--scores-from {directory}: no genotypes.txt there; "
                         "name the --out folder of a proxy_rank study")  # fmt: skip
    if genotypes.read_text() != listing:
        raise SystemExit(f"--scores-from {directory}: its genotypes.txt differs from this "
                         "study's; give the --config, --set, --genotypes and --seed it ran "
                         "with")  # fmt: skip
    return read_scores(directory / "scores.csv"), read_wall_seconds(directory / "wall_seconds.json")


def merge_scores(
    studies: list[tuple[Path, list[dict]]], names: set[str]
) -> dict[str, dict[int, float]]:
    """``{fidelity: {genotype index: accuracy}}`` of the fidelities ``names`` over every
    study's rows; refused when two rows give one genotype two accuracies under one name."""
    merged: dict[str, dict[int, float]] = {name: {} for name in names}
    first: dict[tuple[str, int], Path] = {}
    for where, rows in studies:
        for row in rows:
            name, i, accuracy = row["fidelity"], int(row["index"]), float(row["accuracy"])
            if name not in names:
                continue
            known = merged[name].get(i)
            if known is not None and known != accuracy:
                raise SystemExit(
                    f"{name} #{i} scored {known} in {first[name, i]} but {accuracy} in {where}: "
                    f"two budgets under one name; leave one study out of --scores-from, or "
                    f"rename {name} in one study's scores.csv"
                )
            merged[name][i] = accuracy
            first.setdefault((name, i), where)
    return merged


def sum_wall_seconds(walls: list[dict[str, float]]) -> dict[str, float]:
    """Each fidelity's wall seconds summed over studies (each counts what it trained)."""
    total: dict[str, float] = {}
    for wall in walls:
        for name, seconds in wall.items():
            total[name] = round(total.get(name, 0.0) + seconds, 1)
    return total


def fidelity_row(
    fidelity: Fidelity,
    scores: dict[int, float],
    reference: dict[int, float],
    free: list[float],
    k: int,
    wall: float,
) -> dict:
    """One row of the table: the statistics against ``reference`` over the genotypes scored
    under both, the free-edge columns and the mean accuracy over the genotypes ``scores``
    holds; ``None`` for a statistic with too few genotypes (the top-k columns need k)."""
    shared = sorted(scores.keys() & reference.keys())
    x, y = [scores[i] for i in shared], [reference[i] for i in shared]
    own = sorted(scores)
    v, f = [scores[i] for i in own], [free[i] for i in own]
    ranked = len(shared) >= MIN_SHARED
    return {
        "overrides": list(fidelity.overrides), "stop_after": fidelity.stop_after,
        "n": len(shared), "scored": len(own),
        "kendall_tau": kendall_tau_b(x, y) if ranked else None,
        "kendall_tau_95": list(bootstrap_interval(x, y, kendall_tau_b)) if ranked else None,
        "spearman_rho": spearman_rho(x, y) if ranked else None,
        f"top{k}_overlap": top_k_overlap(x, y, k) if ranked and len(shared) >= k else None,
        "wall_seconds": round(wall, 1),
        "mean_accuracy": sum(v) / len(v) if v else None,
        "tau_free_edges": kendall_tau_b(v, f) if len(own) >= MIN_SHARED else None,
        f"top{k}_free_edges": sum(f[i] for i in top_k(v, k)) / k if len(own) >= k else None,
    }  # fmt: skip


def print_table(table: dict[str, dict], k: int, count: int) -> None:
    """The table on stdout, ``-`` for a statistic not computed, and why under it."""

    def cell(value: float | None, width: int, spec: str) -> str:
        return f"{'-':>{width}s}" if value is None else f"{value:{width}{spec}}"

    print(f"{'fidelity':16s} {'n':>7s} {'tau':>6s} {'tau 95%':>15s} {'rho':>6s} "
          f"{'top' + str(k):>6s} {'wall s':>8s} {'tau free':>8s} "
          f"{'free top' + str(k):>10s}")  # fmt: skip
    for name, row in table.items():
        interval = row["kendall_tau_95"]
        interval = "-" if interval is None else f"[{interval[0]:.2f}, {interval[1]:.2f}]"
        print(f"{name:16s} {str(row['n']) + '/' + str(count):>7s} "
              f"{cell(row['kendall_tau'], 6, '.3f')} {interval:>15s} "
              f"{cell(row['spearman_rho'], 6, '.3f')} {cell(row[f'top{k}_overlap'], 6, '.2f')} "
              f"{row['wall_seconds']:8.1f} {cell(row['tau_free_edges'], 8, '.3f')} "
              f"{cell(row[f'top{k}_free_edges'], 10, '.2f')}")  # fmt: skip
    for name, row in table.items():
        if row["kendall_tau"] is None:
            print(f"({name}: {row['n']} of the {count} genotypes scored under both it and "
                  f"the reference, {MIN_SHARED} needed: no statistics against the "
                  "reference)")  # fmt: skip


def train_fidelity(
    fidelity: Fidelity,
    config: Config,
    dataset,
    genotypes: list[Genotype],
    todo: list[int],
    scores: Path,
    wall_path: Path,
) -> None:
    """Train the genotypes ``todo`` under ``config``; append each score to ``scores`` and,
    with it, the fidelity's wall seconds so far to ``wall_path``, so a killed study keeps
    the time its finished trials cost (the time of trials in flight is lost with them).
    A stopped fidelity trains as a continued rung does (the evaluator's own path: the
    schedule of ``train.epochs``, stopped after ``stop_after``), its checkpoints in a
    folder beside ``scores`` that is emptied as each trial ends."""
    name = fidelity.name
    device = resolve_device(config.device)
    space = load_search_space(config.search_space)
    evaluator = Evaluator(
        space, split_for_search(dataset, config), config.train, device, config.seed
    )
    origin: dict = {}
    if fidelity.stop_after is not None:
        evaluator.checkpoints = (scores.parent / "checkpoints" / name).resolve()
        budget = {"epochs": fidelity.stop_after, "schedule_epochs": config.train.epochs,
                  "continue": True}  # fmt: skip
        origin = {"kind": "proxy", "budget": budget}
    wall = read_wall_seconds(wall_path)  # only this process writes it while it trains
    before = wall.get(name, 0.0)
    tic = perf_counter()
    drop_cut_off_row(scores)
    new_file = not scores.is_file() or scores.stat().st_size == 0
    with scores.open("a", newline="") as handle, make_executor(config, evaluator) as executor:
        writer = csv.DictWriter(handle, fieldnames=SCORE_FIELDS, lineterminator="\n")
        if new_file:
            writer.writeheader()
        queue = list(todo)
        while queue or executor.in_flight():
            while queue and executor.in_flight() < executor.capacity:
                i = queue.pop(0)
                executor.submit(TrialRecord(i, genotypes[i], TrialStatus.RUNNING, origin))
            outcome = executor.next_outcome()
            if outcome.kind is not OutcomeKind.DONE or outcome.result is None:
                raise SystemExit(f"genotype {outcome.trial_id} did not train: {outcome.error}")
            result = outcome.result
            if evaluator.checkpoints is not None:  # only the score is kept
                (evaluator.checkpoints / checkpoint_name(outcome.trial_id)).unlink(
                    missing_ok=True)  # fmt: skip
            writer.writerow({
                "fidelity": name, "index": outcome.trial_id,
                "hash": genotypes[outcome.trial_id].hash, "accuracy": result.accuracy,
                "loss": result.loss, "train_seconds": round(result.train_seconds, 3),
            })  # fmt: skip
            handle.flush()
            wall[name] = round(before + perf_counter() - tic, 1)
            write_text_atomic(wall_path, json.dumps(wall, indent=2) + "\n")  # a kill keeps one
            print(f"  {name} #{outcome.trial_id}: {result.accuracy:.4f}",
                  file=sys.stderr)  # fmt: skip


def fidelity_config(path: str, base: tuple[str, ...], fidelity: Fidelity) -> Config:
    """The config a fidelity trains under; a bad override refused with the fidelity's name."""
    try:
        return load_config(path, (*base, *fidelity.overrides))
    except BnnNasError as err:
        raise SystemExit(f"fidelity {fidelity.name}: {err.line()}") from None


# what data_settings takes from a config's data section to pick the images load_dataset
# loads (download and cache_dir only say how to get them; the split is each fidelity's own)
IMAGE_KEYS = ("name", "root")


def check_same_images(base: Config, fidelity: Fidelity, config: Config, label: str) -> None:
    """Refuse a fidelity whose overrides change which images are loaded: the study loads the
    base config's dataset once and trains every fidelity on it."""
    changed = [k for k in IMAGE_KEYS if getattr(config.data, k) != getattr(base.data, k)]
    extra, base_extra = config.data.extra or {}, base.data.extra or {}
    changed += sorted(k for k in {*extra, *base_extra} if extra.get(k) != base_extra.get(k))
    if changed:
        key = changed[0]
        value = getattr(config.data, key) if key in IMAGE_KEYS else extra.get(key)
        raise SystemExit(
            f"{label} {fidelity.name}: data.{key}={value} changes which images are loaded, "
            f"but every fidelity trains on the base config's data; set data.{key} with "
            "--set (or in --config) for the whole study instead"
        )


def main(argv: list[str] | None = None) -> dict:
    """The benchmark; a user's mistake (a :class:`BnnNasError`: bad config, override or data
    setting) ends it as bnn-nas's commands do, with that error's one line and no traceback
    (exit 1, as the script's own refusals)."""
    try:
        return run_study(argv)
    except BnnNasError as err:
        raise SystemExit(err.line()) from None


def run_study(argv: list[str] | None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/cifar.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--genotypes", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0, help="which genotypes are sampled")
    parser.add_argument("--fidelity", action="append", default=[], type=Fidelity.parse)
    parser.add_argument("--reference", required=True, type=Fidelity.parse)
    parser.add_argument("--top", type=int, help="k of the top-k overlap (default N / 4)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument(
        "--scores-from", action="append", default=[], type=Path, metavar="DIR",
        help="another study's --out (same genotypes): its scores count as done and are not "
        "trained again; OUT/scores.csv does not copy them",
    )  # fmt: skip
    parser.add_argument(
        "--no-train", action="store_true",
        help="train nothing: the table of the scores OUT and --scores-from hold",
    )  # fmt: skip
    args = parser.parse_args(argv)
    base = tuple(args.overrides)
    out: Path = args.out
    fidelities = [*args.fidelity, args.reference]
    names = [f.name for f in fidelities]
    for name in names:
        if names.count(name) > 1:
            raise SystemExit(f"fidelity {name} is named twice; give each --fidelity and the "
                             "--reference its own name")  # fmt: skip
    seen = {out.resolve()}
    for directory in args.scores_from:
        if directory.resolve() in seen:
            raise SystemExit(f"--scores-from {directory} is --out or given twice; its scores "
                             "would count twice, name each other study once")  # fmt: skip
        seen.add(directory.resolve())
    config = load_config(args.config, base)
    data = data_settings(config.data)  # checked even when nothing trains
    settings = {f.name: fidelity_config(args.config, base, f) for f in fidelities}
    for f in fidelities:  # every fidelity's own refusals, before anything trains
        label = "--reference" if f is args.reference else "fidelity"
        check_same_images(config, f, settings[f.name], label)
        if f.stop_after is not None and f.stop_after > settings[f.name].train.epochs:
            raise SystemExit(f"fidelity {f.name}: {STOP_KEY}={f.stop_after} is beyond its "
                             f"schedule of train.epochs={settings[f.name].train.epochs}; give "
                             f"at most that many")  # fmt: skip
    genotypes = sample_genotypes(config, args.genotypes, args.seed)
    listing = out / "genotypes.txt"
    text = "".join(f"{g}\n" for g in genotypes)
    if listing.is_file() and listing.read_text() != text:
        raise SystemExit(f"{out} holds other genotypes; use another --out or the same arguments")
    assert [parse_genotype(line) for line in text.splitlines()] == genotypes
    scores_path, summary_path = out / "scores.csv", out / "proxy_rank.json"
    wall_path = out / "wall_seconds.json"

    def merged() -> tuple[dict[str, dict[int, float]], dict[str, float]]:
        # read afresh each time: a study in another process may have added rows since
        others = [(d, *read_study(d, text)) for d in args.scores_from]
        studies = [(out, read_scores(scores_path)), *((d, rows) for d, rows, _ in others)]
        walls = [read_wall_seconds(wall_path), *(wall for _, _, wall in others)]
        return merge_scores(studies, set(names)), sum_wall_seconds(walls)

    done = merged()[0]  # another study refused before anything is written or trained
    out.mkdir(parents=True, exist_ok=True)
    listing.write_text(text)
    if not args.no_train:
        dataset = load_dataset(data)
        for fidelity in fidelities:
            todo = [i for i in range(len(genotypes)) if i not in done[fidelity.name]]
            if todo:
                print(f"{fidelity.name}: training {len(todo)} of {len(genotypes)}",
                      file=sys.stderr)  # fmt: skip
                train_fidelity(fidelity, settings[fidelity.name], dataset, genotypes, todo,
                               scores_path, wall_path)  # fmt: skip
    by, seconds = merged()
    k = args.top or max(1, len(genotypes) // 4)
    reference = by[args.reference.name]
    free = [float(normal_free_edges(g)) for g in genotypes]
    table = {
        f.name: fidelity_row(f, by[f.name], reference, free, k, seconds.get(f.name, 0.0))
        for f in fidelities
    }
    command = shlex.join(["python", "-m", "benchmarks.proxy_rank", *(argv or sys.argv[1:])])
    summary = {
        "config": args.config, "overrides": list(base), "genotypes": len(genotypes),
        "seed": args.seed, "reference": args.reference.name, "wall_seconds": seconds,
        "scores_from": [str(d) for d in args.scores_from], "fidelities": table,
        "command": command,
    }  # fmt: skip
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    print_table(table, k, len(genotypes))
    print(f"(normal-cell free edges of the {len(genotypes)} genotypes: mean "
          f"{sum(free) / len(free):.2f})")  # fmt: skip
    return summary


if __name__ == "__main__":
    main()
