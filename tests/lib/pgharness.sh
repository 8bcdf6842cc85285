#!/usr/bin/env bash
# pgharness.sh - throwaway PostgreSQL servers for decree's tests: the one
# engine behind the C API (tests/lib/pg.c) and the shell functions below.
#
# Three ways in (docs/testing.md has the details):
#   bash tests/lib/pgharness.sh serve N      the engine itself (protocol below)
#   source tests/lib/pgharness.sh            pgh_* functions for shell scripts
#   bash tests/lib/pgharness.sh with N CMD.. runs CMD with PGH_CONNINFO_<i>,
#                                            PGH_PORT_<i>, PGH_DIR_<i> set
#   bash tests/lib/pgharness.sh sweep        removes what SIGKILLed engines
#                                            left behind (note 6)
#
# Design notes
#  1. One engine process per harness, started in a session of its own
#     (setsid) by whoever wants servers.  It makes N directories
#     $TMPDIR/decree-pg-XXXXXX (or /tmp when $TMPDIR will not do), each with
#     data/ (PGDATA), the unix socket .s.PGSQL.<port>, and log (the server's
#     stderr).  initdb runs once; the other servers get a copy of its result.
#  2. Watchdog.  The engine reads its commands from stdin, whose other end
#     only its creator holds.  End of file means the creator is gone -
#     finished, crashed or SIGKILLed - and the engine stops every server at
#     once (SIGQUIT, SIGKILL after a bounded wait), kills whatever still runs
#     in their directories, removes the directories and exits.  The own
#     session keeps a signal sent to the creator's process group (timeout(1)
#     does that) from taking the watchdog down too.  SIGTERM, SIGINT and
#     SIGHUP to the engine clean up the same way.
#  3. Root.  initdb and postgres refuse to run as root, so as root they run
#     through setpriv as an unprivileged user: $DECREE_PG_USER, else
#     decree-pg, else postgres, else a system user decree-pg made here with
#     useradd.  The directories belong to that user.
#  4. Ports.  A server gets a random port in 15000..29999 (below the kernel's
#     ephemeral range); when the bind fails because the port is taken the
#     server is started again on another one.  A restarted server keeps its
#     port.
#  5. No fixed sleeps.  All postmasters start at once; then startup waits,
#     server by server, for pg_isready to succeed (bounded by
#     $DECREE_PG_START_TIMEOUT seconds, default 60), or for the postmaster
#     to die.  A stop waits for the postmaster and its backends to be gone
#     (bounded too, then SIGKILL).  The engine is the postmaster's parent, so
#     a dead postmaster never lingers as a zombie.
#  6. Each directory holds a file "owner" with the engine's pid and start
#     time.  An engine that was itself SIGKILLed cannot clean up; the next
#     engine that starts sweeps away the directories (and servers) of
#     engines that are gone.
#  7. Nothing outside the directories: dynamic shared memory is "mmap"
#     (files in data/pg_dynshmem, not /dev/shm), and the small System V
#     segment a SIGKILLed postmaster leaves is removed once its processes
#     are gone.
#  8. A crash (kill) SIGKILLs the postmaster and its backends together, so a
#     restart never finds old backends still attached to shared memory.
#     Processes of a server are found by their working directory, which
#     PostgreSQL sets to the data directory.
#
# Engine protocol, one line each way, fields separated by one space:
#   at start:  "server I PORT DIR PID" for each server, then "ready"; or
#              "error MESSAGE" (everything already removed) and exit 1.
#   commands:  "stop I" (fast shutdown), "kill I" (SIGKILL), "start I",
#              "pid I", "quit" (clean up, then answer).
#   answers:   "ok" or "ok PID" (start, pid), or "error MESSAGE".
#   A command may start with a tag "@WORD"; its answer then starts with the
#   same tag, so a client can skip an answer meant for an earlier request
#   (one whose process died before reading it).

# ---------------------------------------------------------------- engine

# Answers on the protocol fd, after the request's tag if it had one.
pgh__reply() {
	printf '%s\n' "${PGH_TAG:+$PGH_TAG }$*" >&3 2>/dev/null || true
}

