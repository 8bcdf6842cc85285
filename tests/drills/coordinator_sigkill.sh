#!/usr/bin/env bash
# coordinator_sigkill.sh - drill: the coordinator is SIGKILLed from outside
# at an arbitrary moment while four clients run transfers, and restarted on
# the same data_dir; in one round a database is SIGKILLed under load too.
# After each round every transfer is all-or-nothing and nothing is left
# prepared.
#
# Each transfer moves money between two random accounts on the two
# databases AND inserts its own id into a ledger table on both, in the same
# branches.  So after recovery:
#   - the ledgers of the two databases hold exactly the same ids (no
#     transfer half-applied: the per-transfer check),
#   - the money in both databases together is unchanged,
#   - pg_prepared_xacts is empty on both (polled, bounded),
#   - every transfer a client was told "committed" is in both ledgers, and
#     none it was told "aborted" is in either.
# Every wait polls a condition with a deadline; none is a fixed sleep.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
BIN=${DECREE_BIN:-$PWD/build/decree}
ROUNDS=2
CLIENTS=4
ACCOUNTS=20
BALANCE=1000

# shellcheck source=tests/lib/pgharness.sh
source tests/lib/pgharness.sh

D=$(mktemp -d "${TMPDIR:-/tmp}/decree-drill-XXXXXX") || exit 1
CP=
LOADERS=()

cleanup() {
	local p
	# Only our own children by pid: a bare `wait` would also wait for the
	# harness's coprocess, which runs until pgh_destroy.
	for p in $CP "${LOADERS[@]}"; do
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	pgh_destroy
	rm -rf -- "$D"
}

fail() {
	echo "FAIL: $*" >&2
	echo "--- coordinator stderr (tail):" >&2
	tail -n 20 "$D/err" >&2
	exit 1
}

# Polls "$@" (a command) every 20 ms until it succeeds, at most $1 s.
wait_for() {
	local limit=$1 end
	shift
	end=$((SECONDS + limit))
	until "$@"; do
		[ "$SECONDS" -ge "$end" ] && return 1
		sleep 0.02
	done
}

pgh_start 2 || exit 1
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

sql() { psql -qAtX -v ON_ERROR_STOP=1 "$(pgh_conninfo "$1")" -c "$2"; }

for i in 0 1; do
	sql $i "create table accounts(id int primary key, balance int not null
	         check (balance >= 0));
	        insert into accounts select g, $BALANCE from generate_series(1, $ACCOUNTS) g;
	        create table ledger(tid text primary key);" || fail "setup of server $i"
done
TOTAL=$((2 * ACCOUNTS * BALANCE))

cat >"$D/cfg.json" <<JSON || exit 1
{"node_id":"c1","cluster_id":"drill","listen":{"http":"127.0.0.1:0"},
 "data_dir":"$D/data",
 "timeouts":{"retry_initial_ms":20,"retry_max_ms":200,"statement_ms":2000,
             "prepare_ms":3000},
 "resources":[{"name":"bank_a","driver":"postgres","conninfo":"$(pgh_conninfo 0)"},
              {"name":"bank_b","driver":"postgres","conninfo":"$(pgh_conninfo 1)"}]}
JSON

listening() { grep -q 'listening on' "$D/out" 2>/dev/null; }
ready() {
	PORT=$(sed -n 's/.*listening on .* port \([0-9]*\).*/\1/p' "$D/out")
	[ -n "$PORT" ] && curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/healthz"
}

start_coordinator() {
	: >"$D/out"
	"$BIN" coordinator --config "$D/cfg.json" >"$D/out" 2>>"$D/err" &
	CP=$!
	wait_for 30 listening || fail "coordinator did not listen"
	wait_for 30 ready || fail "coordinator not ready"
}

committed_count() {
	curl -s --max-time 2 "http://127.0.0.1:$PORT/metrics" |
		sed -n 's/^decree_txns_total{outcome="committed"} \([0-9]*\).*/\1/p'
}

