#!/bin/bash
# Session 9 call B (issue 20): why the compiled step trains badly again: one step per variant
# at HEAD and at older trees; the failing GPU tests in full.
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
git log --oneline -1 2>/dev/null; echo "setup done at $(el) s"
cp devjobs/s8/onestep.py devjobs/s9/onestep.py
for fam in bireal xnor; do
  echo "=== HEAD $fam" | tee -a $OUT/onestep.log
  timeout 100 python3 devjobs/s9/onestep.py $fam 2>&1 | grep -v -i warn | tee -a $OUT/onestep.log
done
for c in 922bd33 e84c454 f047716; do
  echo "=== tree $c bireal" | tee -a $OUT/onestep.log
  (cd devjobs/s9 && PYTHONPATH=tree-$c python3 -c "import bnn_nas;print(bnn_nas.__file__)" | tee -a $OUT/onestep.log)
  (cd devjobs/s9 && PYTHONPATH=tree-$c timeout 100 python3 onestep.py bireal 2>&1 | grep -v -i warn | tee -a $OUT/onestep.log)
done
echo "onestep done at $(el) s"
timeout 150 python3 -m pytest -q -o addopts="" tests/test_cuda.py -k "compiled_step or aot_or_inductor" -rs --tb=long -p no:warnings 2>&1 | tail -150 > $OUT/test_compile.log
tail -5 $OUT/test_compile.log
echo "all done at $(el) s"
