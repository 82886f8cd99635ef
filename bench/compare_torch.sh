#!/usr/bin/env bash
# bench/compare_torch.sh — Mercury vs PyTorch CPU on the reference CNN, one thread, same run.
# Prints samples/s for training (batch 64) and scoring (batch 320) and the ratios, plus
# Mercury's own score/train ratio. Needs a release build (cmake --preset release && cmake
# --build --preset release) and, for the peer, Debian's python3-torch (tools/setup --bench).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/release/bench/bench_train
[ -x "$bin" ] || { echo "compare_torch.sh: $bin missing: build the release preset first" >&2; exit 2; }
py=/usr/bin/python3
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$bin" --benchmark_filter='BM_(TrainStep|Score)CNN' --benchmark_format=json >"$out" 2>/dev/null
peer=$(OMP_NUM_THREADS=1 "$py" bench/peers/torch_cnn.py --threads 1 --seconds 5) || {
  echo "compare_torch.sh: PyTorch peer unavailable (apt-get install python3-torch)" >&2; peer=""; }
"$py" - "$out" "$peer" <<'PY'
import json, sys
runs = {b["name"].split("/min_time")[0]: b["items_per_second"]
        for b in json.load(open(sys.argv[1]))["benchmarks"]}
train, score = runs["BM_TrainStepCNN/64"], runs["BM_ScoreCNN/320"]
print(f"mercury  train (batch 64):  {train:9.0f} samples/s")
print(f"mercury  score (batch 320): {score:9.0f} samples/s   score/train = {score / train:.2f}x")
if sys.argv[2]:
    peer = json.loads(sys.argv[2])
    pt, ps = peer["train_samples_per_s"], peer["score_samples_per_s"]
    print(f"pytorch  train (batch 64):  {pt:9.0f} samples/s   mercury/pytorch = {train / pt:.2f}x")
    print(f"pytorch  score (batch 320): {ps:9.0f} samples/s   mercury/pytorch = {score / ps:.2f}x")
PY
