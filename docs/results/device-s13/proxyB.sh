#!/bin/bash
# Session 13, calls 2 and 3 (call 1 lost its work: the machine went back between calls
# while the 15-trial batch was in flight). Self-contained: each call sets up, trains proxy
# B's missing genotypes four at a time (each score is written as its trial ends, so a cut
# keeps every finished trial) for SECS seconds, and brings the folder back.
#   run: bash docs/results/device-s13/proxyB.sh SECS [SEED_DIR]   carry [".data"]
SECS=$1; SEED=${2:-docs/results/proxy-bireal/s12/B}
T0=$(date +%s); export PYTHONUNBUFFERED=1
W=/tmp/s13; mkdir -p $W/data $OUT/proxyB
tar -xJf .data/cifar10-jpeg.tar.xz -C $W/data
python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
cp $SEED/* $OUT/proxyB/
echo "setup $(( $(date +%s) - T0 )) s; $(( $(wc -l < $OUT/proxyB/scores.csv) - 1 )) scores"
P=docs/results/proxy-bireal
timeout $(( SECS - ($(date +%s) - T0) )) python3 -m benchmarks.proxy_rank \
   --config $P/config.yaml --set data.root=$W/data --set executor.trials_per_device=4 \
   --genotypes 24 --out $OUT/proxyB \
   --reference "e40-25k: train.epochs=40 train.warmup_epochs=2 data.search_train_size=25000" \
   2>&1 | tr '\r' '\n' | grep -v '^\s*$' | tail -40
echo "rc ${PIPESTATUS[0]} at $(( $(date +%s) - T0 )) s; $(( $(wc -l < $OUT/proxyB/scores.csv) - 1 )) scores"
