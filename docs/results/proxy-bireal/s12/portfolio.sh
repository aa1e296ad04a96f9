#!/bin/bash
# Session 12 portfolio, one H200, processes time-sliced on the one GPU: the proxy study
# (issue 21) as two processes, A the cheap fidelities, B the 40-epoch reference (each
# resumable through its OUT/scores.csv); the GPU tests beside them.
W=$1; BUDGET=$2; cd $3
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
export PYTHONUNBUFFERED=1
L=$W/logs; P=docs/results/proxy-bireal/config.yaml
COMMON=(--config $P --set data.root=$W/data --genotypes 24)
E5="e5-25k: train.epochs=5 data.search_train_size=25000"
E2="e2-25k: train.epochs=2 train.warmup_epochs=0.2 data.search_train_size=25000"
E10="e10-12k: train.epochs=10 data.search_train_size=12500"
REF="e40-25k: train.epochs=40 train.warmup_epochs=2 data.search_train_size=25000"
mkdir -p $W/out/proxyA $W/out/proxyB
cp -r $W/scripts/proxyA/. $W/out/proxyA/ 2>/dev/null; cp -r $W/scripts/proxyB/. $W/out/proxyB/ 2>/dev/null
echo "start proxyA at $(el) s"
(timeout $(( BUDGET - $(el) )) python3 -m benchmarks.proxy_rank "${COMMON[@]}" --out $W/out/proxyA \
   --fidelity "$E5" --fidelity "$E2" --reference "$E10" > $L/proxyA.log 2>&1; echo "end proxyA rc=$? at $(el) s") &
echo "start proxyB at $(el) s"
(timeout $(( BUDGET - $(el) )) python3 -m benchmarks.proxy_rank "${COMMON[@]}" --out $W/out/proxyB \
   --reference "$REF" > $L/proxyB.log 2>&1; echo "end proxyB rc=$? at $(el) s") &
(timeout 420 python3 -m pytest -q -o addopts="" tests/test_cuda.py -rs -p no:warnings -p no:cacheprovider > $L/test_cuda.log 2>&1
 echo "test_cuda rc=$? at $(el) s") &
wait
echo "DONE at $(el) s"
