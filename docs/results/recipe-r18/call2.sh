#!/bin/bash
# recipe call 2: the distillation benchmark, SGD's graphed step, and the ablation
# "distillation alone" (short recipe + the call-1 teacher, 143 epochs)
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
export PYTHONUNBUFFERED=1
DATA=$(mktemp -d) && tar -xJf .data/cifar10-jpeg.tar.xz -C $DATA
python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
mkdir -p runs && cat devjobs/recipe/teacher/teacher.tar.part-* | tar -xf - -C runs
ls -la runs/teacher_bf16; nvidia-smi -L; date -u
echo "setup done at $(el) s"
timeout 90 python3 -m benchmarks.train_step --only resnet18_bireal,resnet18_xnor \
  --momentum-cycle --distill --steps 40 2>&1 | tee $OUT/bench_distill.log | tail -8
timeout 45 python3 -m benchmarks.train_step --only resnet18_bireal,resnet18_xnor --sgd \
  --steps 40 2>&1 | tee $OUT/bench_sgd.log | tail -4
echo "benchmarks done at $(el) s"
clean() { tr '\r' '\n' | grep -v '^ *[0-9]*%|' | grep -v '^$'; }
LEFT=$(( 470 - $(el) ))
echo "student starts at $(el) s with ${LEFT} s left"
timeout $LEFT bnn-nas train --config configs/recipes/short.yaml --model resnet18 \
  --family bireal --set data.root=$DATA \
  --set "final.distill={teacher: runs/teacher_bf16, loss: kl, temperature: 1.0}" \
  --set final.checkpoint_every=1 --run-dir runs/short-kd-bireal 2>&1 | clean | tail -5
echo "student done at $(el) s"
rm -f runs/*/checkpoint.pt
tar -czf $OUT/results.tgz runs/short-kd-bireal
tail -2 runs/short-kd-bireal/metrics.csv
