#!/bin/bash
# Session 8 call C: the binarizers as custom ops under torch.compile: one step, GPU tests, 8 epochs compiled + graphed, speed
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
export PYTHONUNBUFFERED=1
DATA=$(mktemp -d) && tar -xJf .data/cifar10-jpeg.tar.xz -C $DATA
python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
git log --oneline -1 2>/dev/null; echo "setup done at $(el) s"
timeout 100 python3 devjobs/s8/onestep.py xnor 2>&1 | grep -v -i warn | tee $OUT/onestep_customop_xnor_f32.log
echo "one step done at $(el) s"
timeout 150 python3 -m pytest -q -o addopts="" tests/test_cuda.py -rs -x 2>&1 | tail -8 | tee $OUT/test_cuda.log
echo "gpu tests done at $(el) s"
clean() { tr '\r' '\n' | grep -v '^ *[0-9]*%|' | grep -v '^$' | grep -vE "it/s|epoch/s\]"; }
R="--config configs/cifar.yaml --model resnet18 --family xnor --epochs 8 --set final.warmup_epochs=1 --set final.lr=0.002 --set final.momentum_cycle=null --set data.root=$DATA"
echo "== compile+graph at $(el) s" | tee -a $OUT/bisect8.log
timeout 150 bnn-nas train $R --set final.compile=true --run-dir runs/c8-compile-graph 2>&1 | clean | tail -3 | tee -a $OUT/bisect8.log
cp runs/c8-compile-graph/metrics.csv $OUT/c8-compile-graph-metrics.csv
echo "8 epochs done at $(el) s"
LEFT=$(( 540 - $(el) ))
echo "bench starts at $(el) s with ${LEFT} s left"
timeout $LEFT python3 -m benchmarks.train_step --compile --only genotype,resnet18_xnor,resnet18_bireal \
  --genotype docs/results/search-cifar/genotype.yaml --momentum-cycle --steps 50 2>&1 | grep -v -i warn | tee $OUT/train_step_compile.log | tail -12
echo "all done at $(el) s"
