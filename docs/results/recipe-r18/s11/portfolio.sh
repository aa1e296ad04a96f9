#!/bin/bash
# Session 11 training portfolio (issue 19), one H200, jobs time-sliced on the one GPU.
# Phase 1: a float ResNet-34 teacher (`teacher`: Cutout, 200 epochs, compiled); a
# `literature` bireal student from session 10's twin teacher (91.88%) with CutMix (the mix
# ablation; skipped if the tree has no `mix` setting); the GPU tests. Phase 2, once the
# ResNet-34 teacher is done: bireal and xnor `literature` students from it (with CutMix if
# the ablation beat 91.06% by more than 0.2), as many epochs as the time left allows.
W=$1; BUDGET=$2; cd $3
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
export PYTHONUNBUFFERED=1
DATA=$W/data; R=$W/runs; L=$W/logs
train() { local name=$1; shift; echo "start $name at $(el) s: $*"
  timeout $(( BUDGET - $(el) )) bnn-nas train "$@" --set data.root=$DATA --run-dir $R/$name > $L/$name.log 2>&1
  echo "end $name rc=$? at $(el) s"; }
LIT="--config configs/recipes/literature.yaml --model resnet18"
MIXV="final.mix={kind: cutmix, alpha: 1.0}"
grep -q "class MixConfig" bnn_nas/config.py && HAVE_MIX=1 || HAVE_MIX=0
train teacher34c --config configs/recipes/teacher.yaml --model resnet34 --family float &
PT=$!
if [ $HAVE_MIX = 1 ]; then
  train lit-cutmix-bireal $LIT --family bireal --set "final.distill.teacher=$R/teacher200c_bf16" --set "$MIXV" &
  PM=$!
fi
(timeout 420 python3 -m pytest -q -o addopts="" tests/test_cuda.py -rs -p no:warnings -p no:cacheprovider > $L/test_cuda.log 2>&1
 echo "test_cuda rc=$? at $(el) s") &
wait $PT
python3 - "$R" "$W/out" <<'PY'
import shutil, subprocess, sys
from pathlib import Path
from bnn_nas.train.checkpoint import load_checkpoint, save_checkpoint
runs, out = Path(sys.argv[1]), Path(sys.argv[2])
src, dst = runs / "teacher34c", runs / "teacher34c_bf16"
dst.mkdir(exist_ok=True)
state = load_checkpoint(src / "checkpoint.pt")
model = {k: (v.bfloat16() if v.is_floating_point() else v) for k, v in state["model"].items()}
save_checkpoint(dst / "checkpoint.pt", {"model": model, "epoch": state["epoch"]})
for name in ("config.yaml", "report.json", "metrics.csv", "network.yaml"):
    if (src / name).exists():
        shutil.copy(src / name, dst / name)
subprocess.run(f"tar -cf - teacher34c_bf16 | split -b 15M - {out}/teacher34c.tar.part-",
               shell=True, cwd=runs, check=True)
PY
echo "teacher packed at $(el) s"
# wait for the CutMix ablation when it is close to done, to choose phase 2's augmentation
USE_MIX=0
if [ $HAVE_MIX = 1 ]; then
  M=$R/lit-cutmix-bireal/metrics.csv
  DONE=$( [ -f $M ] && echo $(( $(wc -l < $M) - 1 )) || echo 0 )
  if [ $DONE -ge 160 ]; then wait $PM; fi
  ACC=$(python3 -c "import json;print(json.load(open('$R/lit-cutmix-bireal/report.json'))['test_accuracy'])" 2>/dev/null || echo 0)
  python3 -c "import sys; sys.exit(0 if float('$ACC') > 0.9126 else 1)" && USE_MIX=1
  echo "cutmix ablation: $DONE epochs, test $ACC -> phase 2 mix=$USE_MIX"
fi
LEFT_WORK=0
[ $HAVE_MIX = 1 ] && kill -0 $PM 2>/dev/null && LEFT_WORK=$(( (185 - DONE) * 13 / 10 ))
AVAIL=$(( BUDGET - $(el) - 120 - LEFT_WORK ))
# a student with the ResNet-34 teacher inside its step: ~1.6 s an epoch alone (estimate)
E=$(( AVAIL * 10 / 32 )); [ $E -gt 300 ] && E=300
WU=$(( E * 3 / 10 ))
echo "phase 2: $AVAIL s for two students: $E epochs each"
EXTRA=(); [ $USE_MIX = 1 ] && EXTRA=(--set "$MIXV")
if [ $E -ge 143 ]; then
  for fam in bireal xnor; do
    train lit34-$fam-e$E $LIT --family $fam --set final.epochs=$E --set final.warmup_epochs=$WU \
      --set "final.distill.teacher=$R/teacher34c" "${EXTRA[@]}" &
  done
else
  E=$(( AVAIL * 10 / 16 )); [ $E -lt 60 ] && E=60; WU=$(( E * 3 / 10 ))
  train lit34-bireal-e$E $LIT --family bireal --set final.epochs=$E --set final.warmup_epochs=$WU \
    --set "final.distill.teacher=$R/teacher34c" "${EXTRA[@]}" &
fi
wait
echo "DONE at $(el) s"
