#!/bin/bash
# Session 11, call 1: setup; the training portfolio (issue 19) and the cell networks' step
# benchmarks (issue 20: benches.sh, which pauses the trainings while it times) in the
# background (setsid: they outlive the call while the machine stays warm); the monitor.
# Carry: [".data", "devjobs/s11", "devjobs/s10/teacher"]. Later calls, at once, no carry:
#   bash /tmp/s11/scripts/mon.sh /tmp/s11 585
T0=$(date +%s)
export PYTHONUNBUFFERED=1
W=/tmp/s11; mkdir -p $W/logs $W/runs $W/data $W/out
tar -xJf .data/cifar10-jpeg.tar.xz -C $W/data
cat devjobs/s10/teacher/teacher200c.tar.part-* | tar -xf - -C $W/runs
mkdir -p $W/repo && tar --exclude=./.data --exclude=./devjobs --exclude=./runs -cf - . | tar -xf - -C $W/repo
(cd $W/repo && python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1)
cp -r devjobs/s11 $W/scripts
git log --oneline -1 2>/dev/null; python3 -c "import torch; print(torch.__version__)"
echo "setup done at $(( $(date +%s) - T0 )) s"
LEFT=$(( 1500 - ($(date +%s) - T0) ))
setsid nohup bash $W/scripts/portfolio.sh $W $LEFT $W/repo > $W/logs/portfolio.log 2>&1 < /dev/null &
sleep 60  # let the trainings start (and compile) first
setsid nohup bash $W/scripts/benches.sh $W $W/repo > $W/logs/benches.log 2>&1 < /dev/null &
sleep 5
bash $W/scripts/mon.sh $W $(( 585 - ($(date +%s) - T0) ))
