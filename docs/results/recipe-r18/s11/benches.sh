#!/bin/bash
# Session 11 step benchmarks (issue 20), run beside the training portfolio: each compiles
# while the trainings run (compilation is CPU work), then the trainings are paused
# (SIGSTOP, and the GPU tests) from its "warm-up" line until it ends, so its timed steps
# have the GPU alone.
W=$1; cd $2
export PYTHONUNBUFFERED=1
L=$W/logs
bench() { local name=$1; shift
  echo "bench $name: $*"
  timeout 600 python3 -m benchmarks.train_step "$@" > $L/$name.log 2>&1 &
  local pid=$!
  while kill -0 $pid 2>/dev/null && ! grep -q "warm-up" $L/$name.log; do sleep 0.2; done
  pkill -STOP -f "bnn-nas train|tests/test_cuda.py"
  wait $pid; echo "bench $name rc=$?"
  pkill -CONT -f "bnn-nas train|tests/test_cuda.py"
  grep -E "images/s|warm-up" $L/$name.log; }
G="--genotype docs/results/search-cifar/genotype.yaml --config docs/results/search-cifar/config.yaml"
E="--genotype $W/scripts/ebnas_genotype.yaml --config $W/scripts/ebnas_final.yaml"
bench genotype_ops --compile --compile-scope ops --only genotype $G --momentum-cycle --steps 500
bench genotype_whole --compile --only genotype $G --momentum-cycle --steps 500
bench genotype_eager --only genotype $G --momentum-cycle --steps 300
bench ebnas56_eager --only genotype $E --momentum-cycle --steps 300
bench ebnas56_ops --compile --compile-scope ops --only genotype $E --momentum-cycle --steps 300
echo "BENCHES DONE"
