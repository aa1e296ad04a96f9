#!/bin/bash
# Monitor: a line per job every 60 s until DONE or the seconds given; then packs logs and
# the proxy study's files into $OUT/results.tgz.
W=$1; SECS=$2; T0=$(date +%s)
pack() { (cd $W && tar -czf $OUT/results.tgz logs out) 2>/dev/null; ls -la $OUT; }
while true; do
  now=$(( $(date +%s) - T0 ))
  echo "--- mon +$now s  $(date +%H:%M:%S)  gpu $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader)"
  for d in proxyA proxyB; do
    f=$W/out/$d/scores.csv
    [ -f $f ] && echo "  $d: $(( $(wc -l < $f) - 1 )) scores; last $(tail -1 $f | cut -c1-90)"
  done
  grep -E "^(start|end|test_cuda|DONE)" $W/logs/portfolio.log | tail -4 | sed 's/^/  /' | cut -c1-200
  grep -q "^DONE" $W/logs/portfolio.log && break
  [ $(( $(date +%s) - T0 + 60 )) -ge $SECS ] && break
  sleep 60
done
tail -3 $W/logs/test_cuda.log 2>/dev/null
pack
