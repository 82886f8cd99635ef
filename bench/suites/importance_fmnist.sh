#!/usr/bin/env bash
# bench/suites/importance_fmnist.sh — the single-device importance-sampling experiment:
# Fashion-MNIST, reference CNN, batch 64, Adam lr 1e-3 for every sampler; steps and training
# seconds (scoring included, evaluation excluded) to reach 90% test accuracy, 3 seeds each.
# all-IS scores all 60000 samples every step (~8 s/step here), so it runs for a capped number of
# steps on one seed: its wall-clock at the cap already exceeds the others' time to target.
# Output: $OUT/*.jsonl, then `mercury report` → $OUT/report/{*.svg,summary.json}.
# Usage: bench/suites/importance_fmnist.sh [OUT] (default runs/importance_fmnist); needs a
# release build (cmake --preset release && cmake --build --preset release).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/importance_fmnist}
bin=${MERCURY_BIN:-build/release/tools/mercury}
[ -x "$bin" ] || { echo "importance_fmnist.sh: $bin missing: build the release preset" >&2; exit 2; }
mkdir -p "$out"
common=(--model cnn --data fashion-mnist --batch 64 --lr 0.001 --optimizer adam --threads 1
        --epochs 6 --target-acc 0.90 --progress false
        --importance-stats-every 1000)
run() {  # name, extra args...
  local name=$1; shift
  [ -s "$out/$name.jsonl" ] && grep -q '"event":"done"' "$out/$name.jsonl" && return 0
  rm -f "$out/$name.jsonl"
  echo "== $name"
  "$bin" train "${common[@]}" --metrics "$out/$name.jsonl" "$@" | tail -n 2
}
# Mercury: groups of M = B = 64 scored per step, batches drawn from d = 8 groups, and the
# training pass's own per-sample losses refreshing the cache for free (--reuse-train-losses).
for seed in 1 2 3; do
  run "uniform-s$seed" --sampler uniform --seed "$seed" --eval-every 200
  run "mercury-s$seed" --sampler mercury --group-size 64 --groups-per-batch 8 --seed "$seed" \
    --eval-every 200
done
for seed in 1 2 3; do
  run "kf-s$seed" --sampler kf --seed "$seed" --eval-every 200
  run "selective-backprop-s$seed" --sampler selective-backprop --seed "$seed" --eval-every 200
done
# Ablations on one seed: the paper's default group size (10 x batch, 10x the scoring) and no
# free refresh from the training pass.
run "mercury-M640-s1" --sampler mercury --group-size 640 --seed 1 --eval-every 200
run "mercury-noreuse-s1" --sampler mercury --group-size 64 --groups-per-batch 8 \
  --reuse-train-losses false --seed 1 --eval-every 200
run "all-is-s1" --sampler all-is --seed 1 --max-steps 50 --eval-every 50
"$bin" report --out "$out/report" "$out"/*.jsonl
