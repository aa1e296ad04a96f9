#!/usr/bin/env bash
# Session 7 last device call: GPU tests on the merged main, then the decisive compile check of issue 20.
set -u
DATA=$(mktemp -d) && tar -xJf .data/cifar10-jpeg.tar.xz -C $DATA
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/gpu.txt
timeout 100 python3 -m pytest -q -o addopts="" tests/test_cuda.py -rs 2>&1 | tail -15 | tee $OUT/test_cuda.log
R="bnn-nas train --config configs/cifar.yaml --model resnet18 --family xnor --epochs 8 --set final.warmup_epochs=1 --set final.lr=0.002 --set final.momentum_cycle=null --set data.root=$DATA"
for v in "eager:--set final.compile=false" "compile-bf16:--set final.compile=true" "compile-fp32:--set final.compile=true --set final.bf16=false"; do
  name=${v%%:*}; flags=${v#*:}
  echo "== $name" | tee -a $OUT/compile8.log
  timeout 125 $R $flags --run-dir runs/c8-$name 2>&1 | grep -vE "it/s|epoch/s\]" | tail -3 | tee -a $OUT/compile8.log
  cp runs/c8-$name/metrics.csv $OUT/c8-$name-metrics.csv 2>/dev/null
done
