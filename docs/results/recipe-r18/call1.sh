#!/bin/bash
# recipe call 1: float ResNet-18 teacher, then bireal ResNet-18 under the literature recipe
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
export PYTHONUNBUFFERED=1
DATA=$(mktemp -d) && tar -xJf .data/cifar10-jpeg.tar.xz -C $DATA
python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
nvidia-smi -L; python3 -c "import torch; print(torch.__version__)"; date -u
echo "setup done at $(el) s"
timeout 120 python3 -m pytest -q -x tests/test_cuda.py -k "teacher" 2>&1 | tail -3
echo "gpu test done at $(el) s"
clean() { tr '\r' '\n' | grep -v '^ *[0-9]*%|' | grep -v '^$'; }
bnn-nas train --config configs/recipes/teacher.yaml --model resnet18 --family float \
  --set data.root=$DATA --run-dir runs/teacher 2>&1 | clean | tail -5
echo "teacher done at $(el) s"
python3 - <<'PY'
import shutil, torch
from pathlib import Path
from bnn_nas.train.checkpoint import load_checkpoint, save_checkpoint
src, dst = Path("runs/teacher"), Path("runs/teacher_bf16")
dst.mkdir(exist_ok=True)
state = load_checkpoint(src / "checkpoint.pt")
model = {k: (v.bfloat16() if v.is_floating_point() else v) for k, v in state["model"].items()}
save_checkpoint(dst / "checkpoint.pt", {"model": model, "epoch": state["epoch"]})
for name in ("config.yaml", "report.json", "metrics.csv"):
    shutil.copy(src / name, dst / name)
print("teacher bf16", (dst / "checkpoint.pt").stat().st_size)
PY
(cd runs && tar -cf - teacher_bf16 | split -b 15M - $OUT/teacher.tar.part-)
LEFT=$(( 575 - $(el) ))
echo "student starts at $(el) s with ${LEFT} s left"
timeout $LEFT bnn-nas train --config configs/recipes/literature.yaml --model resnet18 \
  --family bireal --set data.root=$DATA --set final.distill.teacher=runs/teacher \
  --set final.checkpoint_every=1 --run-dir runs/lit-bireal 2>&1 | clean | tail -5
echo "student done at $(el) s"
rm -f runs/*/checkpoint.pt
tar -czf $OUT/results.tgz runs/teacher runs/lit-bireal
tail -3 runs/lit-bireal/metrics.csv; cat runs/lit-bireal/report.json 2>/dev/null | head -12
