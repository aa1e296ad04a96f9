#!/bin/bash
# Session 13 portfolio, one H200:
# - the GPU tests (tests/test_cuda.py: the new memory-across-trials test among them), beside
# - the proxy study's reference (issue 21): B's command again on B's folder (seeded from
#   docs/results/proxy-bireal/s12/B), so only its 15 missing genotypes train (~17 GPU-min);
# - then the end-to-end search of configs/cifar.yaml (issue 21) with the time left,
#   resumable: mon.sh packs a consistent copy of its store for the next session
#   (commit it as docs/results/search-bireal/run).
W=$1; BUDGET=$2; cd $3
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
export PYTHONUNBUFFERED=1
L=$W/logs; P=docs/results/proxy-bireal
mkdir -p $W/out/proxyB && cp $P/s12/B/* $W/out/proxyB/
REF="e40-25k: train.epochs=40 train.warmup_epochs=2 data.search_train_size=25000"
(timeout 420 python3 -m pytest -q -o addopts="" tests/test_cuda.py -rs -p no:warnings -p no:cacheprovider > $L/test_cuda.log 2>&1
 echo "test_cuda rc=$? at $(el) s") &
# B first, alone but for the tests: its 15 trials in one batch (beside another process
# each would get half the GPU: two 8-trial batches took ~850 s each beside A in s12)
echo "start proxyB at $(el) s"
timeout $(( BUDGET - $(el) )) python3 -m benchmarks.proxy_rank --config $P/config.yaml \
   --set data.root=$W/data --set executor.trials_per_device=15 --genotypes 24 \
   --out $W/out/proxyB --reference "$REF" > $L/proxyB.log 2>&1
echo "end proxyB rc=$? at $(el) s"
# then the end-to-end search with what is left (it resumes next session)
S=docs/results/search-bireal/run; R=$W/runs/cifar
if [ -f $S/trials.sqlite ]; then mkdir -p $R && cp -r $S/. $R/; RESUME=--resume; else RESUME=; fi
echo "start search ($RESUME) at $(el) s"
(timeout -s INT $(( BUDGET - $(el) )) bnn-nas search --config configs/cifar.yaml --run-dir $R \
   $RESUME --set data.root=$W/data > $L/search.log 2>&1; echo "end search rc=$? at $(el) s") &
wait
echo "DONE at $(el) s"
