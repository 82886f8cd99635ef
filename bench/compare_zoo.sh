#!/usr/bin/env bash
# bench/compare_zoo.sh — every zoo model, Mercury against PyTorch 1.13 (Debian python3-torch),
# side by side in the same run: training (or scoring) throughput on one thread and peak memory,
# same model, batch, optimizer (Adam) and input shapes, 16 distinct random batches cycled.
#
#   bench/compare_zoo.sh [--mode train|score] [--steps N] [--models a,b,...] [--threads T]
#
# Each engine runs each model in a process of its own (peak RSS, VmHWM / ru_maxrss, is per
# process), one after the other, never two at once. Both run with glibc's malloc thresholds
# pinned (MALLOC_MMAP_THRESHOLD_=67108864 MALLOC_TRIM_THRESHOLD_=134217728): without them
# PyTorch page-faults every large activation and runs at a fraction of its speed. "base" is the
# RSS before the first step (libraries, model, optimizer state, the 16 input batches), so
# peak − base is what the steps themselves add. Needs a release build (memory_probe) and
# python3-torch (tools/setup --bench).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=train steps=3 threads=1 models=""
while [ $# -gt 0 ]; do
  case "$1" in
    --mode) mode="${2:?--mode needs train or score}"; shift 2 ;;
    --steps) steps="${2:?--steps needs a count}"; shift 2 ;;
    --threads) threads="${2:?--threads needs a count}"; shift 2 ;;
    --models) models="${2:?--models needs a comma-separated list}"; shift 2 ;;
    *) echo "compare_zoo.sh: unknown argument '$1' (expected --mode, --steps, --threads, --models)" >&2
       exit 2 ;;
  esac
done
case "$mode" in train|score) ;; *) echo "compare_zoo.sh: --mode: expected train or score, found '$mode'" >&2; exit 2 ;; esac
[[ "$steps" =~ ^[1-9][0-9]*$ ]] || { echo "compare_zoo.sh: --steps: expected a positive integer, found '$steps'" >&2; exit 2; }
[[ "$threads" =~ ^[1-9][0-9]*$ ]] || { echo "compare_zoo.sh: --threads: expected a positive integer, found '$threads'" >&2; exit 2; }
probe=build/release/bench/memory_probe
[ -x "$probe" ] || { echo "compare_zoo.sh: $probe missing: build the release preset first" >&2; exit 2; }
py=/usr/bin/python3
"$py" -c 'import torch' 2>/dev/null || { echo "compare_zoo.sh: PyTorch missing (apt-get install python3-torch)" >&2; exit 2; }
[ -n "$models" ] || models="cnn,mlp,resnet8,resnet20,resnet18,resnet50,mobilenetv2,vgg13,ds_cnn,lstm_attention,textcnn"
export MALLOC_MMAP_THRESHOLD_=67108864 MALLOC_TRIM_THRESHOLD_=134217728 OMP_NUM_THREADS="$threads"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
IFS=, read -ra list <<<"$models"
for m in "${list[@]}"; do
  echo "compare_zoo.sh: $m ($mode) ..." >&2
  ours=$("$probe" --model "$m" --mode "$mode" --steps "$steps" --threads "$threads")
  peer=$("$py" bench/peers/torch_zoo.py --model "$m" --mode "$mode" --steps "$steps" --threads "$threads")
  printf '%s\t%s\n' "$ours" "$peer" >>"$out"
done
"$py" - "$out" "$mode" <<'PY'
import json, sys
rows = [tuple(json.loads(c) for c in line.rstrip("\n").split("\t")) for line in open(sys.argv[1])]
mode = sys.argv[2]
print(f"| model (batch) | params | {mode} samples/s: mercury | pytorch | ratio | peak RSS MiB: mercury"
      " | pytorch | ratio | peak − base MiB: mercury | pytorch | mercury planned activations MiB |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for o, p in rows:
    if o["params"] != p["params"]:
        print(f"compare_zoo.sh: {o['model']}: parameter counts differ (mercury {o['params']}, "
              f"pytorch {p['params']}): not the same model", file=sys.stderr)
        sys.exit(1)
    so, sp = o["samples_per_s"], p["samples_per_s"]
    mo, mp = o["peak_rss_mib"], p["peak_rss_mib"]
    print(f"| {o['model']} ({o['batch']}) | {o['params']:,} | {so:.1f} | {sp:.1f} | {so / sp:.2f}× "
          f"| {mo:.0f} | {mp:.0f} | {mo / mp:.2f} | {mo - o['base_rss_mib']:.0f} "
          f"| {mp - p['base_rss_mib']:.0f} | {o['activations_mib']:.0f} |")
PY
