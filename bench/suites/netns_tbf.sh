#!/usr/bin/env bash
# bench/suites/netns_tbf.sh — does Mercury's token-bucket bandwidth emulation (net/shaper.hpp,
# MERCURY_BANDWIDTH) agree with a kernel-shaped link? (issue 5)
#
# Two network namespaces joined by a veth pair (10.213.7.1 <-> 10.213.7.2, MTU 1500), one rank
# of a two-rank net::Mesh in each (bench/micro/net_probe.cpp: rank 0 sends 64 KiB messages to
# rank 1 for SECONDS, rank 1 measures steady-state payload goodput between the first and last
# arrival). For each rate R (Mbit/s):
#   tbf        `tc qdisc add dev <rank 0's veth> root tbf rate Rmbit burst B latency 100ms` in
#              rank 0's namespace, probe unshaped;
#   emulation  the same veth without a qdisc, probe with --bandwidth Rmbps (the mesh's pacer,
#              link mode, 16 KiB slices, 5 ms burst, on both ranks — what MERCURY_BANDWIDTH does).
# Plus one unshaped run, the veth's own capacity on this machine.
#
# tbf parameters: burst B = R x 10 ms (12.5 KB at 10 Mbit/s, 250 KB at 200 Mbit/s). tbf needs
# burst >= R / HZ or it cannot reach its rate with a timer tick's worth of tokens; 10 ms covers
# every kernel HZ (>= 100), and is close to the emulation's own 5 ms burst allowance. The queue
# (latency 100 ms, i.e. limit = R x 100 ms + B) is deep enough that TCP never loses a packet
# there on a sub-millisecond veth, so the link stays busy and the figure is tbf's rate, not a
# loss-recovery artefact. Only the first burst and the steady state depend on B; the probe
# measures the steady state.
#
# What each side counts: tbf counts every byte of every packet it dequeues (Ethernet + IP +
# TCP headers: 1514 bytes on the wire per 1448 payload bytes at MTU 1500 with TCP timestamps),
# the emulation counts mesh frame bytes (payload + a 64-byte frame header per 64 KiB message).
# So at equal settings tbf's payload goodput is expected to be ~1448/1514 = 0.956 of the
# emulation's; the "tbf ÷ wire" column divides by target x that factor.
#
# Usage: bench/suites/netns_tbf.sh [--probe PATH] [--rates "10 50 100 200"] [--seconds 3]
#   --probe    net_probe binary (default build/release/bench/net_probe; NET_PROBE also works)
# Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN), iproute2's ip and tc, network namespaces, veth
# and the tbf qdisc; when any is missing it prints "skipped: <reason>" and exits 0.
# Everything it creates (namespaces mnp0-$$ / mnp1-$$, their veth pair, a temp dir) is removed
# on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

probe=${NET_PROBE:-build/release/bench/net_probe}
rates="10 50 100 200"
seconds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --probe) probe=${2:?--probe: expected a path}; shift 2 ;;
    --rates) rates=${2:?--rates: expected a list like \"10 50\"}; shift 2 ;;
    --seconds) seconds=${2:?--seconds: expected a number}; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "netns_tbf.sh: unknown argument '$1' (expected --probe, --rates or --seconds)" >&2
       exit 2 ;;
  esac
done
for r in $rates; do
  [[ $r =~ ^[1-9][0-9]*$ ]] ||
    { echo "netns_tbf.sh: --rates: expected positive integers (Mbit/s), found '$r'" >&2; exit 2; }
