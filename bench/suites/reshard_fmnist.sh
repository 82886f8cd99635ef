#!/usr/bin/env bash
# bench/suites/reshard_fmnist.sh — resharding on a non-IID split (issue 12): Fashion-MNIST, the
# reference CNN, RANKS ranks on loopback, the "shards" partition (label-sorted shards, two per
# rank, so each rank holds 2-3 classes), Mercury's sampler (BACC), local batch 64, Adam lr
# 0.002, one thread per rank. Every run trains the same fixed budget of steps and evaluates every
# EVAL steps; variants differ only in resharding:
#   off            no resharding (each rank keeps its classes)
#   random         uniform picks, budget 0.5 of a full reshuffle per epoch
#   importance     picks by cached importance, budget 0.5
#   importance-03  picks by cached importance, budget 0.3 (60% of random's bytes)
# Output: $OUT/<variant>-s<seed>.jsonl (+ .rank<r>.jsonl), the report's table (accuracy at the
# budget: final_test_acc_last5) and, per run, the sample bytes moved (reshard_bytes_sent summed
# over ranks, from the "done" events).
#
# Usage: bench/suites/reshard_fmnist.sh [OUT]       (default runs/reshard_fmnist)
#   RANKS=4  SEEDS="1 2"  BUDGET=940 steps (4 epochs at 4 ranks)  EVAL=47  BANDWIDTH=off
#   MODEL=cnn (resnet8: batch-norm, whose per-rank batch statistics are what a non-IID split
#   skews)  TARGET=0.85 (the report's target accuracy)
#   VARIANTS="off random importance importance-03"  MERCURY_BIN (default build/release/tools/mercury)
# Finished runs are skipped, so an interrupted suite resumes.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/reshard_fmnist}
bin=${MERCURY_BIN:-build/release/tools/mercury}
ranks=${RANKS:-4}
budget=${BUDGET:-940}
eval_every=${EVAL:-47}
bandwidth=${BANDWIDTH:-off}
model=${MODEL:-cnn}
target=${TARGET:-0.85}
[ -x "$bin" ] || { echo "reshard_fmnist.sh: $bin missing: build the release preset" >&2; exit 2; }
for v in "$ranks" "$budget" "$eval_every"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "reshard_fmnist.sh: RANKS/BUDGET/EVAL: expected a positive integer, found '$v'" >&2; exit 2; }
done
shape=()
[ "$bandwidth" != off ] && shape=(--bandwidth "$bandwidth")
variant_flags() {
  case "$1" in
    off) echo "--reshard off" ;;
    random) echo "--reshard random --reshard-budget 0.5" ;;
    importance) echo "--reshard importance --reshard-budget 0.5" ;;
    importance-03) echo "--reshard importance --reshard-budget 0.3" ;;
    *) echo "reshard_fmnist.sh: unknown variant '$1'" >&2; exit 2 ;;
  esac
}
mkdir -p "$out"
for seed in ${SEEDS:-1 2}; do
  for v in ${VARIANTS:-off random importance importance-03}; do
    flags=$(variant_flags "$v")
    name="$v-s$seed"
    if grep -q '"event":"done"' "$out/$name.jsonl" 2>/dev/null; then
      echo "== $out/$name: done, skipped"
      continue
    fi
    rm -f "$out/$name".*jsonl "$out/$name.jsonl"
    echo "== $out/$name ($(date +%H:%M:%S))"
    # shellcheck disable=SC2086  # $flags is a word list
    "$bin" launch -n "$ranks" "${shape[@]}" -- \
      "$bin" train --model "$model" --data fashion-mnist --batch $((64 * ranks)) --lr 0.002 \
      --optimizer adam --threads 1 --epochs 100 --max-steps "$budget" --eval-every "$eval_every" \
      --progress false --seed "$seed" --partition shards --sampler mercury --groups-per-batch 4 \
      --draw systematic --weight-power 0.5 --metrics "$out/$name.jsonl" $flags \
      > "$out/$name.log" 2>&1 ||
      { echo "reshard_fmnist.sh: $out/$name failed, see $out/$name.log" >&2; exit 1; }
  done
done
mapfile -t all < <(ls "$out"/*-s[0-9]*.jsonl | grep -v '\.rank[0-9]*\.jsonl$')
"$bin" report --target "$target" --out "$out/report" "${all[@]}"
echo "sample bytes moved per run (all ranks):"
for f in "${all[@]}"; do
  base=${f%.jsonl}
  total=0
  for g in "$f" "$base".rank*.jsonl; do
    [ -f "$g" ] || continue
    b=$(grep '"event":"done"' "$g" | grep -o '"reshard_bytes_sent":[0-9]*' | cut -d: -f2)
    total=$((total + ${b:-0}))
  done
  awk -v n="$(basename "$base")" -v t="$total" \
    'BEGIN { printf "  %-24s %12d bytes (%.1f MiB)\n", n, t, t / 1048576 }'
done