# One client: transfers until $D/stop exists; logs "tid status outcome".
loader() {
	local c=$1 n=0 from to amount dir tid out code outcome
	while [ ! -e "$D/stop" ]; do
		n=$((n + 1))
		tid="r${ROUND}c${c}n${n}"
		from=$((RANDOM % ACCOUNTS + 1))
		to=$((RANDOM % ACCOUNTS + 1))
		amount=$((RANDOM % 20 + 1))
		dir=$((RANDOM % 2))
		local fa=bank_a fb=bank_b
		[ "$dir" -eq 1 ] && { fa=bank_b; fb=bank_a; }
		out=$(curl -s --max-time 10 -w '\n%{http_code}' -XPOST \
			"http://127.0.0.1:$PORT/v1/txns" -d "{\"branches\":[
			{\"resource\":\"$fa\",\"statements\":[
			 {\"sql\":\"update accounts set balance = balance - \$1 where id = \$2\",\"params\":[$amount,$from]},
			 {\"sql\":\"insert into ledger values (\$1)\",\"params\":[\"$tid\"]}]},
			{\"resource\":\"$fb\",\"statements\":[
			 {\"sql\":\"update accounts set balance = balance + \$1 where id = \$2\",\"params\":[$amount,$to]},
			 {\"sql\":\"insert into ledger values (\$1)\",\"params\":[\"$tid\"]}]}]}")
		code=${out##*$'\n'}
		outcome=$(sed -n 's/.*"outcome":"\([a-z]*\)".*/\1/p' <<<"${out%$'\n'*}")
		echo "$tid $code ${outcome:-none}" >>"$D/client.$c"
	done
}

check_round() {
	local a b la lb
	wait_for 30 bash -c "[ \"\$(psql -qAtX '$(pgh_conninfo 0)' -c 'select count(*) from pg_prepared_xacts')\" = 0 ] &&
		[ \"\$(psql -qAtX '$(pgh_conninfo 1)' -c 'select count(*) from pg_prepared_xacts')\" = 0 ]" ||
		fail "round $ROUND: prepared transactions left"
	a=$(sql 0 "select sum(balance) from accounts") || fail "query a"
	b=$(sql 1 "select sum(balance) from accounts") || fail "query b"
	[ $((a + b)) -eq "$TOTAL" ] || fail "round $ROUND: total $((a + b)), wanted $TOTAL"
	sql 0 "select tid from ledger order by tid" >"$D/ledger.a" || fail "ledger a"
	sql 1 "select tid from ledger order by tid" >"$D/ledger.b" || fail "ledger b"
	cmp -s "$D/ledger.a" "$D/ledger.b" ||
		fail "round $ROUND: half-applied transfers: $(diff "$D/ledger.a" "$D/ledger.b" | head -5)"
	cat "$D"/client.* 2>/dev/null | while read -r tid code outcome; do
		if [ "$outcome" = committed ] && ! grep -qx "$tid" "$D/ledger.a"; then
			echo "$tid told committed, not applied"
		elif [ "$outcome" = aborted ] && grep -qx "$tid" "$D/ledger.a"; then
			echo "$tid told aborted, applied"
		fi
	done >"$D/lies"
	[ -s "$D/lies" ] && fail "round $ROUND: $(head -3 "$D/lies")"
	echo "round $ROUND: $(wc -l <"$D/ledger.a") transfers applied in all," \
		"$(cat "$D"/client.* | grep -c ' committed$') told committed" \
		"this round, $(cat "$D"/client.* | grep -vc ' committed$\| aborted$') with no answer"
}

start_coordinator
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
	rm -f "$D/stop" "$D"/client.*
	base=$(committed_count)
	LOADERS=()
	for ((c = 0; c < CLIENTS; c++)); do
		loader "$c" &
		LOADERS+=($!)
	done
	# Let some transfers through, then pull the plug mid-flight.
	wait_for 30 bash -c "n=\$(curl -s --max-time 2 http://127.0.0.1:$PORT/metrics |
		sed -n 's/^decree_txns_total{outcome=\"committed\"} \([0-9]*\).*/\1/p');
		[ \"\${n:-0}\" -ge $((${base:-0} + 20 + RANDOM % 30)) ]" ||
		fail "round $ROUND: no progress"
	if [ "$ROUND" -eq 2 ]; then
		# A database crashes under load too, and comes back.
		pgh_kill 1 || fail "kill server 1"
		pgh_start_server 1 || fail "restart server 1"
	fi
	kill -KILL "$CP"
	wait "$CP" 2>/dev/null
	CP=
	touch "$D/stop"
	for p in "${LOADERS[@]}"; do wait "$p"; done
	LOADERS=()
	start_coordinator
	check_round
done
kill -TERM "$CP"
wait "$CP"
rc=$?
CP=
[ "$rc" -eq 0 ] || fail "coordinator exit $rc on SIGTERM"
echo "ok: $ROUNDS rounds"
