#!/usr/bin/env bash
# make demo: two throwaway PostgreSQL servers, one decree coordinator, and a
# few money transfers between the two databases, one of which must abort.
# Everything runs on 127.0.0.1 in temporary directories and is removed at
# the end (also on Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
DECREE="$PWD/$BUILD/decree"
EX=examples/bank-transfer

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# shellcheck source=tests/lib/pgharness.sh
source tests/lib/pgharness.sh
work=$(mktemp -d "${TMPDIR:-/tmp}/decree-demo-XXXXXX")
coord_pid=
cleanup() {
	[ -n "$coord_pid" ] && kill "$coord_pid" 2>/dev/null && wait "$coord_pid" 2>/dev/null
	pgh_destroy
	rm -rf "$work"
}

say "starting two PostgreSQL servers (bank_a, bank_b)"
pgh_start 2
trap cleanup EXIT
A=$(pgh_conninfo 0)
B=$(pgh_conninfo 1)
psql -qX "$A" -f $EX/schema.sql -c "INSERT INTO accounts VALUES ('alice', 100)"
psql -qX "$B" -f $EX/schema.sql -c "INSERT INTO accounts VALUES ('bob', 50)"
echo "bank_a: $A"
echo "bank_b: $B"

say "starting the coordinator"
cat >"$work/coordinator.json" <<JSON
{
  "node_id": "c1",
  "cluster_id": "demo",
  "listen": {"http": "127.0.0.1:0"},
  "data_dir": "$work/data",
  "resources": [
    {"name": "bank_a", "driver": "postgres", "conninfo": "$A"},
    {"name": "bank_b", "driver": "postgres", "conninfo": "$B"}
  ]
}
JSON
"$DECREE" coordinator --config "$work/coordinator.json" \
	>"$work/coordinator.out" 2>"$work/coordinator.log" &
coord_pid=$!
port=
for _ in $(seq 100); do
	port=$(sed -n 's/.* port \([0-9][0-9]*\)$/\1/p' "$work/coordinator.out")
	[ -n "$port" ] && break
	kill -0 "$coord_pid" 2>/dev/null || { cat "$work/coordinator.log"; exit 1; }
	sleep 0.1
done
[ -n "$port" ] || { echo "coordinator did not start" >&2; cat "$work/coordinator.log"; exit 1; }
export DECREE_COORDINATOR="127.0.0.1:$port"
echo "coordinator on $DECREE_COORDINATOR (log: decision log in $work/data)"

balances() {
	printf '  bank_a: %s\n' "$(psql -qAtX "$A" -c "SELECT owner || ' ' || balance FROM accounts")"
	printf '  bank_b: %s\n' "$(psql -qAtX "$B" -c "SELECT owner || ' ' || balance FROM accounts")"
}
say "balances before"
balances

say "transfer 30 from alice (bank_a) to bob (bank_b): commits"
"$DECREE" txn run $EX/transfer.json
say "the same transfer again: commits"
"$DECREE" txn run $EX/transfer.json
say "transfer 500: alice has only 40, the CHECK constraint fails, every branch aborts"
if "$DECREE" txn run $EX/overdraft.json; then
	echo "demo: the overdraft committed, which must never happen" >&2
	exit 1
fi

say "balances after (alice 40, bob 110: the total is still 150)"
balances
say "prepared transactions left behind (none)"
printf '  bank_a: [%s]\n  bank_b: [%s]\n' \
	"$(psql -qAtX "$A" -c "SELECT string_agg(gid, ',') FROM pg_prepared_xacts")" \
	"$(psql -qAtX "$B" -c "SELECT string_agg(gid, ',') FROM pg_prepared_xacts")"
say "what the coordinator remembers"
"$DECREE" txn list --state done
say "done: stopping the coordinator and both servers"
