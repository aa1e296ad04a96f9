#!/bin/bash
# Session 12, call 1: setup; compile_reuse alone (issue 20); then in the background (setsid:
# it outlives the call while the machine stays warm) the proxy study (issue 21) and the GPU
# tests; the monitor. Carry: [".data", "devjobs/s12"]. Later calls, at once, no carry:
#   bash /tmp/s12/scripts/mon.sh /tmp/s12 585
T0=$(date +%s)
export PYTHONUNBUFFERED=1
W=/tmp/s12; mkdir -p $W/logs $W/runs $W/data $W/out
tar -xJf .data/cifar10-jpeg.tar.xz -C $W/data
mkdir -p $W/repo && tar --exclude=./.data --exclude=./devjobs --exclude=./runs -cf - . | tar -xf - -C $W/repo
(cd $W/repo && python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1)
cp -r devjobs/s12/scripts $W/scripts
git log --oneline -1 2>/dev/null; python3 -c "import torch; print(torch.__version__)"; nvidia-smi -L
echo "setup done at $(( $(date +%s) - T0 )) s"
cd $W/repo
for v in eager keep; do
  lim=60; [ $v = keep ] && lim=260
  s=$(date +%s)
  timeout $lim python3 -m benchmarks.compile_reuse --candidates 4 --variants $v --steps 50 \
    > $W/logs/compile_reuse_$v.log 2> $W/logs/compile_reuse_$v.err
  echo "compile_reuse $v rc=$? in $(( $(date +%s) - s )) s"; tail -c 3000 $W/logs/compile_reuse_$v.log
done
cp $W/logs/compile_reuse_* $OUT/ 2>/dev/null
LEFT=$(( 1700 - ($(date +%s) - T0) ))
setsid nohup bash $W/scripts/portfolio.sh $W $LEFT $W/repo > $W/logs/portfolio.log 2>&1 < /dev/null &
sleep 5
bash $W/scripts/mon.sh $W $(( 585 - ($(date +%s) - T0) ))