pgh__log() {
	printf 'pgharness: %s\n' "$*" >&2
}

pgh__alive() {
	local s
	[ -r "/proc/$1/stat" ] || return 1
	read -r s 2>/dev/null <"/proc/$1/stat" || return 1
	s=${s##*) }
	[ "${s%% *}" != Z ]
}

# Pids of the live processes whose working directory is $1 or below it.
pgh__procs_in() {
	local f pid
	while IFS= read -r f; do
		pid=${f#/proc/}
		pid=${pid%/cwd}
		[ "$pid" != "$$" ] && pgh__alive "$pid" && echo "$pid"
	done < <(find /proc -mindepth 2 -maxdepth 2 -name cwd \
		\( -lname "$1" -o -lname "$1/*" \) 2>/dev/null)
}

# Waits until none of the pids is alive; 1 if some still are after $1
# seconds.
pgh__wait_gone() {
	local limit=$1 end p left
	shift
	end=$((SECONDS + limit))
	while :; do
		left=
		for p in "$@"; do
			pgh__alive "$p" && left="$left $p"
		done
		[ -z "$left" ] && return 0
		[ "$SECONDS" -ge "$end" ] && return 1
		sleep 0.02
	done
}

# SIGKILLs everything running in directory $1 and waits until it is gone.
pgh__kill_dir() {
	local pids
	pids=$(pgh__procs_in "$1")
	[ -z "$pids" ] && return 0
	# shellcheck disable=SC2086
	kill -KILL $pids 2>/dev/null
	# shellcheck disable=SC2086
	pgh__wait_gone 10 $pids
}

# After every process of the server with data directory $1 is gone:
# removes the System V shared memory segment a crashed postmaster leaves
# behind (postmaster.pid line 7 holds its key and id), if it is still the
# same segment (same key) and nothing is attached.  A clean shutdown removes
# it itself; a SIGKILLed postmaster cannot.
pgh__release_shm() {
	local key id k n
	[ -f "$1/postmaster.pid" ] || return 0
	command -v ipcs >/dev/null 2>&1 || return 0
	read -r key id 2>/dev/null < <(sed -n 7p "$1/postmaster.pid") || return 0
	[[ "$key" =~ ^[0-9]+$ && "$id" =~ ^[0-9]+$ ]] || return 0
	read -r k n < <(ipcs -m 2>/dev/null | awk -v id="$id" '$2 == id { print $1, $6 }')
	[ -n "$k" ] && [ $((k)) -eq "$key" ] && [ "$n" = 0 ] || return 0
	ipcrm -m "$id" 2>/dev/null
	return 0
}

pgh__bindir() {
	local b cand
	if [ -n "${DECREE_PG_BINDIR:-}" ]; then
		echo "$DECREE_PG_BINDIR"
		return
	fi
	if command -v pg_config >/dev/null 2>&1; then
		b=$(pg_config --bindir 2>/dev/null)
		if [ -n "$b" ] && [ -x "$b/initdb" ] && [ -x "$b/postgres" ]; then
			echo "$b"
			return
		fi
	fi
	b=
	while IFS= read -r cand; do
		[ -x "$cand/initdb" ] && [ -x "$cand/postgres" ] && b=$cand
	done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V)
	echo "$b"
}

# Sets PGH_AS (the command prefix that drops root) and PGH_OWNER; on
# failure PGH_ERR says why.
pgh__pick_user() {
	local u uid
	PGH_AS=()
	PGH_OWNER=
	[ "$(id -u)" = 0 ] || return 0
	u=${DECREE_PG_USER:-}
	if [ -z "$u" ]; then
		if id -u decree-pg >/dev/null 2>&1; then
			u=decree-pg
		elif id -u postgres >/dev/null 2>&1; then
			u=postgres
		else
			u=decree-pg
			# Another harness may be adding it at the same moment:
			# the id check below decides.
			useradd --system --user-group --no-create-home \
				--home-dir /nonexistent --shell /usr/sbin/nologin \
				decree-pg >/dev/null 2>&1
		fi
	fi
	if ! uid=$(id -u "$u" 2>/dev/null); then
		PGH_ERR="cannot find or create user $u (as root, PostgreSQL runs as an unprivileged user)"
		return 1
	fi
	if [ "$uid" = 0 ]; then
		PGH_ERR="user $u is root; PostgreSQL refuses to run as root"
		return 1
	fi
	if ! command -v setpriv >/dev/null 2>&1; then
		PGH_ERR="running as root needs setpriv (util-linux) to drop to user $u"
		return 1
	fi
	PGH_AS=(setpriv "--reuid=$uid" "--regid=$(id -g "$u")" --clear-groups --)
	PGH_OWNER="$uid:$(id -g "$u")"
}

# Picks the parent directory: $TMPDIR if the server user can reach it and
# the socket path fits, else /tmp.
pgh__parent() {
	local p=${TMPDIR:-/tmp}
	p=${p%/}
	[ -n "$p" ] || p=/tmp
	# "<p>/decree-pg-XXXXXX/.s.PGSQL.NNNNN" must fit sun_path (108 bytes).
	if [ ${#p} -gt 70 ] || [ ! -d "$p" ] || [ ! -w "$p" ]; then
		p=/tmp
	elif [ ${#PGH_AS[@]} -gt 0 ] && ! "${PGH_AS[@]}" test -x "$p" 2>/dev/null; then
		p=/tmp
	fi
	echo "$p"
}

pgh__pick_port() {
	echo $((15000 + (RANDOM * 32768 + RANDOM) % 15000))
}

# The start time (in clock ticks since boot) of process $1, empty if it is
# gone: with the pid it names a process unambiguously.
pgh__starttime() {
	local s
	read -r s 2>/dev/null <"/proc/$1/stat" || return 0
	s=${s##*) }
	# shellcheck disable=SC2086
	set -- $s
	echo "${20}"
}

# Removes what an engine that was itself SIGKILLed left behind in
# $PGH_PARENT: directories whose owner file names a process that is gone,
# and the servers still running in them.
pgh__sweep() {
	local f d pid st
	for f in "$PGH_PARENT"/decree-pg-*/owner; do
		[ -f "$f" ] || continue
		read -r pid st 2>/dev/null <"$f" || continue
		[ -n "$pid" ] && [ "$(pgh__starttime "$pid")" = "$st" ] && continue
		d=${f%/owner}
		pgh__log "removing $d, left by a harness that is gone"
		pgh__kill_dir "$d/data"
		pgh__release_shm "$d/data"
		rm -rf -- "$d" 2>/dev/null
	done
}

pgh__new_dir() {
	local d
	d=$(mktemp -d "$PGH_PARENT/decree-pg-XXXXXX") || return 1
	# Written whole, then renamed: a sweeper never reads half an owner.
	if ! { echo "$$ $(pgh__starttime $$)" >"$d/owner.new" &&
		mv "$d/owner.new" "$d/owner" && chmod 700 "$d" &&
		{ [ -z "$PGH_OWNER" ] || chown "$PGH_OWNER" "$d"; }; }; then
		rm -rf -- "$d"
		return 1
	fi
	echo "$d"
}

pgh__write_config() {
	local data=$1
	cat >>"$data/postgresql.conf" <<-EOF || return 1

	# decree test harness (tests/lib/pgharness.sh)
	listen_addresses = '127.0.0.1'
	max_connections = 100
	max_prepared_transactions = 100
	shared_buffers = 16MB
	fsync = on
	synchronous_commit = on
	full_page_writes = on
	dynamic_shared_memory_type = mmap
	max_wal_size = 256MB
	logging_collector = off
	log_min_messages = warning
	log_line_prefix = '%m [%p] '
	EOF
	cat >"$data/pg_hba.conf" <<-EOF || return 1
	# decree test harness: trust, local and loopback only.
	local   all          all                 trust
	host    all          all   127.0.0.1/32  trust
	local   replication  all                 trust
	host    replication  all   127.0.0.1/32  trust
	EOF
}

# Starts the postmaster of server $1 on PGH_PORTS[$1] without waiting;
# sets PGH_PIDS[$1].
pgh__spawn() {
	local i=$1 d=${PGH_DIRS[$1]} port=${PGH_PORTS[$1]}
	PGH_MARKS[i]=0
	[ -f "$d/log" ] && PGH_MARKS[i]=$(wc -l <"$d/log")
	(
		cd "$d" || exit 1
		exec "${PGH_AS[@]}" "$PGH_BINDIR/postgres" -D "$d/data" \
			-p "$port" -k "$d"
	) </dev/null >>"$d/log" 2>&1 3>&- 4>&- &
	PGH_PIDS[i]=$!
}

# Waits until server $1 (just spawned) accepts connections.  0 ok, 1
# failed, 2 port in use; on failure it is gone and PGH_PIDS[$1] is 0.
pgh__await() {
	local i=$1 d=${PGH_DIRS[$1]} port=${PGH_PORTS[$1]} pid=${PGH_PIDS[$1]}
	local mark=${PGH_MARKS[$1]:-0} end
	end=$((SECONDS + ${DECREE_PG_START_TIMEOUT:-60}))
	while :; do
		if "$PGH_BINDIR/pg_isready" -q -h "$d" -p "$port" -U postgres \
			-d postgres -t 5 </dev/null >/dev/null 2>&1; then
			return 0
		fi
		if ! pgh__alive "$pid"; then
			wait "$pid" 2>/dev/null
			PGH_PIDS[i]=0
			pgh__kill_dir "$d/data"
			if tail -n +"$((mark + 1))" "$d/log" |
				grep -q 'could not bind\|could not create any TCP/IP sockets'; then
				return 2
			fi
			pgh__log "server $i (port $port) exited during startup;" \
				"its log:"
			tail -n +"$((mark + 1))" "$d/log" | tail -n 20 >&2
			return 1
		fi
		if [ "$SECONDS" -ge "$end" ]; then
			pgh__log "server $i (port $port) did not accept connections" \
				"within ${DECREE_PG_START_TIMEOUT:-60} s"
			{
				kill -KILL "$pid"
				pgh__wait_gone 10 "$pid"
				wait "$pid"
			} 2>/dev/null
			PGH_PIDS[i]=0
			pgh__kill_dir "$d/data"
			return 1
		fi
		sleep 0.05
	done
}

# Starts server $1 and waits until it accepts connections (pgh__await).
pgh__launch() {
	pgh__spawn "$1"
	pgh__await "$1"
}

# Stops server $1 with signal $2 (INT: fast, QUIT: immediate, KILL: crash).
# The kill and the waits run with stderr silenced: bash would report the
# killed job ("Killed ...") on it.
pgh__halt() {
	local i=$1 sig=$2 d=${PGH_DIRS[$1]} pid=${PGH_PIDS[$1]:-0} pids slow=
	if [ "$pid" -gt 0 ]; then
		{
			if [ "$sig" = KILL ]; then
				pids="$pid $(pgh__procs_in "$d/data")"
				# shellcheck disable=SC2086
				kill -KILL $pids
			else
				kill "-$sig" "$pid"
			fi
			if ! pgh__wait_gone 30 "$pid"; then
				slow=1
				kill -KILL "$pid"
				pgh__wait_gone 10 "$pid"
			fi
			wait "$pid"
		} 2>/dev/null
		if [ -n "$slow" ]; then
			pgh__log "server $i (pid $pid) ignored SIG$sig for 30 s;" \
				"sent SIGKILL"
		fi
	fi
	PGH_PIDS[i]=0
	pgh__kill_dir "$d/data"
	pgh__release_shm "$d/data"
}

pgh__cleanup() {
	local i pid pids=
	[ -n "${PGH_CLEANED:-}" ] && return 0
	PGH_CLEANED=1
	for i in "${!PGH_DIRS[@]}"; do
		pid=${PGH_PIDS[$i]:-0}
		if [ "$pid" -gt 0 ]; then
			kill -QUIT "$pid" 2>/dev/null
			pids="$pids $pid"
		fi
	done
	if [ -n "$pids" ]; then
		# shellcheck disable=SC2086
		if ! pgh__wait_gone 10 $pids; then
			{
				kill -KILL $pids
				pgh__wait_gone 10 $pids
				wait
			} 2>/dev/null
		fi
	fi
	for i in "${!PGH_DIRS[@]}"; do
		PGH_PIDS[i]=0
		pgh__kill_dir "${PGH_DIRS[$i]}/data"
		pgh__release_shm "${PGH_DIRS[$i]}/data"
		rm -rf -- "${PGH_DIRS[$i]}"
	done
	wait 2>/dev/null
}

pgh__fail_start() {
	pgh__cleanup
	pgh__reply "error $*"
	exit 1
}

pgh__index() {
	[[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -lt "$PGH_N" ]
}

pgh__serve() {
	local n=$1 i d rc tries cmd arg
	# Protocol on fds 3 (answers) and 4 (commands); stdout goes to stderr
	# so a stray line from a child cannot corrupt the protocol.
	exec 3>&1 4<&0 1>&2 0</dev/null
	for d in "/proc/$$/fd/"*; do
		d=${d##*/}
		if [[ "$d" =~ ^[0-9]+$ ]] && [ "$d" -gt 4 ] && [ "$d" -lt 255 ]; then
			eval "exec $d>&-" 2>/dev/null
		fi
	done
	trap '' PIPE
	trap 'pgh__cleanup; exit 1' TERM INT HUP
	PGH_DIRS=()
	PGH_PORTS=()
	PGH_PIDS=()
	PGH_MARKS=()
	if ! [[ "$n" =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 16 ]; then
		pgh__fail_start "bad server count '$n' (1..16)"
	fi
	PGH_N=$n
	PGH_BINDIR=$(pgh__bindir)
	[ -n "$PGH_BINDIR" ] ||
		pgh__fail_start "no PostgreSQL server binaries (initdb) found" \
			"through pg_config --bindir or /usr/lib/postgresql/*/bin"
	pgh__pick_user || pgh__fail_start "$PGH_ERR"
	PGH_PARENT=$(pgh__parent)
	pgh__sweep
	for ((i = 0; i < n; i++)); do
		d=$(pgh__new_dir) ||
			pgh__fail_start "cannot make a directory in $PGH_PARENT"
		PGH_DIRS[i]=$d
		PGH_PIDS[i]=0
	done
	d=${PGH_DIRS[0]}
	if ! (cd "$d" && "${PGH_AS[@]}" "$PGH_BINDIR/initdb" -D "$d/data" \
		-U postgres -A trust -E UTF8 --locale=C --no-sync \
		</dev/null >"$d/initdb.log" 2>&1); then
		tail -n 20 "$d/initdb.log" >&2
		pgh__fail_start "initdb failed in $d (log above)"
	fi
	pgh__write_config "$d/data" || pgh__fail_start "cannot write config in $d"
	for ((i = 1; i < n; i++)); do
		cp -a "$d/data" "${PGH_DIRS[$i]}/data" ||
			pgh__fail_start "cannot copy the initial cluster to ${PGH_DIRS[$i]}"
	done
	# All postmasters start together; then each is waited for in turn,
	# and moved to another port if its port was taken.
	for ((i = 0; i < n; i++)); do
		PGH_PORTS[i]=$(pgh__pick_port)
		pgh__spawn "$i"
	done
	for ((i = 0; i < n; i++)); do
		tries=0
		while :; do
			pgh__await "$i"
			rc=$?
			[ $rc -eq 0 ] && break
			tries=$((tries + 1))
			if [ $rc -ne 2 ] || [ $tries -ge 20 ]; then
				pgh__fail_start "cannot start server $i in ${PGH_DIRS[$i]}"
			fi
			PGH_PORTS[i]=$(pgh__pick_port)
			pgh__spawn "$i"
		done
		pgh__reply "server $i ${PGH_PORTS[$i]} ${PGH_DIRS[$i]} ${PGH_PIDS[$i]}"
	done
	pgh__reply ready
	while IFS=' ' read -r cmd arg <&4; do
		PGH_TAG=
		if [[ $cmd == @* ]]; then
			PGH_TAG=$cmd
			read -r cmd arg <<<"$arg"
		fi
		case $cmd in
		quit)
			pgh__cleanup
			pgh__reply ok
			exit 0
			;;
		stop | kill | start | pid) ;;
		*)
			pgh__reply "error unknown command '$cmd'"
			continue
			;;
		esac
		if ! pgh__index "$arg"; then
			pgh__reply "error no server '$arg' (0..$((PGH_N - 1)))"
			continue
		fi
		case $cmd in
		stop)
			pgh__halt "$arg" INT
			pgh__reply ok
			;;
		kill)
			pgh__halt "$arg" KILL
			pgh__reply ok
			;;
		pid)
			if [ "${PGH_PIDS[$arg]}" -gt 0 ] && ! pgh__alive "${PGH_PIDS[$arg]}"; then
				# It died on its own: reap it, report it stopped.
				{ wait "${PGH_PIDS[$arg]}"; } 2>/dev/null
				PGH_PIDS[arg]=0
			fi
			pgh__reply "ok ${PGH_PIDS[$arg]}"
			;;
		start)
			if [ "${PGH_PIDS[$arg]}" -gt 0 ] && pgh__alive "${PGH_PIDS[$arg]}"; then
				pgh__reply "error server $arg is running"
				continue
			fi
			if [ "${PGH_PIDS[$arg]}" -gt 0 ]; then
				# It died on its own; backends may linger.
				{ wait "${PGH_PIDS[$arg]}"; } 2>/dev/null
				PGH_PIDS[arg]=0
				pgh__kill_dir "${PGH_DIRS[$arg]}/data"
			fi
			if pgh__launch "$arg"; then
				pgh__reply "ok ${PGH_PIDS[$arg]}"
			else
				pgh__reply "error server $arg did not start (see ${PGH_DIRS[$arg]}/log)"
			fi
			;;
		esac
	done
	pgh__cleanup
	exit 0
}

# ------------------------------------------------------ shell functions
#
# After `source tests/lib/pgharness.sh`:
#   pgh_start N               start N servers (1..16); installs traps
#   pgh_count                 number of servers
#   pgh_port I, pgh_dir I, pgh_pid I
#   pgh_conninfo I            TCP conninfo for libpq / psql
#   pgh_conninfo_unix I       the same over the unix socket
#   pgh_stop I                fast shutdown, keeps data and port
#   pgh_kill I                SIGKILL (a crash), keeps data and port
#   pgh_start_server I        start again, wait until it accepts connections
#   pgh_destroy               stop all, remove all (also run by the traps)
# Functions return non-zero with a message on stderr when they fail.  The
# control functions (start/stop/kill/destroy) work in the script's own shell,
# not in a subshell such as $(...).

PGH_ENGINE=$(realpath "${BASH_SOURCE[0]}" 2>/dev/null || echo "${BASH_SOURCE[0]}")

pgh__ask() {
	local reply
	if [ -z "${PGH_ENGINE_PID:-}" ]; then
		echo "pgharness: no harness running (pgh_start first)" >&2
		return 1
	fi
	if [ -z "${PGH[1]:-}" ]; then
		echo "pgharness: the harness engine is gone" >&2
		return 1
	fi
	printf '%s\n' "$*" >&"${PGH[1]}" || return 1
	if ! IFS= read -r reply <&"${PGH[0]}"; then
		echo "pgharness: engine gone" >&2
		return 1
	fi
	PGH_REPLY=$reply
	case $reply in
	ok*) return 0 ;;
	*)
		echo "pgharness: $* failed: ${reply#error }" >&2
		return 1
		;;
	esac
}

