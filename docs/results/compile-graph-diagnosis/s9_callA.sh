#!/bin/bash
# Session 9 call A (issue 20): GPU tests; 143-epoch compiled+graphed `final` runs of binary ResNet-18
# (bireal, xnor; seed 0) against the eager five-seed (bireal) / three-seed (xnor) figures of
# docs/results/final-r18-schedules.
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
export PYTHONUNBUFFERED=1
DATA=$(mktemp -d) && tar -xJf .data/cifar10-jpeg.tar.xz -C $DATA
python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
echo "setup done at $(el) s"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/device.txt
python3 -c "import torch,triton;print(torch.__version__, triton.__version__)" | tee -a $OUT/device.txt
timeout 150 python3 -m pytest -q -o addopts="" tests/test_cuda.py -rs -p no:warnings -p no:logging 2>&1 | tail -8 | tee $OUT/test_cuda.log
echo "tests done at $(el) s"
clean() { tr '\r' '\n' | grep -v '^ *[0-9]*%|' | grep -v '^$' | grep -vE "it/s|epoch/s\]"; }
for fam in bireal xnor; do
  LEFT=$(( 585 - $(el) ))
  echo "== $fam compile=true at $(el) s (limit $LEFT)" | tee -a $OUT/final143.log
  timeout $LEFT bnn-nas train --config configs/cifar.yaml --model resnet18 --family $fam \
    --set final.compile=true --set data.root=$DATA --run-dir runs/c143-$fam 2>&1 | clean | tail -4 | tee -a $OUT/final143.log
  mkdir -p $OUT/c143-$fam && cp runs/c143-$fam/*.csv runs/c143-$fam/*.yaml runs/c143-$fam/*.json $OUT/c143-$fam/ 2>/dev/null
done
echo "all done at $(el) s"
