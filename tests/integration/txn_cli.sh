#!/usr/bin/env bash
# txn_cli.sh - `decree txn` against a real coordinator and a real PostgreSQL
# (tests/lib/pgharness.sh, one server holding both resources): commit with
# rows shown, a retry with the same idempotency key runs nothing, a failing
# statement aborts with its SQLSTATE (exit 1), status by gid, branch gid and
# key, list by state, and "connection refused" (exit 2) once the
# coordinator is gone.  The unit test tests/unit/test_cmd_txn.c covers the
# corner cases against a fake; this checks the real API's answers parse.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
if [ -z "${PGH_CONNINFO_0:-}" ]; then
	exec bash tests/lib/pgharness.sh with 1 bash "$0" "$@"
fi
D=${DECREE_BIN:-$PWD/build/decree}
W=$(mktemp -d /tmp/decree-txn-cli-XXXXXX) || exit 1
CP=
cleanup() {
	[ -n "$CP" ] && kill "$CP" 2>/dev/null && wait "$CP" 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	echo "--- last output:" >&2
	cat "$W/out" "$W/err" >&2 2>/dev/null
	echo "--- coordinator log:" >&2
	tail -20 "$W/coord.log" >&2 2>/dev/null
	exit 1
}

# Runs decree txn ARGS; $rc, $W/out, $W/err hold what came of it.
txn() {
	"$D" txn "$@" >"$W/out" 2>"$W/err"
	rc=$?
}
has() { grep -qF -- "$1" "$W/out" || fail "expected \"$1\" in the output"; }
has_err() { grep -qF -- "$1" "$W/err" || fail "expected \"$1\" on stderr"; }

# Port 0: the coordinator picks a free port and prints it once it listens
# ("decree coordinator c1 listening on 127.0.0.1:0 port 31234").
cat >"$W/c.json" <<EOF
{"node_id": "c1", "cluster_id": "cli", "listen": {"http": "127.0.0.1:0"},
 "data_dir": "$W/data",
 "resources": [{"name": "bank_a", "driver": "postgres", "conninfo": "$PGH_CONNINFO_0"},
               {"name": "bank_b", "driver": "postgres", "conninfo": "$PGH_CONNINFO_0"}],
 "limits": {"max_rows": 3}}
EOF
"$D" coordinator --config "$W/c.json" >"$W/coord.log" 2>&1 &
CP=$!
PORT=
for _ in $(seq 600); do
	PORT=$(sed -n 's/^decree coordinator .* listening on .* port \([0-9]*\)$/\1/p' "$W/coord.log")
	[ -n "$PORT" ] && break
	kill -0 "$CP" 2>/dev/null || break
	sleep 0.05
done
[ -n "$PORT" ] || fail "coordinator did not start"
export DECREE_COORDINATOR=127.0.0.1:$PORT
txn list
[ $rc -eq 0 ] || fail "first list: exit $rc"

cat >"$W/setup.json" <<'EOF'
{"branches": [
  {"resource": "bank_a", "statements": [
     "CREATE TABLE acct_a (id int PRIMARY KEY, bal int NOT NULL CHECK (bal >= 0))",
     "INSERT INTO acct_a VALUES (1, 100), (2, 50)"]},
  {"resource": "bank_b", "statements": [
     "CREATE TABLE acct_b (id int PRIMARY KEY, bal int NOT NULL CHECK (bal >= 0))",
     "INSERT INTO acct_b VALUES (1, 0)"]}]}
EOF
# It listens before its new epoch is durable: until then a run is refused
# with 503 unavailable (exit 2, nothing ran).
for _ in $(seq 200); do
	txn run "$W/setup.json"
	[ $rc -eq 2 ] && grep -qF "503 Service Unavailable: unavailable" "$W/err" || break
	sleep 0.05
done
[ $rc -eq 0 ] || fail "setup: exit $rc"
has ": committed"
has "statement 2: 2 rows affected"