pgh_start() {
	local n=${1:-1} line tag i port dir pid
	if [ -n "${PGH_ENGINE_PID:-}" ]; then
		echo "pgharness: a harness is already running in this shell" >&2
		return 1
	fi
	PGH_DIRS=()
	PGH_PORTS=()
	PGH_PIDS=()
	PGH_N=0
	coproc PGH { exec setsid bash "$PGH_ENGINE" serve "$n"; }
	# shellcheck disable=SC2153 # PGH_PID is set by coproc.
	PGH_ENGINE_PID=$PGH_PID
	trap pgh_destroy EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	trap 'exit 129' HUP
	while IFS= read -r line <&"${PGH[0]}"; do
		read -r tag i port dir pid <<<"$line"
		case $tag in
		server)
			PGH_PORTS[i]=$port
			PGH_DIRS[i]=$dir
			PGH_PIDS[i]=$pid
			PGH_N=$((i + 1))
			;;
		ready)
			return 0
			;;
		*)
			break
			;;
		esac
	done
	echo "pgharness: cannot start $n server(s)${line:+: ${line#error }}" >&2
	wait "$PGH_ENGINE_PID" 2>/dev/null || true
	PGH_ENGINE_PID=
	PGH_N=0
	return 1
}

pgh_count() { echo "${PGH_N:-0}"; }
pgh_port() { echo "${PGH_PORTS[$1]}"; }
pgh_dir() { echo "${PGH_DIRS[$1]}"; }
pgh_pid() { echo "${PGH_PIDS[$1]}"; }

