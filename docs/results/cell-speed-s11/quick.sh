#!/bin/bash
# Session 11, the last ~270 s of device time (issue 20 and 21 calibration): trials per
# GPU-hour of bnn_darts 8x16 on 8 streams against the lean reference, then ebnas 8x28.
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
export PYTHONUNBUFFERED=1
DATA=$(mktemp -d) && tar -xJf .data/cifar10-jpeg.tar.xz -C $DATA
python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
echo "setup done at $(el) s"
timeout 150 python3 -m benchmarks.trial --data-root $DATA --trials-per-device 8 --rounds 1 \
  --reference "devjobs/s11b/lean_trial.py --procs 1 --graph --streams 8 --batch 256" 2>&1 \
  | grep -v -i warn | tee $OUT/trial_bnn_darts.log | tail -6
echo "bnn_darts done at $(el) s"
timeout $(( 255 - $(el) )) python3 -m benchmarks.trial --data-root $DATA --trials-per-device 8 --rounds 1 \
  --set search_space=ebnas 2>&1 | grep -v -i warn | tee $OUT/trial_ebnas.log | tail -6
echo "ebnas done at $(el) s"
