#!/usr/bin/env bash
# bench/suites/sim_validation.sh — the simulator against real processes (issue 14, item 3):
# the same run with `mercury launch` (one process per rank, loopback links shaped by the token
# bucket) and with `mercury sim` (threads on virtual clocks), for every RANKS x BANDWIDTHS x
# PIPELINES, and a table of per-iteration time, accuracy and final weights.
#
# Run: Fashion-MNIST, reference CNN, local batch 64, Adam 0.002, one thread per rank, STEPS steps,
# evaluation every EVAL steps. Pipelines: seq = Mercury's sequential pipeline with a fixed group
# of 1024 (deterministic: both must end with bitwise the same weights), bacc = BACC with the
# adaptive group (timing-dependent: groups, and so weights, differ; the table gives both sides'
# mean group).
#
# Per-iteration time = (wall_s at the last evaluation - wall_s at the first) / the steps between,
# from rank 0's eval events (evaluation time is excluded on both sides). Weights: the CRC32C of
# every tensor of the final checkpoint (`mercury inspect`), weights and optimizer moments.
#
# Usage: bench/suites/sim_validation.sh [OUT]       (default runs/sim_validation)
#   RANKS="2 4"  BANDWIDTHS="10mbps 100mbps"  PIPELINES="seq bacc"  STEPS=200  EVAL=50  SEED=1
#   MERCURY_BIN (default build/release/tools/mercury)
# Finished runs are skipped. Needs python3 for the table.
# On a 2-core machine real ranks share the cores: 4 ranks (8 threads with BACC) run their compute
# slower than a device would, while the simulator charges each device its own thread CPU time.
# So with more ranks than CORES (default: nproc) a third run models the real run's devices as
# what they are, ranks sharing the host: `mercury sim --device-factor ranks/CORES` (column
# "sim, shared cores"). The "real CPU/step" column is rank 0's training CPU per step.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/sim_validation}
bin=${MERCURY_BIN:-build/release/tools/mercury}
steps=${STEPS:-200}
eval_every=${EVAL:-50}
seed=${SEED:-1}
cores=${CORES:-$(nproc)}
[ -x "$bin" ] || { echo "sim_validation.sh: $bin missing: build the release preset" >&2; exit 2; }
for v in "$steps" "$eval_every" "$seed"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "sim_validation.sh: STEPS/EVAL/SEED: expected a positive integer, found '$v'" >&2; exit 2; }
done
command -v python3 >/dev/null || { echo "sim_validation.sh: python3 is needed for the table" >&2; exit 2; }
mkdir -p "$out"
pipeline_flags() {
  case "$1" in
    seq) echo "--pipeline sequential --group-size 1024" ;;
    bacc) echo "--pipeline bacc --group-size 0" ;;
    *) echo "sim_validation.sh: unknown pipeline '$1'" >&2; exit 2 ;;
  esac
}
rows=()
for ranks in ${RANKS:-2 4}; do
  for bw in ${BANDWIDTHS:-10mbps 100mbps}; do
    for p in ${PIPELINES:-seq bacc}; do
      # shellcheck disable=SC2046  # the flags are a word list
      train=(--model cnn --data fashion-mnist --batch $((64 * ranks)) --lr 0.002 --optimizer adam
             --threads 1 --epochs 100 --max-steps "$steps" --eval-every "$eval_every"
             --progress false --seed "$seed" --sampler mercury --groups-per-batch 4
             --draw systematic --weight-power 0.5 --beta 0.1 $(pipeline_flags "$p"))
      sides=(real sim)
      [ "$ranks" -gt "$cores" ] && sides+=(shared)
      for side in "${sides[@]}"; do
        name="$out/w$ranks-$bw-$p-$side"
        if grep -q '"event":"done"' "$name.jsonl" 2>/dev/null && [ -f "$name.safetensors" ]; then
          echo "== $name: done, skipped"
          continue
        fi
        rm -f "$name".*jsonl "$name.jsonl" "$name.safetensors"
        echo "== $name ($(date +%H:%M:%S))"
        if [ "$side" = real ]; then
          "$bin" launch -n "$ranks" --bandwidth "$bw" -- "$bin" train "${train[@]}" \
            --metrics "$name.jsonl" --checkpoint "$name.safetensors" > "$name.log" 2>&1 ||
            { echo "sim_validation.sh: $name failed, see $name.log" >&2; exit 1; }
        else
          factor=()
          [ "$side" = shared ] && factor=(--device-factor "$(awk "BEGIN{print $ranks / $cores}")")
          "$bin" sim -n "$ranks" --bandwidth "$bw" "${factor[@]}" -- "${train[@]}" \
            --metrics "$name.jsonl" --checkpoint "$name.safetensors" > "$name.log" 2>&1 ||
            { echo "sim_validation.sh: $name failed, see $name.log" >&2; exit 1; }
        fi
        "$bin" inspect "$name.safetensors" | grep ' crc32c ' > "$name.crc"
      done
      rows+=("w$ranks-$bw-$p")
    done
  done
done
python3 - "$out" "${rows[@]}" <<'EOF'
import json, sys, os
out, rows = sys.argv[1], sys.argv[2:]
def events(path, kind):
    with open(path) as f:
        return [j for j in map(json.loads, f) if j.get("event") == kind]
def per_step(path):
    ev = events(path, "eval")
    return (ev[-1]["wall_s"] - ev[0]["wall_s"]) / (ev[-1]["steps"] - ev[0]["steps"]), ev
def groups(base, ranks):
    total = n = 0
    for r in range(ranks):
        p = base + ("" if r == 0 else f".rank{r}") + ".jsonl"
        for e in events(p, "bacc"):
            total += e["group"]; n += 1
    return total / n if n else 0
print("| setting | real s/step | sim s/step | sim error | sim, shared cores: s/step, error | real CPU/step | accuracy real / sim (last eval) | max acc gap | weights | mean group real / sim | sim speed |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for row in rows:
    ranks = int(row.split("-")[0][1:])
    real, sim = os.path.join(out, row + "-real"), os.path.join(out, row + "-sim")
    rs, rev = per_step(real + ".jsonl")
    ss, sev = per_step(sim + ".jsonl")
    gap = max(abs(a["test_acc"] - b["test_acc"]) for a, b in zip(rev, sev))
    same = open(real + ".crc").read() == open(sim + ".crc").read()
    cpu = events(real + ".jsonl", "eval")[-1]["train_cpu_s"] / rev[-1]["steps"]
    speed = events(sim + ".jsonl", "sim")[-1]["speed"]
    g = f"{groups(real, ranks):.0f} / {groups(sim, ranks):.0f}" if row.endswith("bacc") else "–"
    shared = os.path.join(out, row + "-shared.jsonl")
    sh = "–"
    if os.path.exists(shared):
        hs, _ = per_step(shared)
        sh = f"{hs:.4f}, {100 * (hs - rs) / rs:+.1f}%"
    print(f"| {row} | {rs:.4f} | {ss:.4f} | {100 * (ss - rs) / rs:+.1f}% | {sh} | {cpu:.4f} | "
          f"{rev[-1]['test_acc']:.4f} / {sev[-1]['test_acc']:.4f} | {gap:.4f} | "
          f"{'bitwise equal' if same else 'differ'} | {g} | {speed:.2f}x |")
EOF
