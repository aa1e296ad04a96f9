#!/bin/bash
# Session 8 call A: bisect the compiled step (8-epoch xnor ResNet-18 runs), then a 150-epoch float teacher
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
export PYTHONUNBUFFERED=1
DATA=$(mktemp -d) && tar -xJf .data/cifar10-jpeg.tar.xz -C $DATA
python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch; print(torch.__version__)"
echo "setup done at $(el) s"
clean() { tr '\r' '\n' | grep -v '^ *[0-9]*%|' | grep -v '^$' | grep -vE "it/s|epoch/s\]"; }
R="configs/cifar.yaml --model resnet18 --family xnor --epochs 8 --set final.warmup_epochs=1 --set final.lr=0.002 --set final.momentum_cycle=null --set data.root=$DATA"
run8() {  # name, launcher..., -- flags
  name=$1; shift
  echo "== $name at $(el) s" | tee -a $OUT/bisect8.log
  timeout 130 "$@" --run-dir runs/c8-$name 2>&1 | clean | tail -2 | tee -a $OUT/bisect8.log
  cp runs/c8-$name/metrics.csv $OUT/c8-$name-metrics.csv 2>/dev/null
}
run8 eager-nograph bnn-nas train --config $R --set final.cuda_graph=false
run8 dynamo-eager python3 devjobs/s8/with_backend.py eager train --config $R --set final.compile=true
run8 aot-eager python3 devjobs/s8/with_backend.py aot_eager train --config $R --set final.compile=true
echo "bisect done at $(el) s"
timeout 90 python3 -m benchmarks.step_agreement --model resnet18 --steps 4 --backends inductor 2>&1 | grep -v "^{" | tee $OUT/sa_r18_f64.log
echo "step agreement done at $(el) s"
LEFT=$(( 560 - $(el) ))
EP=150
echo "teacher starts at $(el) s with ${LEFT} s left"
timeout $LEFT bnn-nas train --config configs/recipes/teacher.yaml --model resnet18 --family float \
  --set data.root=$DATA --set final.epochs=$EP --run-dir runs/teacher150 2>&1 | clean | tail -4
echo "teacher done at $(el) s"
python3 - <<'PY'
import shutil
from pathlib import Path
from bnn_nas.train.checkpoint import load_checkpoint, save_checkpoint
src, dst = Path("runs/teacher150"), Path("runs/teacher150_bf16")
dst.mkdir(exist_ok=True)
state = load_checkpoint(src / "checkpoint.pt")
model = {k: (v.bfloat16() if v.is_floating_point() else v) for k, v in state["model"].items()}
save_checkpoint(dst / "checkpoint.pt", {"model": model, "epoch": state["epoch"]})
for name in ("config.yaml", "report.json", "metrics.csv"):
    shutil.copy(src / name, dst / name)
print("teacher bf16", (dst / "checkpoint.pt").stat().st_size)
PY
(cd runs && tar -cf - teacher150_bf16 | split -b 15M - $OUT/teacher150.tar.part-)
rm -f runs/teacher150/checkpoint.pt; tar -czf $OUT/teacher150.tgz runs/teacher150
tail -3 runs/teacher150/metrics.csv
echo "all done at $(el) s"
