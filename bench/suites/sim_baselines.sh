#!/usr/bin/env bash
# bench/suites/sim_baselines.sh — the paper's Fig. 11 on one substrate (issue 14): time to a
# target accuracy of sync SGD, TicTac, AdaComm and Mercury, in the simulator, at several
# bandwidths and seeds.
#
# Run: `mercury sim -n DEVICES --bandwidth BW` (every directed link its own BW channel; add
# MEDIUM=1 for one shared channel), Fashion-MNIST, reference CNN, local batch 64 (global
# 64 x DEVICES), Adam lr 0.002, one thread per device, evaluation on the full test set every EVAL
# steps, stopping at the first evaluation >= TARGET (--target-acc) or after BUDGET steps.
#   sync     uniform sampling, BSP
#   tictac   uniform sampling, BSP scheduled layer by layer (--algorithm tictac)
#   adacomm  uniform sampling, local SGD with tau0 = TAU0 (--algorithm adacomm)
#   adacomm-tN  the same with tau0 = N (the paper's grid: adacomm-t2 adacomm-t10 adacomm-t20)
#   mercury  --sampler mercury --groups-per-batch 4 --draw systematic --weight-power 0.5
#            --beta 0.1, BACC with the adaptive group (the default pipeline)
#   mercury-gN  the same with the adaptive group capped at N samples (--bacc-max-group N)
#   mercury-ada-tN[-gM]  importance-sampled local SGD: mercury's flags under --algorithm adacomm
#            with tau0 = N (BACC scores during each averaging; optionally the group capped at M)
# Time is the simulator's virtual wall clock (evaluations excluded), so runs on 2 cores give each
# device its own core; the table is `mercury report --target TARGET`: steps and seconds to the
# first evaluation >= TARGET, per run, and ratios against sync.
#
# Output: $OUT/<bw>/<algorithm>-s<seed>.jsonl (+ .log), $OUT/<bw>/report, and $OUT/table.md:
# per bandwidth and algorithm the seeds that reached the target, the mean time to it and its
# range, and the speedup over sync: the ratio of the mean times over the seeds both reached
# it, then per seed.
#
# Usage: bench/suites/sim_baselines.sh [OUT]         (default runs/sim_baselines)
#   BANDWIDTHS="10mbps 50mbps 100mbps 200mbps"  SEEDS="1 2 3"  DEVICES=4
#   ALGORITHMS="sync tictac adacomm mercury"  TARGET=0.90  BUDGET=1500  EVAL=50  TAU0=5
#   MEDIUM=0  MERCURY_BIN (default build/release/tools/mercury)
# Finished runs (a "done" event) are skipped, so an interrupted suite resumes.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/sim_baselines}
bin=${MERCURY_BIN:-build/release/tools/mercury}
budget=${BUDGET:-1500}
eval_every=${EVAL:-50}
devices=${DEVICES:-4}
target=${TARGET:-0.90}
tau0=${TAU0:-5}
[ -x "$bin" ] || { echo "sim_baselines.sh: $bin missing: build the release preset" >&2; exit 2; }
for v in "$budget" "$eval_every" "$devices" "$tau0"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "sim_baselines.sh: BUDGET/EVAL/DEVICES/TAU0: expected a positive integer, found '$v'" >&2; exit 2; }
done
[[ $target =~ ^0\.[0-9]+$ ]] || { echo "sim_baselines.sh: TARGET: expected an accuracy in (0, 1) such as 0.90, found '$target'" >&2; exit 2; }
command -v python3 >/dev/null || { echo "sim_baselines.sh: python3 is needed for the table" >&2; exit 2; }
medium=()
[ "${MEDIUM:-0}" = 1 ] && medium=(--medium)
algorithm_flags() {
  case "$1" in
    sync) echo "--sampler uniform" ;;
    tictac) echo "--sampler uniform --algorithm tictac" ;;
    adacomm) echo "--sampler uniform --algorithm adacomm --adacomm-tau0 $tau0" ;;
    adacomm-t[1-9]*)
      [[ ${1#adacomm-t} =~ ^[1-9][0-9]*$ ]] || { echo "sim_baselines.sh: '$1': expected adacomm-tN with N a positive integer" >&2; exit 2; }
      echo "--sampler uniform --algorithm adacomm --adacomm-tau0 ${1#adacomm-t}" ;;
    mercury) echo "--sampler mercury --groups-per-batch 4 --draw systematic --weight-power 0.5 --beta 0.1" ;;
    mercury-ada-t[1-9]*)  # mercury-ada-tN or mercury-ada-tN-gM
      local rest=${1#mercury-ada-t} cap=""
      [[ $rest =~ ^([1-9][0-9]*)(-g([1-9][0-9]*))?$ ]] || { echo "sim_baselines.sh: '$1': expected mercury-ada-tN or mercury-ada-tN-gM with N, M positive integers" >&2; exit 2; }
      [ -n "${BASH_REMATCH[3]}" ] && cap="--bacc-max-group ${BASH_REMATCH[3]}"
      echo "$(algorithm_flags mercury) --algorithm adacomm --adacomm-tau0 ${BASH_REMATCH[1]} $cap" ;;
    mercury-g[1-9]*)
      [[ ${1#mercury-g} =~ ^[1-9][0-9]*$ ]] || { echo "sim_baselines.sh: '$1': expected mercury-gN with N a positive integer" >&2; exit 2; }
      echo "$(algorithm_flags mercury) --bacc-max-group ${1#mercury-g}" ;;
    *) echo "sim_baselines.sh: unknown algorithm '$1' (expected sync, tictac, adacomm, adacomm-tN, mercury, mercury-gN, mercury-ada-tN[-gM])" >&2; exit 2 ;;
  esac
}
bandwidths=${BANDWIDTHS:-10mbps 50mbps 100mbps 200mbps}
for seed in ${SEEDS:-1 2 3}; do
  for bw in $bandwidths; do
    dir="$out/$bw"
    mkdir -p "$dir"
    for a in ${ALGORITHMS:-sync tictac adacomm mercury}; do
      flags=$(algorithm_flags "$a")
      name="$a-s$seed"
      if grep -q '"event":"done"' "$dir/$name.jsonl" 2>/dev/null; then
        echo "== $dir/$name: done, skipped"
        continue
      fi
      rm -f "$dir/$name".*jsonl "$dir/$name.jsonl"
      echo "== $dir/$name ($(date +%H:%M:%S))"
      # shellcheck disable=SC2086  # $flags is a word list
      "$bin" sim -n "$devices" --bandwidth "$bw" "${medium[@]}" -- \
        --model cnn --data fashion-mnist --batch $((64 * devices)) --lr 0.002 --optimizer adam \
        --threads 1 --epochs 100 --max-steps "$budget" --eval-every "$eval_every" \
        --target-acc "$target" --progress false --seed "$seed" \
        --metrics "$dir/$name.jsonl" $flags > "$dir/$name.log" 2>&1 ||
        { echo "sim_baselines.sh: $dir/$name failed, see $dir/$name.log" >&2; exit 1; }
    done
  done
done
for bw in $bandwidths; do
  dir="$out/$bw"
  mapfile -t all < <(ls "$dir"/*-s[0-9]*.jsonl | grep -v '\.rank[0-9]*\.jsonl$')
  "$bin" report --target "$target" --out "$dir/report" "${all[@]}" > /dev/null
done
python3 - "$out" "$target" $bandwidths <<'EOF'
import json, pathlib, statistics, sys
out, target, bws = pathlib.Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
found = {f.name.split("-s")[0] for bw in bws for f in (out / bw).glob("*-s*.jsonl")}
order = lambda a: (["sync", "tictac"].index(a) if a in ("sync", "tictac") else
                   2 if a.startswith("adacomm") else 3, a)
algos = sorted(found, key=order)
def first_hit(path):
    # Evaluations (every EVAL steps) and the epoch ends both evaluate; the run logs the first at
    # or above --target-acc as a target_reached event (steps, wall_s) and stops there.
    for line in open(path):
        e = json.loads(line)
        if e.get("event") in ("eval", "target_reached") and e["test_acc"] >= target:
            return e["steps"], e["wall_s"]
    return None
rows = ["| bandwidth | algorithm | seeds at target | steps (mean) | time to %.0f%% s (mean, range) | speedup over sync (per seed) |" % (100 * target),
        "|---|---|---|---|---|---|"]
def seed_of(f):
    return int(f.name.rsplit("-s", 1)[1].split(".")[0])
for bw in bws:
    base = {}
    for a in algos:
        files = sorted((out / bw).glob(f"{a}-s*.jsonl"))
        files = [f for f in files if ".rank" not in f.name]
        # Finished runs only (a "done" event): a run still going is not a miss.
        files = [f for f in files if any('"event":"done"' in line for line in open(f))]
        if not files:
            continue
        hits = {seed_of(f): first_hit(f) for f in files}
        got = {k: h for k, h in hits.items() if h}
        if a == "sync":
            base = {k: h[1] for k, h in got.items()}
        if not got:
            rows.append(f"| {bw} | {a} | 0/{len(hits)} | – | not reached | – |")
            continue
        t = [h[1] for h in got.values()]
        # Speedup: sync's mean time over this algorithm's, on the seeds both reached the target;
        # the per-seed ratios follow. A seed that missed it is counted in "seeds at target".
        common = sorted(k for k in got if k in base)
        if common:
            ratio = statistics.mean(base[k] for k in common) / statistics.mean(got[k][1] for k in common)
            per = ", ".join(f"s{k} {base[k] / got[k][1]:.2f}" for k in common)
            speed = f"{ratio:.2f}x ({per})"
        else:
            speed = "–"
        rows.append(f"| {bw} | {a} | {len(got)}/{len(hits)} | {statistics.mean(h[0] for h in got.values()):.0f} | "
                    f"{statistics.mean(t):.1f} ({min(t):.1f}–{max(t):.1f}) | {speed} |")
(out / "table.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
EOF
