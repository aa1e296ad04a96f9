#!/bin/bash
# Monitor of the portfolio: a line per run every 60 s until DONE or the seconds given; then
# packs logs, metrics and reports (no checkpoints) and the teacher's parts into $OUT.
W=$1; SECS=$2; T0=$(date +%s)
pack() { (cd $W && tar -czf $OUT/results.tgz logs $(ls -d runs/*/ | while read d; do ls $d/*.csv $d/*.json $d/*.yaml 2>/dev/null; done)) 2>/dev/null
  cp $W/out/teacher*.tar.part-* $OUT/ 2>/dev/null; ls $OUT; }
while true; do
  now=$(( $(date +%s) - T0 ))
  echo "--- mon +$now s  $(date +%H:%M:%S)  gpu $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader)"
  for m in $W/runs/*/metrics.csv; do
    [ -f "$m" ] && echo "  $(basename $(dirname $m)): $(tail -1 $m | cut -d, -f1,4,6,7 )"
  done
  grep -E "^(start|end|test_cuda|phase|teacher|DONE)" $W/logs/portfolio.log | tail -4 | sed 's/^/  /' | cut -c1-200
  grep -E "^bench|images/s|warm-up|BENCHES" $W/logs/benches.log 2>/dev/null | tail -4 | sed 's/^/  /'
  grep -q "^DONE" $W/logs/portfolio.log && break
  [ $(( $(date +%s) - T0 + 60 )) -ge $SECS ] && break
  sleep 60
done
tail -3 $W/logs/test_cuda.log 2>/dev/null
pack
