#!/bin/bash
# Session 10, call 1: setup; the searched 8x32 network's compiled step on the idle GPU
# (issue 20); then the training portfolio in the background (setsid: it outlives this call
# while the machine stays warm) and the monitor.
T0=$(date +%s)
export PYTHONUNBUFFERED=1
W=/tmp/s10; mkdir -p $W/logs $W/runs $W/data $W/out
tar -xJf .data/cifar10-jpeg.tar.xz -C $W/data
cat devjobs/s8/teacher/teacher150.tar.part-* | tar -xf - -C $W/runs
mkdir -p $W/repo && tar --exclude=./.data --exclude=./devjobs --exclude=./runs -cf - . | tar -xf - -C $W/repo
# a private copy of the tree: later calls re-send the working tree, the jobs keep this one
(cd $W/repo && python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1)
cp -r devjobs/s10 $W/scripts
git log --oneline -1 2>/dev/null; python3 -c "import torch; print(torch.__version__)"
echo "setup done at $(( $(date +%s) - T0 )) s"
timeout 170 python3 -m benchmarks.train_step --compile --only genotype --genotype docs/results/search-cifar/genotype.yaml \
  --config docs/results/search-cifar/config.yaml --momentum-cycle --steps 50 --profile > $W/logs/train_step_genotype_compiled.log 2>&1
grep "images/s" $W/logs/train_step_genotype_compiled.log
echo "bench done at $(( $(date +%s) - T0 )) s"
setsid nohup bash $W/scripts/portfolio.sh $W 1290 $W/repo > $W/logs/portfolio.log 2>&1 < /dev/null &
sleep 5
bash $W/scripts/mon.sh $W $(( 585 - ($(date +%s) - T0) ))
