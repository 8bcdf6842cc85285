/*
 * raft.c - `decree raft node`: runs one member of a Raft group (the runtime
 * of raft/node_uv.h) as a process, with a small HTTP client API.
 *
 *   decree raft node --id N --listen HOST:PORT --peer ID=HOST:PORT ...
 *                    --data-dir DIR [--client HOST:PORT]
 *                    [--peer-client ID=HOST:PORT ...] [--election-ms MIN-MAX]
 *                    [--sync fdatasync|dsync|none] [--log-level LEVEL]
 *                    [--parallel-append on|off]
 *
 * Client API (HTTP/1.1, keep-alive, on --client):
 *   POST /propose   body = the entry's data.  The leader answers 200
 *                   {"index":N} once the entry is committed and applied on
 *                   it.  Any other node answers 421 {"error":"not leader",
 *                   "leader":ID,"leader_addr":"H:P","leader_client":"H:P"}
 *                   (leader 0 and no addresses while none is known;
 *                   leader_client only when given with --peer-client).  503
 *                   when the leader lost leadership before the entry was
 *                   applied (outcome unknown) or the node is stopping.
 *   GET /status     {"id","role","term","leader","commit","applied",
 *                    "last_index","batches","saves","peers_connected",
 *                    "pid"}
 *
 * Design notes
 *  - --election-ms MIN-MAX sets the tick to MIN/10 ms and the election
 *    timeout to 10 ticks: the core draws each timeout from [10, 20) ticks,
 *    i.e. MIN..2*MIN ms, so MAX is honoured only as 2*MIN (the default
 *    150-300 fits).  Heartbeats go every 3 ticks.
 *  - The first line on stdout, "raft node ID ready raft=H:P client=H:P",
 *    tells scripts the node is up (ports 0 are resolved).
 *  - A storage failure (DESIGN.md section 9) stops the node and the
 *    process exits with status 1 within 100 ms, for a supervisor to
 *    restart it from its data dir.
 *  - SIGINT / SIGTERM stop the node cleanly; SIGKILL is what the failover
 *    benchmark uses, and a restart recovers from --data-dir.
 */
#include "cmd/cmd.h"
#include "common/common.h"
#include "raft/node_uv.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct peer_client {
	uint64_t id;
	char addr[RAFT_NODE_ADDR_MAX];
};

struct main_state {
	uv_loop_t loop;
	struct raft_node *node;
	struct http_server *http;
	uv_signal_t sigint, sigterm;
	uv_timer_t watch; /* exits when the node's storage failed */
	int status;
	struct peer_client pc[RAFT_MAX_MEMBERS];
	unsigned n_pc;
	bool stopping;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: decree raft node --id N --listen HOST:PORT "
		"--peer ID=HOST:PORT ...\n"
		"                        --data-dir DIR [--client HOST:PORT]\n"
		"                        [--peer-client ID=HOST:PORT ...] "
		"[--election-ms MIN-MAX]\n"
		"                        [--sync fdatasync|dsync|none] "
		"[--log-level LEVEL]\n"
		"                        [--parallel-append on|off]\n\n"
		"Runs one member of a Raft group: Raft peers on --listen, its "
		"log in --data-dir,\nand an HTTP client API on --client: POST "
		"/propose (answered once committed and\napplied on the leader; "
		"421 with the leader elsewhere) and GET /status.\n"
		"--election-ms defaults to 150-300 (the maximum is always twice "
		"the minimum).\n");
}

static const char *client_of(struct main_state *m, uint64_t id)
{
	for (unsigned i = 0; i < m->n_pc; i++)
		if (m->pc[i].id == id)
			return m->pc[i].addr;
	return NULL;
}

static json_t *not_leader_json(struct main_state *m)
{
	uint64_t l = raft_node_leader(m->node);
	json_t *j = json_pack("{s:s, s:I}", "error", "not leader", "leader",
			      (json_int_t)l);
	const char *a = l ? raft_node_peer_addr(m->node, l) : NULL;
	const char *c = l ? client_of(m, l) : NULL;
	if (j && a)
		json_object_set_new(j, "leader_addr", json_string(a));
	if (j && c)
		json_object_set_new(j, "leader_client", json_string(c));
	return j;
}

static void on_proposed(struct raft_node *n, int status, uint64_t index,
			void *data)
{
	struct http_request *req = data;
	(void)n;
	if (status == 0) {
		http_respond_json(req, 200,
				  json_pack("{s:I}", "index",
					    (json_int_t)index));
		return;
	}
	/* Not the leader (at once, or lost before the entry was applied). */
	http_respond_json(req, status == -RAFT_ENOTLEADER && index == 0 ? 421
									: 503,
			  json_pack("{s:s}", "error", raft_strerror(status)));
}

