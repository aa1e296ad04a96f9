#!/bin/bash
# Session 14: one self-contained device call of the end-to-end search (issue 21).
#   run: bash docs/results/device-s14/search.sh SECS   carry [".data"]   timeout SECS + 25
# (arguments after SECS go to `bnn-nas search`: a CPU smoke test shrinks the search with --set)
# Sets up, restores the search's run directory from docs/results/search-bireal/run.tgz if
# there (then --resume), searches configs/cifar.yaml for SECS seconds with four trials in
# flight (the proxy study's throughput is the same as with 8-16, and fewer in flight lose
# less at the call's end: a trial in flight when the search stops goes back to pending and
# trains again from its start on resume), stops it with SIGINT, and brings the directory
# back as $OUT/run.tgz (a consistent sqlite backup, csvs, config, log; no checkpoints: the
# rungs retrain, promotion: retrain). Commit that file as docs/results/search-bireal/run.tgz.
SECS=$1; shift; T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
export PYTHONUNBUFFERED=1
W=${W:-/tmp/s14}; R=$W/runs/cifar; mkdir -p $W/data $W/runs
tar -xJf .data/cifar10-jpeg.tar.xz -C $W/data
python3 -c "import bnn_nas" 2>/dev/null || python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
S=docs/results/search-bireal/run.tgz
if [ -f $S ]; then mkdir -p $R && tar -xzf $S -C $R; RESUME=--resume; else RESUME=; fi
pack() {
  P=$W/pack; rm -rf $P; mkdir -p $P
  python3 -c "import sqlite3,sys; s=sqlite3.connect(sys.argv[1]); d=sqlite3.connect(sys.argv[2]); s.backup(d); d.close()" \
    $R/trials.sqlite $P/trials.sqlite 2>/dev/null || return 0
  (cd $R && tar -cf - --exclude='*.pt' --exclude='trials.sqlite*' --exclude=rungs .) | tar -xf - -C $P
  (cd $P && tar -czf $OUT/run.tgz.part .) && mv $OUT/run.tgz.part $OUT/run.tgz; }
echo "setup $(el) s ($RESUME)"
# the store is packed every 60 s too, so a call cut short still brings the last minute back
( while sleep 60; do pack; done ) & PACKER=$!
timeout -s INT -k 20 $(( SECS - $(el) - 20 )) bnn-nas search --config configs/cifar.yaml \
  --run-dir $R $RESUME --set data.root=$W/data --set executor.trials_per_device=4 "$@" \
  > $W/search.log 2>&1
echo "search rc $? at $(el) s"
kill $PACKER 2>/dev/null; pack
tr '\r' '\n' < $W/search.log | grep -v '^\s*$' | tail -25
cp $W/search.log $OUT/search.log
bnn-nas status $R 2>&1 | tail -15
