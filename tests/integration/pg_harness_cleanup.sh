#!/usr/bin/env bash
# pg_harness_cleanup.sh - a script that holds a PostgreSQL harness is
# SIGKILLed: its watchdog must stop every server of that harness and remove
# their directories.  (tests/lib/pgharness.sh, docs/testing.md)
#
# The holder's stdout and stderr are one pipe to this script.  The engine
# inherits the holder's stderr and the servers do not (their output goes to
# their logs), so end of file on that pipe means the holder and its engine
# are both gone: that is the condition waited for, with a time limit.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
LIB=$PWD/tests/lib/pgharness.sh

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# Live processes whose working directory is $1 or below (PostgreSQL runs
# in its data directory).
procs_in() {
	find /proc -mindepth 2 -maxdepth 2 -name cwd \( -lname "$1" -o -lname "$1/*" \) \
		2>/dev/null | cut -d/ -f3
}

alive() {
	local s
	read -r s 2>/dev/null <"/proc/$1/stat" || return 1
	s=${s##*) }
	[ "${s%% *}" != Z ]
}

coproc HOLDER {
	exec bash -c '
		source "$1" || exit 1
		pgh_start 2 || exit 1
		for i in 0 1; do echo "srv $(pgh_pid $i) $(pgh_dir $i)"; done
		echo up
		read -r _' holder "$LIB" 2>&1
}
holder=$HOLDER_PID
# Our own copy of the read end: bash drops the coproc's fds once it is reaped.
exec {out}<&"${HOLDER[0]}"

pids=()
dirs=()
while :; do
	IFS= read -r -t 60 -u "$out" line || fail "holder did not report its servers within 60 s"
	echo "holder: $line"
	case $line in
	srv\ *)
		read -r _ pid dir <<<"$line"
		pids+=("$pid")
		dirs+=("$dir")
		;;
	up) break ;;
	esac
done
[ ${#pids[@]} -eq 2 ] || fail "expected 2 servers, got ${#pids[@]}"
for i in 0 1; do
	[ -d "${dirs[$i]}" ] || fail "${dirs[$i]} missing while the holder runs"
	alive "${pids[$i]}" || fail "postmaster ${pids[$i]} not running while the holder runs"
	[[ ${dirs[$i]} == */decree-pg-* ]] || fail "bad directory name ${dirs[$i]}"
	[ -n "$(procs_in "${dirs[$i]}")" ] || fail "no process found in ${dirs[$i]}"
done

kill -KILL "$holder" || fail "cannot kill the holder"
wait "$holder" 2>/dev/null

while :; do
	IFS= read -r -t 30 -u "$out" line
	rc=$?
	[ $rc -eq 0 ] && { echo "after kill: $line"; continue; }
	[ $rc -gt 128 ] && fail "watchdog still running 30 s after the holder was killed"
	break
done

for i in 0 1; do
	[ ! -e "${dirs[$i]}" ] || fail "${dirs[$i]} still exists"
	! alive "${pids[$i]}" || fail "postmaster ${pids[$i]} still runs"
	left=$(procs_in "${dirs[$i]}")
	[ -z "$left" ] || fail "processes still in ${dirs[$i]}: $left"
done
echo "ok: servers stopped and directories removed after SIGKILL of the holder"

# The engine itself SIGKILLed (it cannot clean up): `pgharness.sh sweep`, run
# by pgh_destroy and by every engine that starts, removes what it left.
source "$LIB"
pgh_start 1 || fail "pgh_start 1"
dir=$(pgh_dir 0)
pid=$(pgh_pid 0)
engine=$PGH_ENGINE_PID
kill -KILL "$engine"
wait "$engine" 2>/dev/null
[ -d "$dir" ] && alive "$pid" || fail "server gone before the sweep: nothing to test"
pgh_destroy
[ ! -e "$dir" ] || fail "$dir still exists after the sweep"
! alive "$pid" || fail "postmaster $pid still runs after the sweep"
left=$(procs_in "$dir")
[ -z "$left" ] || fail "processes still in $dir after the sweep: $left"
echo "ok: sweep removes what a SIGKILLed engine left"
