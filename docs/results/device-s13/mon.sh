#!/bin/bash
# Monitor: a line per job every 60 s until DONE or the seconds given; packs the logs, the
# proxy study's folder and a consistent copy of the search's store (sqlite backup; no
# checkpoints) into $OUT/results.tgz at every line, so a call its device time cuts short
# still brings back the last minute's state (written as results.tgz.part, then renamed).
W=$1; SECS=$2; T0=$(date +%s)
pack() {
  R=$W/runs/cifar; C=$W/out/search-run; rm -rf $C; mkdir -p $C
  if [ -f $R/trials.sqlite ]; then
    python3 -c "import sqlite3,sys; s=sqlite3.connect(sys.argv[1]); d=sqlite3.connect(sys.argv[2]); s.backup(d); d.close()" $R/trials.sqlite $C/trials.sqlite
    for f in config.yaml .bnn-nas-run trials.csv pareto.csv curves.csv search.log genotype.yaml; do
      [ -f $R/$f ] && cp $R/$f $C/; done
  fi
  (cd $W && tar -czf $OUT/results.tgz.part logs out) 2>/dev/null &&
    mv $OUT/results.tgz.part $OUT/results.tgz; }
while true; do
  now=$(( $(date +%s) - T0 ))
  echo "--- mon +$now s  $(date +%H:%M:%S)  gpu $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader)"
  f=$W/out/proxyB/scores.csv; [ -f $f ] && echo "  proxyB: $(( $(wc -l < $f) - 1 )) scores; last $(tail -1 $f | cut -c1-80)"
  [ -f $W/runs/cifar/trials.csv ] && echo "  search: $(( $(wc -l < $W/runs/cifar/trials.csv) - 1 )) trial rows"
  tail -c 300 $W/logs/search.log 2>/dev/null | tr '\r' '\n' | tail -1 | cut -c1-160 | sed 's/^/  /'
  grep -E "^(start|end|test_cuda|DONE)" $W/logs/portfolio.log | tail -4 | sed 's/^/  /' | cut -c1-200
  pack
  grep -q "^DONE" $W/logs/portfolio.log && break
  [ $(( $(date +%s) - T0 + 60 )) -ge $SECS ] && break
  sleep 60
done
tail -3 $W/logs/test_cuda.log 2>/dev/null
pack; ls -la $OUT
