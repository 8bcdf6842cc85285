#!/usr/bin/env bash
# pg_harness_shell.sh - the shell face of the PostgreSQL harness
# (tests/lib/pgharness.sh): pgh_* functions, a prepared transaction that
# survives a crash, clean stop and restart, refused bad input, cleanup when
# a script is terminated or exits, and `pgharness.sh with`.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
LIB=$PWD/tests/lib/pgharness.sh
PSQL=$(pg_config --bindir 2>/dev/null)/psql
[ -x "$PSQL" ] || PSQL=psql

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

alive() {
	local s
	read -r s 2>/dev/null <"/proc/$1/stat" || return 1
	s=${s##*) }
	[ "${s%% *}" != Z ]
}

sql() {
	"$PSQL" -X -A -t -q -v ON_ERROR_STOP=1 -d "$1" -c "$2"
}

# 1. A script stopped by SIGTERM cleans up through its trap.  Run as root,
# this script runs that one as the user nobody, so the harness is tested as
# an ordinary user too (the rest of this file tests it as root).
as=()
if [ "$(id -u)" = 0 ] && id -u nobody >/dev/null 2>&1 &&
	setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)" --clear-groups \
		test -r "$LIB" 2>/dev/null; then
	as=(setpriv "--reuid=$(id -u nobody)" "--regid=$(id -g nobody)" --clear-groups)
fi
coproc TERMED {
	exec "${as[@]}" bash -c 'source "$1" && pgh_start 1 && echo "$(pgh_pid 0) $(pgh_dir 0) $(id -un)" && read -r _' _ "$LIB"
}
termed=$TERMED_PID
exec {tout}<&"${TERMED[0]}"
IFS= read -r -t 60 -u "$tout" info || fail "terminated script did not start"
read -r pid dir user <<<"$info"
[ -d "$dir" ] && alive "$pid" || fail "server of the script not up"
if [ ${#as[@]} -gt 0 ]; then
	[ "$user" = nobody ] || fail "the script ran as $user, not nobody"
	[ "$(stat -c %U "$dir")" = nobody ] || fail "$dir not owned by nobody"
fi
kill -TERM "$termed"
wait "$termed"
rc=$?
[ $rc -eq 143 ] || fail "SIGTERMed script exited $rc, expected 143"
[ ! -e "$dir" ] || fail "$dir left behind after SIGTERM"
! alive "$pid" || fail "postmaster $pid left running after SIGTERM"
exec {tout}<&-
echo "ok: SIGTERM cleans up (as $user)"

# 2. The functions, in this shell.
source "$LIB"
pgh_start 2 || fail "pgh_start 2"
[ "$(pgh_count)" = 2 ] || fail "pgh_count is $(pgh_count)"
[ "$(pgh_port 0)" != "$(pgh_port 1)" ] || fail "two servers on one port"
[[ $(pgh_conninfo 1) == "host=127.0.0.1 port=$(pgh_port 1) dbname=postgres user=postgres connect_timeout=5" ]] ||
	fail "conninfo: $(pgh_conninfo 1)"
[ "$(sql "$(pgh_conninfo_unix 0)" 'show max_prepared_transactions')" = 100 ] ||
	fail "max_prepared_transactions over the unix socket"
[ "$(sql "$(pgh_conninfo 1)" 'select inet_client_addr()')" = 127.0.0.1 ] ||
	fail "TCP conninfo does not use loopback"

for i in 0 1; do
	sql "$(pgh_conninfo "$i")" "CREATE TABLE t (v int)" || fail "create on server $i"
	sql "$(pgh_conninfo "$i")" "BEGIN; INSERT INTO t VALUES ($i + 10);
		PREPARE TRANSACTION 'g';" || fail "prepare on server $i"
done
port0=$(pgh_port 0)
old=$(pgh_pid 0)
pgh_kill 0 || fail "pgh_kill 0"
! alive "$old" || fail "postmaster $old survived pgh_kill"
[ "$(pgh_pid 0)" = 0 ] || fail "pid of a killed server is $(pgh_pid 0)"
sql "$(pgh_conninfo 0)" 'select 1' 2>/dev/null && fail "killed server answers"
pgh_start_server 0 || fail "pgh_start_server 0"
[ "$(pgh_port 0)" = "$port0" ] || fail "port changed on restart"
alive "$(pgh_pid 0)" || fail "restarted postmaster not running"
[ "$(sql "$(pgh_conninfo 0)" 'select gid from pg_prepared_xacts')" = g ] ||
	fail "prepared transaction lost in the crash"
sql "$(pgh_conninfo 0)" "COMMIT PREPARED 'g'" || fail "commit prepared after restart"
[ "$(sql "$(pgh_conninfo 0)" 'select v from t')" = 10 ] || fail "committed row missing"

pgh_stop 1 || fail "pgh_stop 1"
pgh_stop 1 || fail "stopping a stopped server"
pgh_start_server 1 || fail "restart after stop"
pgh_start_server 1 2>/dev/null && fail "starting a running server succeeded"
sql "$(pgh_conninfo 1)" "ROLLBACK PREPARED 'g'" || fail "rollback prepared after stop/start"
[ "$(sql "$(pgh_conninfo 1)" 'select count(*) from t')" = 0 ] || fail "rolled back row visible"

pgh_stop 2 2>/dev/null && fail "pgh_stop accepted index 2"
pgh_kill x 2>/dev/null && fail "pgh_kill accepted index x"
pgh_start 1 2>/dev/null && fail "second harness in one shell accepted"
alive "$(pgh_pid 0)" && alive "$(pgh_pid 1)" || fail "refused calls changed the servers"

dirs=("$(pgh_dir 0)" "$(pgh_dir 1)")
pids=("$(pgh_pid 0)" "$(pgh_pid 1)")
pgh_destroy
for i in 0 1; do
	[ ! -e "${dirs[$i]}" ] || fail "${dirs[$i]} left after pgh_destroy"
	! alive "${pids[$i]}" || fail "postmaster ${pids[$i]} left after pgh_destroy"
done
echo "ok: pgh_* functions"

# 3. pgharness.sh with N COMMAND: environment, query, exit status, and
# cleanup by the EXIT trap when the script exits normally.
out=$(bash "$LIB" with 1 bash -c \
	'echo "$PGH_COUNT $PGH_DIR_0"; "$1" -X -A -t -d "$PGH_CONNINFO_0" -c "select 5"; exit 3' _ "$PSQL")
rc=$?
[ $rc -eq 3 ] || fail "with: exit status $rc, expected the command's 3"
read -r count dir <<<"$(head -1 <<<"$out")"
[ "$count" = 1 ] || fail "with: PGH_COUNT=$count"
[ "$(tail -1 <<<"$out")" = 5 ] || fail "with: query through PGH_CONNINFO_0 gave $out"
[[ $dir == */decree-pg-* ]] || fail "with: PGH_DIR_0=$dir"
[ ! -e "$dir" ] || fail "with: $dir left behind after exit"
echo "ok: pgharness.sh with; exit cleans up"