done
[[ $seconds =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk "BEGIN{exit !($seconds >= 2)}" ||
  { echo "netns_tbf.sh: --seconds: expected a number >= 2, found '$seconds'" >&2; exit 2; }
[ -x "$probe" ] || { echo "netns_tbf.sh: probe '$probe' not found: build it" \
  "(cmake --build build/release --target net_probe) or pass --probe PATH" >&2; exit 2; }
probe=$(cd "$(dirname "$probe")" && pwd)/$(basename "$probe")

skip() { echo "netns_tbf.sh: skipped: $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "not root (needs CAP_NET_ADMIN and CAP_SYS_ADMIN for ip netns)"
command -v ip >/dev/null || skip "no 'ip' command (iproute2)"
command -v tc >/dev/null || skip "no 'tc' command (iproute2)"

ns0=mnp0-$$ ns1=mnp1-$$ v0=mnpa$$ v1=mnpb$$
a0=10.213.7.1 a1=10.213.7.2
port=29613
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  ip netns del "$ns0" 2>/dev/null || true  # takes the veth pair with it
  ip netns del "$ns1" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT  # so an interrupted run cleans up too
trap 'exit 143' TERM

ip netns add "$ns0" 2>"$tmp/err" || skip "ip netns add failed: $(cat "$tmp/err")"
ip netns add "$ns1" 2>"$tmp/err" || skip "ip netns add failed: $(cat "$tmp/err")"
ip link add "$v0" netns "$ns0" type veth peer name "$v1" netns "$ns1" 2>"$tmp/err" ||
  skip "cannot create a veth pair: $(cat "$tmp/err")"
for side in "$ns0 $v0 $a0" "$ns1 $v1 $a1"; do
  set -- $side
  ip -n "$1" link set lo up
  ip -n "$1" addr add "$3/24" dev "$2"
  ip -n "$1" link set "$2" mtu 1500 up
done
tc -n "$ns0" qdisc add dev "$v0" root tbf rate 10mbit burst 12500 latency 100ms 2>"$tmp/err" ||
  skip "tc tbf unavailable: $(cat "$tmp/err")"
tc -n "$ns0" qdisc del dev "$v0" root

head -c 32 /dev/urandom | base64 >"$tmp/secret"
chmod 600 "$tmp/secret"

# run_probe <extra probe args...>: prints rank 0's goodput in Mbit/s.
run_probe() {
  local common=(--world 2 --master-addr "$a0" --master-port "$port" --secret-file "$tmp/secret"
                --seconds "$seconds" --connect-timeout 20)
  ip netns exec "$ns1" "$probe" --rank 1 --bind "$a1" "${common[@]}" "$@" >"$tmp/rank1.json" \
    2>"$tmp/rank1.err" &
  pids=($!)
  if ! ip netns exec "$ns0" "$probe" --rank 0 --bind "$a0" "${common[@]}" "$@" \
       >"$tmp/rank0.json" 2>"$tmp/rank0.err"; then
    echo "netns_tbf.sh: probe rank 0 failed ($*):" >&2
    cat "$tmp/rank0.err" "$tmp/rank1.err" >&2
    exit 1
  fi
  wait "${pids[0]}" || { echo "netns_tbf.sh: probe rank 1 failed ($*):" >&2
                         cat "$tmp/rank1.err" >&2; exit 1; }
  pids=()
  sed -n 's/.*"goodput_mbps":\([0-9.e+-]*\).*/\1/p' "$tmp/rank0.json"
}

echo "netns_tbf.sh: veth $ns0/$v0 ($a0) <-> $ns1/$v1 ($a1), ${seconds} s per case," \
  "probe $probe, load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
unshaped=$(run_probe)
echo "unshaped veth: $unshaped Mbit/s"
wire=$(awk 'BEGIN{printf "%.4f", 1448/1514}')
printf '| rate Mbit/s | tbf Mbit/s | emulation Mbit/s | tbf / emulation | tbf ÷ target | emulation ÷ target | tbf ÷ (target × %s) |\n' "$wire"
echo '|---|---|---|---|---|---|---|'
for r in $rates; do
  burst=$((r * 1000000 / 8 / 100))  # bytes: r x 10 ms
  tc -n "$ns0" qdisc add dev "$v0" root tbf rate "${r}mbit" burst "$burst" latency 100ms
  tbf=$(run_probe)
  tc -n "$ns0" qdisc del dev "$v0" root
  emu=$(run_probe --bandwidth "${r}mbps")
  awk -v r="$r" -v t="$tbf" -v e="$emu" -v w="$wire" 'BEGIN{
    printf "| %d | %.2f | %.2f | %.3f | %.3f | %.3f | %.3f |\n", r, t, e, t/e, t/r, e/r, t/(r*w)}'
done
