#!/usr/bin/env bash
# Runs each test program in its own process with a timeout, like liburing's
# runner. Exit 77 from a program means "skipped" and is reported as such,
# never counted as passed. Prints one closing line: "N passed, N failed, N skipped".
set -u
timeout_s=${TEST_TIMEOUT:-600}
# Each suite's stores carry its own run id (tests/testutil.h), so the
# clean-up below never removes the live stores of another suite.
export TR_TEST_RUN=$$
pass=0; fail=0; skip=0; failed=()
for t in "$@"; do
	name=$(basename "$t")
	start=$(date +%s%N)
	timeout --kill-after=10 "$timeout_s" "$t"
	rc=$?
	ms=$(( ($(date +%s%N) - start) / 1000000 ))
	secs=$((ms / 1000)).$(( (ms % 1000) / 100 ))
	case $rc in
	0) pass=$((pass + 1)); echo "PASS $name (${secs}s)";;
	77) skip=$((skip + 1)); echo "SKIP $name (${secs}s)";;
	124|137) fail=$((fail + 1)); failed+=("$name"); echo "FAIL $name: timed out after ${timeout_s}s";;
	*) fail=$((fail + 1)); failed+=("$name"); echo "FAIL $name (exit $rc, ${secs}s)";;
	esac
done
# Leftover stores of crashed tests would fill /dev/shm over many runs.
rm -f /dev/shm/taskring-test-"$$"-* 2>/dev/null
[ $fail -eq 0 ] || echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
