#!/usr/bin/env bash
# The pruning results of issue 4, in priority order, from trained dense LeNets (nice'd: CPU is shared).
# LeNet-5 settings are sized for a shared 2-core CPU: evaluation on the first 2,000/5,000 test images
# and a retraining budget of 7,680 images (15 steps of 512).
#   benchmarks/run_pruning_benchmarks.sh L300.safetensors L5.safetensors [MNIST_DIR]
set -euo pipefail
L300=$1 L5=$2 DATA=${3:-../shared/data/mnist} R=benchmarks/results
export PYTHONPATH=src OMP_NUM_THREADS=1  # one thread: a nice'd job with 2 threads stalls on a busy CPU
run() { echo "== $(date -u +%T) $*" >&2; nice -n 19 "$@"; }
run python benchmarks/bench_pruning_methods.py --checkpoint "$L300" --data "$DATA" \
    --retrain-samples 60000 --batch-size 128 --out $R/pruning_methods_lenet-300-100.json
run python benchmarks/bench_han2015_pruning.py --checkpoint "$L300" --data "$DATA" --rounds 4 --epochs 6 \
    --out $R/han2015_pruning_lenet-300-100.json
run python -m deepcompress.cli sensitivity --model "$L5" --data "$DATA" --method magnitude --quiet --eval-samples 2000 \
    --suggest-drop 0.005 --recipe-out $R/sensitivity_lenet-5/suggested.yaml --out $R/sensitivity_lenet-5
run python benchmarks/bench_han2015_pruning.py --checkpoint "$L5" --data "$DATA" --rounds 4 --epochs 4 \
    --out $R/han2015_pruning_lenet-5.json
run python benchmarks/bench_pruning_methods.py --checkpoint "$L5" --data "$DATA" --retrain-samples 7680 \
    --batch-size 512 --channels-last --obd-batches 4 --eval-samples 5000 --out $R/pruning_methods_lenet-5.json
run python -m deepcompress.cli sensitivity --model "$L5" --data "$DATA" --method obd --estimator gauss-newton \
    --batches 4 --eval-samples 2000 --quiet --out $R/sensitivity_lenet-5_obd
