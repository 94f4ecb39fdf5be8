#!/usr/bin/env bash
# Runs the benchmarks and reports taskring's figures as ratios to the
# machine's own limits, measured in the same run (absolute times on a shared
# VM drift; ratios much less).
#
#   BUILD=build bench/run.sh      (what `make bench` does)
#   BENCH_SCALE=0.1 make bench    quick run: iteration counts and time caps x 0.1
#   BENCH_STORE=shm make bench    use a "/name" shm store instead of an anonymous one
#   BENCH_ONLY=rtt.spin_,floor    only the scenarios whose names start so
#   BENCH_PIN=0                   leave CPU placement to the scheduler
#   BENCH_TIMEOUT=600             seconds each program may run
#   BENCH_DIR=$BUILD/bench        where bench/durable makes its log directories
#                                 (a real disk: fdatasync is free on tmpfs)
#
# Every JSON line goes to stdout and to $BUILD/bench/results.jsonl (a first
# "meta" line says where and when). The targets are figures, not tests: a
# missed target still exits 0. A benchmark program that fails (a scenario
# reported "error", it crashed or it hung past BENCH_TIMEOUT) makes the
# script exit 1 after the summary, and a missing binary exits 2 at once.
set -u

BUILD=${BUILD:-build}
dir="$BUILD/bench"
out="$dir/results.jsonl"
progs=(floors core durable)
timeout_s=${BENCH_TIMEOUT:-600}

for p in "${progs[@]}"; do
	if [ ! -x "$dir/$p" ]; then
		echo "bench/run.sh: $dir/$p is missing; build it with: make benches BUILD=$BUILD" >&2
		exit 2
	fi
done
command -v python3 >/dev/null || { echo "bench/run.sh: python3 is needed for the summary" >&2; exit 2; }

: >"$out" || exit 2
python3 "$(dirname "$0")/meta.py" bench_scale="${BENCH_SCALE:-1}" bench_store="${BENCH_STORE:-anon}" >>"$out" || exit 2
cat "$out"

failed=()
for p in "${progs[@]}"; do
	echo "# $dir/$p" >&2
	# --kill-after: a program stuck in a futex still ends; its children die
	# with it (PR_SET_PDEATHSIG).
	BENCH_DIR=${BENCH_DIR:-$dir} timeout --kill-after=10 "$timeout_s" "$dir/$p" | tee -a "$out"
	rc=${PIPESTATUS[0]}
	case $rc in
	0) ;;
	124|137) failed+=("$p (timed out after ${timeout_s}s)");;
	*) failed+=("$p (exit $rc)");;
	esac
done

echo
python3 - "$out" <<'EOF'
import json, sys

res = {}
errors = []
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    try:
        o = json.loads(line)
    except ValueError:
        errors.append("unparsable line: " + line[:80])
        continue
    res[o.get("scenario")] = o
    if "error" in o:
        errors.append("%s: %s" % (o.get("scenario"), o["error"]))

def get(scenario, field):
    if scenario.startswith("#"):
        return float(scenario[1:])  # a constant
    o = res.get(scenario)
    if o is None or "error" in o or field not in o:
        return None
    return float(o[field])

# (label, numerator, denominator, comparison, target)
targets = [
    ("rtt.xproc p50 / floor.pingpong_spin p50", ("rtt.xproc", "p50_ns"), ("floor.pingpong_spin", "p50_ns"), "<=", 3.0),
    ("rtt.xproc p99 / floor.pingpong_spin p99", ("rtt.xproc", "p99_ns"), ("floor.pingpong_spin", "p99_ns"), "<=", 5.0),
    ("rtt.xproc_nospin p50 / floor.pingpong_futex p50", ("rtt.xproc_nospin", "p50_ns"), ("floor.pingpong_futex", "p50_ns"), "<=", 1.3),
    ("tput.xproc / floor.ring (ops/s)", ("tput.xproc", "ops_per_s"), ("floor.ring", "ops_per_s"), ">=", 0.25),
    # Our own bar: a fan-in of 1,000 through a dependency costs at most
    # half the throughput of the same rounds without it.
    ("tput.deps / the same rounds without deps", ("tput.deps", "ops_per_s"), ("tput.deps", "nodeps_ops_per_s"), ">=", 0.5),
    # The durability issue's targets are absolute (jobs/s on this machine):
    # shown against 1 so that the same table holds them.
    ("dur.enqueue_64c (jobs/s) / 100,000", ("dur.enqueue_64c", "ops_per_s"), ("#100000", None), ">=", 1.0),
    ("dur.batch (jobs/s) / 2,000,000", ("dur.batch", "ops_per_s"), ("#2000000", None), ">=", 1.0),
    ("dur.recover (jobs/s) / 1,000,000", ("dur.recover", "ops_per_s"), ("#1000000", None), ">=", 1.0),
    ("dur.enqueue_1 p50 / dur.fsync_floor p50", ("dur.enqueue_1", "p50_ns"), ("dur.fsync_floor", "p50_ns"), "<=", 1.5),
]

print("summary (ratios to the floors of this run)")
w = max(len(t[0]) for t in targets)
for label, num, den, cmp, target in targets:
    a, b = get(*num), get(*den)
    if a is None or b is None or b == 0:
        missing = [s for s, v in ((num[0], a), (den[0], b)) if v is None]
        print("  %-*s  %8s  (target %s %g)  n/a: no figure for %s" % (w, label, "-", cmp, target, ", ".join(missing) or den[0]))
        continue
    r = a / b
    ok = r <= target if cmp == "<=" else r >= target
    print("  %-*s  %8.2f  (target %s %g)  %s   [%.0f / %.0f]" % (w, label, r, cmp, target, "met" if ok else "missed", a, b))

# A "nospin" round trip below the futex ping-pong cannot have slept on a
# futex in both directions: whatever it measured, it was not that.
a, b = get("rtt.xproc_nospin", "p50_ns"), get("floor.pingpong_futex", "p50_ns")
if a is not None and b and a < 0.5 * b:
    print("  note: rtt.xproc_nospin p50 (%.0f ns) is under half the futex floor (%.0f ns): the worker sleeps"
          % (a, b))
    print("        and is woken, but the producer rarely does: its FUTEX_WAKE returns after the job is")
    print("        done, so a round trip costs one wake-up where the floor's costs two")

meta = res.get("meta", {})
cpus = meta.get("cpus") or 1
if meta.get("loadavg_1m", 0) > 0.5 * cpus:
    print("  note: load average was %.2f on %d CPUs when the run started; other work skews every figure"
          % (meta["loadavg_1m"], cpus))

def fmt_ns(v):
    return "%.2f us" % (v / 1000.0)

sweep = sorted((int(k[len("rtt.spin_"):-2]), o) for k, o in res.items()
               if k and k.startswith("rtt.spin_") and k.endswith("us") and "error" not in o)
if sweep:
    print("spin sweep (rtt.xproc at each spin budget, both processes)")
    for us, o in sweep:
        print("  %3d us   p50 %10s   p99 %10s   p999 %10s" % (us, fmt_ns(o["p50_ns"]), fmt_ns(o["p99_ns"]), fmt_ns(o["p999_ns"])))

if errors:
    print("errors:")
    for e in errors:
        print("  " + e)
EOF

if [ ${#failed[@]} -gt 0 ]; then
	echo "bench/run.sh: failed: ${failed[*]}" >&2
	exit 1
fi
exit 0
