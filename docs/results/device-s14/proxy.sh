#!/bin/bash
# One self-contained device call of a proxy study (docs/results/proxy-bireal/config.yaml,
# 24 genotypes, four trials in flight): sets up, copies SEED (a study folder from an
# earlier call, or -) to $OUT/study, runs proxy_rank there for SECS seconds with the
# arguments given (fidelities, --reference, --scores-from ...), each score written as its
# trial ends, and brings the folder back.
#   run: bash docs/results/device-s14/proxy.sh SECS SEED ARGS...   carry [".data"]
SECS=$1; SEED=$2; shift 2; T0=$(date +%s); export PYTHONUNBUFFERED=1
W=/tmp/s14p; mkdir -p $W/data $OUT/study
tar -xJf .data/cifar10-jpeg.tar.xz -C $W/data
python3 -c "import bnn_nas" 2>/dev/null || python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
[ "$SEED" != - ] && cp $SEED/* $OUT/study/
echo "setup $(( $(date +%s) - T0 )) s"
timeout $(( SECS - ($(date +%s) - T0) )) python3 -m benchmarks.proxy_rank \
   --config docs/results/proxy-bireal/config.yaml --set data.root=$W/data \
   --set executor.trials_per_device=4 --genotypes 24 --out $OUT/study "$@" \
   2>&1 | tr '\r' '\n' | grep -v '^\s*$' | tail -40
echo "rc ${PIPESTATUS[0]} at $(( $(date +%s) - T0 )) s; $(( $(wc -l < $OUT/study/scores.csv) - 1 )) scores"
rm -rf $OUT/study/checkpoints
