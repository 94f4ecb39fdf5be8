#!/usr/bin/env bash
# bench/peers/run.sh - what `make bench-peers` runs after building
# $BUILD/bench/peers: starts the real peers on loopback (beanstalkd without
# and with an fsynced binlog, redis-server without persistence and with
# appendfsync always), runs every system's workloads in one go, stops the
# servers, and prints the Markdown tables and the ratios to the targets
# (bench/peers/report.py), with a latency plot drawn by gnuplot.
#
#   BUILD=build bench/peers/run.sh
#   BENCH_SCALE=0.2 make bench-peers    a quick run (counts and time caps x 0.2)
#   BENCH_ONLY=redis/,taskring/rtt      only the system/scenario names so prefixed
#   PEERS_SYSTEMS="taskring redis"      only these systems (default: all)
#   PEERS_PUBLISH=1                     also copy the plot and the tables to
#                                       docs/ (what the README shows)
#
# Output: one JSON line per (system, scenario) on stdout and in
# $BUILD/bench/peers.jsonl (a first "meta" line says where and when), the
# tables in $BUILD/bench/peers.md, the plot in $BUILD/bench/peers-latency.png.
# Servers' data (binlog, AOF) and the SQLite databases and taskring logs go
# under $BUILD/bench/peers-data, on the repository's disk: fsync means
# nothing on tmpfs. Exit status: 0; 1 when a scenario failed (its line has
# "error"); 2 when something the run needs is missing.
set -u

BUILD=${BUILD:-build}
here=$(cd "$(dirname "$0")" && pwd)
bin="$BUILD/bench/peers"
out="$BUILD/bench/peers.jsonl"
data="$(pwd)/$BUILD/bench/peers-data"
systems=${PEERS_SYSTEMS:-"taskring taskring-durable beanstalkd beanstalkd-f0 redis redis-always sqlite-normal sqlite-full pipe unix mq"}
timeout_s=${BENCH_TIMEOUT:-900}

for tool in "$bin" beanstalkd redis-server redis-cli python3 gnuplot; do
	if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "$tool" ]; then
		echo "bench/peers/run.sh: $tool is missing (make bench-peers installs and builds everything)" >&2
		exit 2
	fi
done

rm -rf "$data"
mkdir -p "$data/beanstalkd-binlog" "$data/redis-always" "$data/redis" "$data/work" || exit 2

# Four free loopback ports, picked by the kernel.
read -r p_bs p_bs_f0 p_rd p_rd_always < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
)

pids=()
cleanup() {
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null
	done
	rm -rf "$data"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

beanstalkd -l 127.0.0.1 -p "$p_bs" &
pids+=($!)
beanstalkd -l 127.0.0.1 -p "$p_bs_f0" -b "$data/beanstalkd-binlog" -f0 &
pids+=($!)
redis-server --bind 127.0.0.1 --port "$p_rd" --save '' --appendonly no --dir "$data/redis" \
	--daemonize no --loglevel warning &
pids+=($!)
redis-server --bind 127.0.0.1 --port "$p_rd_always" --save '' --appendonly yes --appendfsync always \
	--dir "$data/redis-always" --daemonize no --loglevel warning &
pids+=($!)

# Up within 10 s, or the run is off.
up() {
	for _ in $(seq 100); do
		case $1 in
		redis) [ "$(redis-cli -p "$2" ping 2>/dev/null)" = PONG ] && return 0 ;;
		beanstalkd) (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0 ;;
		esac
		sleep 0.1
	done
	echo "bench/peers/run.sh: $1 on port $2 did not come up" >&2
	return 1
}
up beanstalkd "$p_bs" && up beanstalkd "$p_bs_f0" && up redis "$p_rd" && up redis "$p_rd_always" || exit 2

export PEERS_HOST=127.0.0.1 PEERS_DIR="$data/work"
export PEERS_PORT_BEANSTALKD=$p_bs PEERS_PORT_BEANSTALKD_F0=$p_bs_f0
export PEERS_PORT_REDIS=$p_rd PEERS_PORT_REDIS_ALWAYS=$p_rd_always

mkdir -p "$BUILD/bench"
python3 "$here/../meta.py" bench_scale="${BENCH_SCALE:-1}" beanstalkd="$(beanstalkd -v 2>&1)" \
	redis="$(redis-server --version | sed 's/ sha=.*//')" \
	sqlite="$(dpkg-query -W -f='${Version}' libsqlite3-0 2>/dev/null)" \
	commit="$(git -C "$here" rev-parse --short HEAD 2>/dev/null)" \
	data_fs="$(findmnt -n -o FSTYPE --target "$data" 2>/dev/null)" >"$out" || exit 2
cat "$out"

failed=0
for s in $systems; do
	timeout --kill-after=10 "$timeout_s" "$bin" "$s" | tee -a "$out"
	rc=${PIPESTATUS[0]}
	[ "$rc" = 0 ] || { echo "bench/peers/run.sh: $s: exit $rc" >&2; failed=1; }
done

echo
python3 "$here/report.py" "$out" "$BUILD/bench/peers.md" "$BUILD/bench/peers-latency" || failed=1
if [ "${PEERS_PUBLISH:-0}" = 1 ]; then
	mkdir -p docs
	cp "$BUILD/bench/peers-latency.png" docs/peers-latency.png
	cp "$BUILD/bench/peers.md" docs/peers.md
	cp "$out" docs/peers.jsonl
	echo "published: docs/peers-latency.png docs/peers.md docs/peers.jsonl"
fi
exit $failed
