#!/bin/bash
# Session 13, call 1 (planned in session 12): setup, then in the background (setsid: it
# outlives the call while the machine stays warm) the portfolio, and the monitor.
#   run: bash docs/results/device-s13/go.sh   carry [".data", ".anchors"]   timeout 600
# Later calls, at once (the warm window is 30 s), no carry:
#   bash /tmp/s13/scripts/mon.sh /tmp/s13 585
T0=$(date +%s)
export PYTHONUNBUFFERED=1
W=/tmp/s13; mkdir -p $W/logs $W/runs $W/data $W/out
tar -xJf .data/cifar10-jpeg.tar.xz -C $W/data
mkdir -p $W/repo && tar --exclude=./.data --exclude=./devjobs --exclude=./runs -cf - . | tar -xf - -C $W/repo
(cd $W/repo && python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1)
cp -r docs/results/device-s13 $W/scripts
git log --oneline -1 2>/dev/null; python3 -c "import torch; print(torch.__version__)"; nvidia-smi -L
echo "setup done at $(( $(date +%s) - T0 )) s"
# device time counts from the machine request (~90 s before this command in s12) and
# between calls: stop the jobs ~40 s before the 1800 s run out
LEFT=$(( 1660 - ($(date +%s) - T0) ))
setsid nohup bash $W/scripts/portfolio.sh $W $LEFT $W/repo > $W/logs/portfolio.log 2>&1 < /dev/null &
sleep 5
bash $W/scripts/mon.sh $W $(( 585 - ($(date +%s) - T0) ))