pgh_conninfo() {
	echo "host=127.0.0.1 port=${PGH_PORTS[$1]} dbname=postgres user=postgres connect_timeout=5"
}

pgh_conninfo_unix() {
	echo "host=${PGH_DIRS[$1]} port=${PGH_PORTS[$1]} dbname=postgres user=postgres connect_timeout=5"
}

pgh_stop() {
	pgh__ask stop "$1" && PGH_PIDS[$1]=0
}

pgh_kill() {
	pgh__ask kill "$1" && PGH_PIDS[$1]=0
}

pgh_start_server() {
	pgh__ask start "$1" && PGH_PIDS[$1]=${PGH_REPLY#ok }
}

# Safe under set -e and from a trap: never fails.
pgh_destroy() {
	local pid=${PGH_ENGINE_PID:-}
	[ -n "$pid" ] || return 0
	if ! pgh__ask quit >/dev/null 2>&1; then
		# The engine died without cleaning up (it was SIGKILLed):
		# sweep up after it.
		bash "$PGH_ENGINE" sweep >/dev/null 2>&1 || true
	fi
	PGH_ENGINE_PID=
	PGH_N=0
	wait "$pid" 2>/dev/null || true
	return 0
}

# Runs as the main program only: it exits.
pgh__with() {
	local n=$1 i rc
	shift
	if [ $# -eq 0 ]; then
		echo "usage: pgharness.sh with N COMMAND [ARG...]" >&2
		return 2
	fi
	pgh_start "$n" || return 1
	export PGH_COUNT=$PGH_N
	for ((i = 0; i < PGH_N; i++)); do
		export "PGH_CONNINFO_$i=$(pgh_conninfo "$i")"
		export "PGH_CONNINFO_UNIX_$i=$(pgh_conninfo_unix "$i")"
		export "PGH_PORT_$i=${PGH_PORTS[$i]}"
		export "PGH_DIR_$i=${PGH_DIRS[$i]}"
	done
	"$@"
	rc=$?
	# The EXIT trap set by pgh_start removes everything as we exit.
	exit $rc
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	case ${1:-} in
	serve)
		pgh__serve "${2:-}"
		;;
	with)
		shift
		pgh__with "$@"
		;;
	sweep)
		# Remove what SIGKILLed engines left in the parent directory.
		pgh__pick_user || exit 1
		PGH_PARENT=$(pgh__parent)
		pgh__sweep
		;;
	*)
		echo "usage: pgharness.sh serve N | with N COMMAND [ARG...] | sweep" >&2
		echo "   or: source pgharness.sh (see docs/testing.md)" >&2
		exit 2
		;;
	esac
fi
