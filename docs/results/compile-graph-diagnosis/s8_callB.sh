#!/bin/bash
# Session 8 call B: where Dynamo's step leaves eager (one step, then 8-epoch runs), then bireal short + KD from the 150-epoch teacher
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
export PYTHONUNBUFFERED=1
DATA=$(mktemp -d) && tar -xJf .data/cifar10-jpeg.tar.xz -C $DATA
python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
mkdir -p runs && cat devjobs/s8/teacher/teacher150.tar.part-* | tar -xf - -C runs && ls runs
echo "setup done at $(el) s"
timeout 100 python3 devjobs/s8/onestep.py xnor 2>&1 | grep -v Warning | tee $OUT/onestep_xnor_f32.log
echo "one step done at $(el) s"
clean() { tr '\r' '\n' | grep -v '^ *[0-9]*%|' | grep -v '^$' | grep -vE "it/s|epoch/s\]"; }
R="configs/cifar.yaml --model resnet18 --family xnor --epochs 8 --set final.warmup_epochs=1 --set final.lr=0.002 --set final.momentum_cycle=null --set data.root=$DATA"
run8() {
  name=$1; shift
  echo "== $name at $(el) s" | tee -a $OUT/bisect8.log
  timeout 130 "$@" --run-dir runs/c8-$name 2>&1 | clean | tail -3 | tee -a $OUT/bisect8.log
  cp runs/c8-$name/metrics.csv $OUT/c8-$name-metrics.csv 2>/dev/null
}
BNN_DIAG_NOFUSED=1 run8 eager-aten python3 devjobs/s8/with_backend.py none train --config $R
BNN_DIAG_DISABLE_BIN=1 run8 dynamo-nobin python3 devjobs/s8/with_backend.py eager train --config $R --set final.compile=true
echo "bisect done at $(el) s"
LEFT=$(( 565 - $(el) ))
echo "student starts at $(el) s with ${LEFT} s left"
timeout $LEFT bnn-nas train --config configs/recipes/short.yaml --model resnet18 \
  --family bireal --set data.root=$DATA \
  --set "final.distill={teacher: runs/teacher150_bf16, loss: kl, temperature: 1.0}" \
  --set final.checkpoint_every=1 --run-dir runs/short-kd150-bireal 2>&1 | clean | tail -4
echo "student done at $(el) s"
rm -f runs/*/checkpoint.pt
tar -czf $OUT/short-kd150-bireal.tgz runs/short-kd150-bireal
tail -2 runs/short-kd150-bireal/metrics.csv
echo "all done at $(el) s"
