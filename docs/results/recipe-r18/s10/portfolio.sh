#!/bin/bash
# Session 10 training portfolio (issue 19), one H200, jobs time-sliced on the one GPU.
# Phase 1: the Cutout teacher (float twin, 200 epochs), two 143-epoch bireal students
# (Cutout alone; Cutout + KD T=4 from the s8 teacher), the GPU tests. Phase 2, once the
# teacher is done: bireal and xnor students, KD T=4 from it + Cutout, as many epochs as
# the time left allows.
W=$1; BUDGET=$2; cd $3
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
export PYTHONUNBUFFERED=1
DATA=$W/data; R=$W/runs; L=$W/logs
train() { local name=$1; shift; echo "start $name at $(el) s: $*"
  timeout $(( BUDGET - $(el) )) bnn-nas train "$@" --set data.root=$DATA --run-dir $R/$name > $L/$name.log 2>&1
  echo "end $name rc=$? at $(el) s"; }
SHORT="--config configs/recipes/short.yaml --model resnet18 --set final.compile=true --set final.cutout=16"
train teacher200c --config configs/recipes/teacher.yaml --model resnet18 --family float \
  --set final.epochs=200 --set final.cutout=16 --set final.compile=true &
PT=$!
train kdT4s8-cut-bireal $SHORT --family bireal \
  --set "final.distill={teacher: $R/teacher150_bf16, loss: kl, temperature: 4.0}" &
train cut-bireal $SHORT --family bireal &
(timeout 420 python3 -m pytest -q -o addopts="" tests/test_cuda.py -rs -p no:warnings -p no:cacheprovider > $L/test_cuda.log 2>&1
 echo "test_cuda rc=$? at $(el) s") &
wait $PT
python3 - "$R" "$W/out" <<'PY'
import shutil, subprocess, sys
from pathlib import Path
from bnn_nas.train.checkpoint import load_checkpoint, save_checkpoint
runs, out = Path(sys.argv[1]), Path(sys.argv[2])
src, dst = runs / "teacher200c", runs / "teacher200c_bf16"
dst.mkdir(exist_ok=True)
state = load_checkpoint(src / "checkpoint.pt")
model = {k: (v.bfloat16() if v.is_floating_point() else v) for k, v in state["model"].items()}
save_checkpoint(dst / "checkpoint.pt", {"model": model, "epoch": state["epoch"]})
for name in ("config.yaml", "report.json", "metrics.csv", "network.yaml"):
    if (src / name).exists():
        shutil.copy(src / name, dst / name)
subprocess.run(f"tar -cf - teacher200c_bf16 | split -b 15M - {out}/teacher200c.tar.part-",
               shell=True, cwd=runs, check=True)
PY
echo "teacher packed at $(el) s"
# Epochs for phase 2: the time left, less what phase 1 still has to do, shared by two KD
# students at ~1.5 s an epoch each on their own (compiled bireal 1.1 s x 1.23 for the teacher).
LEFT_WORK=$(python3 - "$R" <<'PY'
import sys
from pathlib import Path
left = 0.0
for name, per_epoch in (("kdT4s8-cut-bireal", 1.5), ("cut-bireal", 1.2)):
    m = Path(sys.argv[1]) / name / "metrics.csv"
    done = max(0, len(m.read_text().splitlines()) - 1) if m.exists() else 0
    left += max(0, 143 - done) * per_epoch
print(int(left))
PY
)
AVAIL=$(( BUDGET - $(el) - 120 - LEFT_WORK ))
E=$(( AVAIL * 10 / 30 ))
echo "phase 2: $AVAIL s of GPU time for the students (phase 1 still owes $LEFT_WORK s): $E epochs each"
KD="final.distill={teacher: $R/teacher200c, loss: kl, temperature: 4.0}"
if [ $E -ge 143 ]; then
  WU=$(( E * 3 / 10 ))
  train kdT4c-cut-bireal-e$E $SHORT --family bireal --set final.epochs=$E --set final.warmup_epochs=$WU --set "$KD" &
  train kdT4c-cut-xnor-e$E $SHORT --family xnor --set final.epochs=$E --set final.warmup_epochs=$WU --set "$KD" &
else
  E=$(( AVAIL * 10 / 15 )); [ $E -lt 60 ] && E=60; WU=$(( E * 3 / 10 ))
  train kdT4c-cut-bireal-e$E $SHORT --family bireal --set final.epochs=$E --set final.warmup_epochs=$WU --set "$KD" &
fi
wait
echo "DONE at $(el) s"
