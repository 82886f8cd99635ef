#!/usr/bin/env bash
# bench/suites/bacc_fmnist.sh — the distributed headline (issue 12): Mercury with BACC against
# standard synchronous SGD on a shaped loopback cluster. Fashion-MNIST, reference CNN, local
# batch 64 (global 64 x ranks), Adam lr 0.002, one thread per rank, every link shaped to
# BANDWIDTH by the token bucket (net/shaper.hpp).
#
# Every run trains for the same fixed budget of steps (no early stop) and evaluates on the full
# test set every EVAL steps, so `mercury report --target 0.90` gives steps and wall-clock
# seconds (training, evaluations excluded) to the first evaluation at >= 90% and to the first
# time the mean of the last 3 evaluations is >= 90%, and the accuracy at the budget.
#
# Output: $OUT/w<ranks>-<bandwidth>/<run>-s<seed>.jsonl (rank r > 0: .rank<r>.jsonl), then one
# report per setting in .../report (table on stdout, ratios against uniform).
#
# Usage: bench/suites/bacc_fmnist.sh [OUT]          (default runs/bacc_fmnist)
#   RANKS="4 2"  BANDWIDTHS="10mbps"  SEEDS="1 2 3"  BUDGET=1200 steps  EVAL=50
#   VARIANTS="uniform mercury"  (also: mercury-seq = the sequential pipeline with a fixed group
#                                of 1024; mercury-fixed = BACC with a fixed group of 1024;
#                                mercury-b01 = BACC adaptive with the recency temperature fixed
#                                at beta 0.1 instead of 4/D)
#   MERCURY_BIN (default build/release/tools/mercury)
# Finished runs (a "done" event in rank 0's file) are skipped, so an interrupted suite resumes.
# On a 2-core machine 4 ranks share 2 cores (with BACC, 4 training and 4 scorer threads): each
# rank's compute runs slower than alone, which favours neither side's wire time but makes the
# scorer's windows CPU-starved; the epoch events' scorer_cpu_s vs scorer_busy_s show by how much.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/bacc_fmnist}
bin=${MERCURY_BIN:-build/release/tools/mercury}
budget=${BUDGET:-1200}
eval_every=${EVAL:-50}
[ -x "$bin" ] || { echo "bacc_fmnist.sh: $bin missing: build the release preset" >&2; exit 2; }
for v in "$budget" "$eval_every"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "bacc_fmnist.sh: BUDGET/EVAL: expected a positive integer, found '$v'" >&2; exit 2; }
done
mercury=(--sampler mercury --groups-per-batch 4 --draw systematic --weight-power 0.5)
variant_flags() {
  case "$1" in
    uniform) echo "--sampler uniform" ;;
    mercury) echo "${mercury[*]}" ;;
    mercury-seq) echo "${mercury[*]} --pipeline sequential --group-size 1024" ;;
    mercury-fixed) echo "${mercury[*]} --pipeline bacc --group-size 1024" ;;
    mercury-b01) echo "${mercury[*]} --beta 0.1" ;;
    *) echo "bacc_fmnist.sh: unknown variant '$1'" >&2; exit 2 ;;
  esac
}
for ranks in ${RANKS:-4 2}; do
  for bw in ${BANDWIDTHS:-10mbps}; do
    dir="$out/w$ranks-$bw"
    mkdir -p "$dir"
    for seed in ${SEEDS:-1 2 3}; do
      for v in ${VARIANTS:-uniform mercury}; do
        flags=$(variant_flags "$v")
        name="$v-s$seed"
        if grep -q '"event":"done"' "$dir/$name.jsonl" 2>/dev/null; then
          echo "== $dir/$name: done, skipped"
          continue
        fi
        rm -f "$dir/$name".*jsonl "$dir/$name.jsonl"
        echo "== $dir/$name ($(date +%H:%M:%S))"
        # shellcheck disable=SC2086  # $flags is a word list
        "$bin" launch -n "$ranks" --bandwidth "$bw" -- \
          "$bin" train --model cnn --data fashion-mnist --batch $((64 * ranks)) --lr 0.002 \
          --optimizer adam --threads 1 --epochs 100 --max-steps "$budget" \
          --eval-every "$eval_every" --progress false --seed "$seed" \
          --metrics "$dir/$name.jsonl" $flags > "$dir/$name.log" 2>&1 ||
          { echo "bacc_fmnist.sh: $dir/$name failed, see $dir/$name.log" >&2; exit 1; }
      done
    done
    # The report covers every finished run of the setting, also those of earlier VARIANTS.
    mapfile -t all < <(ls "$dir"/*-s[0-9]*.jsonl | grep -v '\.rank[0-9]*\.jsonl$')
    "$bin" report --target 0.90 --out "$dir/report" "${all[@]}"
  done
done