static void handle(struct http_request *req, void *data)
{
	struct main_state *m = data;
	if (!strcmp(req->path, "/status")) {
		const struct raft *r = raft_node_raft(m->node);
		json_t *j = json_pack(
			"{s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			"id",
			(json_int_t)raft_node_id(m->node), "role",
			raft_role_name(raft_role(r)), "term",
			(json_int_t)raft_term(r), "leader",
			(json_int_t)raft_node_leader(m->node), "commit",
			(json_int_t)raft_commit_index(r), "applied",
			(json_int_t)raft_applied_index(r), "last_index",
			(json_int_t)raft_last_index(r), "batches",
			(json_int_t)raft_node_batches(m->node), "saves",
			(json_int_t)raft_node_saves(m->node), "peers_connected",
			(json_int_t)raft_node_peers_connected(m->node), "pid",
			(json_int_t)getpid());
		http_respond_json(req, 200, j);
		return;
	}
	if (!strcmp(req->path, "/propose")) {
		if (strcmp(req->method, "POST") != 0) {
			http_respond_json(req, 405,
					  json_pack("{s:s}", "error",
						    "use POST"));
			return;
		}
		if (m->stopping || raft_node_failed(m->node)) {
			http_respond_json(req, 503,
					  json_pack("{s:s}", "error",
						    "node unavailable"));
			return;
		}
		if (raft_role(raft_node_raft(m->node)) != RAFT_LEADER) {
			http_respond_json(req, 421, not_leader_json(m));
			return;
		}
		int rc = raft_node_propose(m->node, req->body, req->body_len,
					   on_proposed, req);
		if (rc != 0)
			http_respond_json(req, 503,
					  json_pack("{s:s}", "error",
						    raft_strerror(rc)));
		return;
	}
	http_respond_json(req, 404, json_pack("{s:s}", "error", "not found"));
}

static void on_node_stopped(void *data)
{
	(void)data;
}

static void stop_all(struct main_state *m)
{
	if (m->stopping)
		return;
	m->stopping = true;
	if (m->http)
		http_server_stop(m->http, NULL);
	m->http = NULL;
	raft_node_stop(m->node, on_node_stopped, m);
	uv_close((uv_handle_t *)&m->sigint, NULL);
	uv_close((uv_handle_t *)&m->sigterm, NULL);
	uv_close((uv_handle_t *)&m->watch, NULL);
}

static void on_watch(uv_timer_t *t)
{
	struct main_state *m = t->data;
	int rc = raft_node_failed(m->node);
	if (rc == 0)
		return;
	fprintf(stderr, "decree raft node: storage failed: %s; exiting (restart "
			"to recover from the data dir)\n",
		raft_storage_strerror(rc));
	m->status = 1;
	stop_all(m);
}

static void on_signal(uv_signal_t *sig, int signum)
{
	struct main_state *m = sig->data;
	log_info("raft", "stopping", "signal=%d", signum);
	stop_all(m);
}

static int parse_id_addr(const char *s, uint64_t *id, char *addr)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end != '=' || v == 0 ||
	    strlen(end + 1) >= RAFT_NODE_ADDR_MAX || !end[1])
		return -1;
	struct sockaddr_storage ss;
	if (net_addr_parse(end + 1, &ss) != 0)
		return -1;
	*id = v;
	strcpy(addr, end + 1);
	return 0;
}