cat >"$W/xfer.json" <<'EOF'
{"branches": [
  {"resource": "bank_a", "statements": [
     {"sql": "UPDATE acct_a SET bal = bal - $1 WHERE id = 1", "params": [10]},
     "SELECT id, bal, NULL AS note FROM acct_a ORDER BY id"]},
  {"resource": "bank_b", "statements": [
     {"sql": "UPDATE acct_b SET bal = bal + $1 WHERE id = 1 RETURNING bal", "params": [10]}]}],
 "timeout_ms": 5000}
EOF
txn run --idempotency-key xfer-1 "$W/xfer.json"
[ $rc -eq 0 ] || fail "transfer: exit $rc"
gid=$(sed -n 's/^txn \([^:]*\): committed$/\1/p' "$W/out")
[ -n "$gid" ] || fail "no gid in the transfer's output"
has "  idempotency key: xfer-1"
has "branch 1 of 2: bank_a ${gid}_1of2 "
has "    id | bal | note"
has "    1  | 90  | NULL"
has "  statement 1: 1 row"
has "    10"

# The same key again: the same transaction, nothing runs twice.
txn run --idempotency-key xfer-1 "$W/xfer.json"
[ $rc -eq 0 ] || fail "retry: exit $rc"
has "txn $gid: committed"
echo '{"branches": [{"resource": "bank_b", "statements": ["SELECT bal FROM acct_b WHERE id = 1"]}]}' >"$W/q.json"
txn run "$W/q.json"
[ $rc -eq 0 ] || fail "query: exit $rc"
has "    bal"
grep -qx "    10" "$W/out" || fail "the retry ran the transfer again"

# A CHECK violation on branch 1: aborted, exit 1, nothing changed.
sed 's/"params": \[10\]/"params": [1000]/' "$W/xfer.json" >"$W/bad.json"
txn run "$W/bad.json"
[ $rc -eq 1 ] || fail "abort: exit $rc, want 1"
has ": aborted"
has "  error: statement failed on branch 1 (bank_a)"
has "    SQLSTATE 23514: "
has "  statement 1 failed: SQLSTATE 23514: "
txn run "$W/q.json"
grep -qx "    10" "$W/out" || fail "the aborted transfer changed bank_b"

# Rows over limits.max_rows are cut and the output says so.
echo '{"branches": [{"resource": "bank_a", "statements": ["SELECT g FROM generate_series(1, 10) g"]}]}' | "$D" txn run - >"$W/out" 2>"$W/err"
rc=$?
[ $rc -eq 0 ] || fail "many rows: exit $rc"
has "statement 1: 10 rows, the first 3 shown (limits.max_rows)"

# Rejected before anything ran: exit 2 with the coordinator's reason.
echo '{"branches": [{"resource": "nope", "statements": ["SELECT 1"]}]}' >"$W/r.json"
txn run "$W/r.json"
[ $rc -eq 2 ] || fail "unknown resource: exit $rc, want 2"
has_err 'answered 400 Bad Request: unknown_resource: branches[0].resource: unknown resource "nope"'

# status and list
txn status "$gid"
[ $rc -eq 0 ] || fail "status: exit $rc"
has "txn $gid: committed"
txn status "${gid}_2of2"
[ $rc -eq 0 ] || fail "status by branch gid: exit $rc"
has "branch 2 of 2: bank_b ${gid}_2of2 committed"
txn status --key xfer-1 --json
[ $rc -eq 0 ] || fail "status --key: exit $rc"
has "\"gid\":\"$gid\""
txn status cli_999_1
[ $rc -eq 1 ] || fail "status of an unknown txn: exit $rc, want 1"
has_err "404 Not Found: not_found"
txn list --state done --limit 2
[ $rc -eq 0 ] || fail "list: exit $rc"
has "GID"
has "2 transactions (the limit; --limit N shows more)"
txn list --state nonsense
[ $rc -eq 2 ] || fail "list --state nonsense: exit $rc, want 2"
has_err "state: must be one of"

# Gone: connection refused, exit 2.
kill "$CP"
wait "$CP" 2>/dev/null
CP=
txn run "$W/q.json"
[ $rc -eq 2 ] || fail "no coordinator: exit $rc, want 2"
has_err "cannot reach coordinator at 127.0.0.1:$PORT: connection refused"
echo "ok"