static int run_node(int argc, char **argv)
{
	struct raft_node_config cfg;
	struct main_state m;
	const char *client = NULL;
	unsigned emin = 150, emax = 300;
	char err[256];
	int rc;

	raft_node_config_init(&cfg);
	memset(&m, 0, sizeof(m));
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v) {
			fprintf(stderr, "decree raft node: %s needs a value\n",
				a);
			return 2;
		}
		i++;
		if (!strcmp(a, "--id")) {
			char *end;
			cfg.id = strtoull(v, &end, 10);
			if (*end || cfg.id == 0) {
				fprintf(stderr, "decree raft node: bad --id "
						"%s\n",
					v);
				return 2;
			}
		} else if (!strcmp(a, "--listen")) {
			cfg.listen = v;
		} else if (!strcmp(a, "--data-dir")) {
			cfg.data_dir = v;
		} else if (!strcmp(a, "--client")) {
			client = v;
		} else if (!strcmp(a, "--peer")) {
			if (cfg.n_peers == RAFT_NODE_MAX_PEERS ||
			    parse_id_addr(v, &cfg.peers[cfg.n_peers].id,
					  cfg.peers[cfg.n_peers].addr) != 0) {
				fprintf(stderr, "decree raft node: bad --peer "
						"%s (ID=HOST:PORT)\n",
					v);
				return 2;
			}
			cfg.n_peers++;
		} else if (!strcmp(a, "--peer-client")) {
			if (m.n_pc == RAFT_MAX_MEMBERS ||
			    parse_id_addr(v, &m.pc[m.n_pc].id,
					  m.pc[m.n_pc].addr) != 0) {
				fprintf(stderr, "decree raft node: bad "
						"--peer-client %s\n",
					v);
				return 2;
			}
			m.n_pc++;
		} else if (!strcmp(a, "--election-ms")) {
			if (sscanf(v, "%u-%u", &emin, &emax) != 2 || emin < 10 ||
			    emax < emin) {
				fprintf(stderr, "decree raft node: bad "
						"--election-ms %s (MIN-MAX)\n",
					v);
				return 2;
			}
		} else if (!strcmp(a, "--parallel-append")) {
			if (strcmp(v, "on") && strcmp(v, "off")) {
				fprintf(stderr, "decree raft node: bad "
						"--parallel-append %s (on|off)\n",
					v);
				return 2;
			}
			cfg.parallel_append = !strcmp(v, "on");
		} else if (!strcmp(a, "--sync")) {
			if (wal_sync_mode_parse(v, &cfg.sync_mode) != 0) {
				fprintf(stderr, "decree raft node: bad --sync "
						"%s\n",
					v);
				return 2;
			}
		} else if (!strcmp(a, "--log-level")) {
			enum log_level lv;
			if (log_level_parse(v, &lv) != 0) {
				fprintf(stderr, "decree raft node: bad "
						"--log-level %s\n",
					v);
				return 2;
			}
			log_set_level(lv);
		} else {
			fprintf(stderr, "decree raft node: unknown option "
					"%s\n",
				a);
			usage(stderr);
			return 2;
		}
	}
	if (!cfg.id || !cfg.listen || !cfg.data_dir) {
		usage(stderr);
		return 2;
	}
	for (unsigned i = 0; i < cfg.n_peers; i++)
		if (cfg.peers[i].id == cfg.id) {
			fprintf(stderr, "decree raft node: --peer repeats "
					"this node's id\n");
			return 2;
		}
	cfg.tick_ms = emin / 10;
	cfg.election_tick = 10;
	cfg.heartbeat_tick = 3;
	(void)emax;

	signal(SIGPIPE, SIG_IGN);
	uv_loop_init(&m.loop);
	rc = raft_node_start(&m.loop, &cfg, &m.node, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "decree raft node: %s\n", err);
		uv_run(&m.loop, UV_RUN_DEFAULT);
		uv_loop_close(&m.loop);
		return 1;
	}
	char client_addr[RAFT_NODE_ADDR_MAX] = "-";
	if (client) {
		rc = http_server_start(&m.loop, client, NULL, handle, &m,
				       &m.http);
		if (rc != 0) {
			fprintf(stderr, "decree raft node: client %s: %s\n",
				client, http_strerror(rc));
			raft_node_stop(m.node, NULL, NULL);
			uv_run(&m.loop, UV_RUN_DEFAULT);
			uv_loop_close(&m.loop);
			return 1;
		}
		snprintf(client_addr, sizeof(client_addr), "%.*s:%d",
			 (int)(strrchr(client, ':') - client), client,
			 http_server_port(m.http));
	}
	uv_signal_init(&m.loop, &m.sigint);
	uv_signal_init(&m.loop, &m.sigterm);
	m.sigint.data = m.sigterm.data = &m;
	uv_signal_start(&m.sigint, on_signal, SIGINT);
	uv_signal_start(&m.sigterm, on_signal, SIGTERM);
	uv_timer_init(&m.loop, &m.watch);
	m.watch.data = &m;
	uv_timer_start(&m.watch, on_watch, 100, 100);
	printf("raft node %" PRIu64 " ready raft=%s client=%s\n", cfg.id,
	       cfg.listen, client_addr);
	fflush(stdout);
	uv_run(&m.loop, UV_RUN_DEFAULT);
	uv_loop_close(&m.loop);
	return m.status;
}

int cmd_raft(int argc, char **argv)
{
	if (argc < 2 || cmd_wants_help(argc, argv)) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "node"))
		return run_node(argc - 1, argv + 1);
	fprintf(stderr, "decree raft: unknown command %s\n", argv[1]);
	usage(stderr);
	return 2;
}
