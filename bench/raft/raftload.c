/*
 * raftload.c - load client for bench/raft: drives either a decree Raft
 * cluster (`decree raft node --client`) or an etcd cluster (its HTTP/JSON
 * gRPC gateway) with 100-byte proposals at a fixed number in flight, and
 * measures leader failover of a decree cluster.
 *
 *   raftload put --target decree|etcd --endpoints H:P,H:P,... [options]
 *       options: --inflight N (1) --seconds S (5) --warmup S (1)
 *                --size BYTES (100)
 *   raftload failover --dir DIR --nodes N --trials T [--budget SECONDS]
 *
 * put prints one line:
 *   RESULT target=T inflight=N commits=C seconds=S rate=R p50_ms=X
 *          p99_ms=Y errors=E leader=H:P
 * failover prints one line per trial and then
 *   FAILOVER trials=T ok=K p50_ms=X p99_ms=Y max_ms=Z
 *
 * Design notes
 *  - One thread, one epoll loop; every in-flight slot is its own keep-alive
 *    HTTP/1.1 connection with one request outstanding, so "in flight" is
 *    exactly the number of connections.  Both targets go through the same
 *    code: only the request line and body differ.  Responses are parsed
 *    with http-parser.
 *  - decree: POST /propose with the raw value as the body, answered 200 by
 *    the leader once the entry is committed and applied there.  The leader
 *    is found with GET /status on every endpoint.
 *  - etcd: POST /v3/kv/put with {"key": base64, "value": base64}; each
 *    slot writes its own key.  The leader is found with POST
 *    /v3/maintenance/status on every endpoint (header.member_id ==
 *    leader), so both sides are driven at their leader and neither pays a
 *    forwarding hop.
 *  - Latency is measured per request from the write of the request to the
 *    end of its response (CLOCK_MONOTONIC); only requests that complete
 *    inside the measured window count.  Non-200 answers count as errors.
 *  - failover: DIR holds start-N.sh (execs one node, N = 1..nodes) and
 *    client-N (its client address).  Each trial finds the leader, kill -9's
 *    it, then proposes to every other node in turn until one answers 200;
 *    the time from the kill to that answer is the failover time.  Then the
 *    killed node is restarted and the trial waits until all nodes see one
 *    leader and have applied the new entry before the next trial.
 */
#include <errno.h>
#include <http_parser.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"

#define MAX_SLOTS 1024

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void die(const char *fmt, const char *arg)
{
	fprintf(stderr, "raftload: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	exit(1);
}

/* ---- latency samples ---------------------------------------------------- */

struct samples {
	double *v;
	size_t n, cap;
};

static void samples_add(struct samples *s, double x)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 4096;
		s->v = realloc(s->v, s->cap * sizeof(*s->v));
		if (!s->v)
			die("%s", "out of memory");
	}
	s->v[s->n++] = x;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double samples_pct(struct samples *s, double p)
{
	if (s->n == 0)
		return 0;
	qsort(s->v, s->n, sizeof(*s->v), cmp_double);
	size_t i = (size_t)(p * (double)(s->n - 1) + 0.5);
	return s->v[i];
}

/* ---- blocking JSON helpers (leader discovery) --------------------------- */

static json_t *http_json(const char *ep, const char *method, const char *path,
			 const char *body, int timeout_ms, int *status)
{
	struct http_response r;
	*status = 0;
	if (http_client_request(ep, method, path,
				body ? "application/json" : NULL, body,
				body ? strlen(body) : 0, timeout_ms, &r) != 0)
		return NULL;
	*status = r.status;
	json_t *j = json_loads(r.body, 0, NULL);
	http_response_free(&r);
	return j;
}

/* The endpoint of the decree leader, or -1 if none is known yet. */
static int decree_leader(char **eps, int n, int timeout_ms)
{
	for (int i = 0; i < n; i++) {
		int st;
		json_t *j = http_json(eps[i], "GET", "/status", NULL,
				      timeout_ms, &st);
		if (!j)
			continue;
		const char *role = json_string_value(json_object_get(j, "role"));
		bool lead = st == 200 && role && strcmp(role, "leader") == 0;
		json_decref(j);
		if (lead)
			return i;
	}
	return -1;
}

static uint64_t json_u64(json_t *j)
{
	if (json_is_integer(j))
		return (uint64_t)json_integer_value(j);
	if (json_is_string(j))
		return strtoull(json_string_value(j), NULL, 10);
	return 0;
}

static int etcd_leader(char **eps, int n)
{
	for (int i = 0; i < n; i++) {
		int st;
		json_t *j = http_json(eps[i], "POST", "/v3/maintenance/status",
				      "{}", 2000, &st);
		if (!j)
			continue;
		uint64_t me = json_u64(json_object_get(
			json_object_get(j, "header"), "member_id"));
		uint64_t lead = json_u64(json_object_get(j, "leader"));
		json_decref(j);
		if (st == 200 && me != 0 && me == lead)
			return i;
	}
	return -1;
}

/* ---- the epoll load loop ------------------------------------------------ */

struct slot {
	int fd;
	char *req;
	size_t req_len, req_off;
	http_parser parser;
	bool done;
	int status;
	double t0;
};

static int on_complete(http_parser *p)
{
	struct slot *s = p->data;
	s->done = true;
	s->status = (int)p->status_code;
	http_parser_pause(p, 1);
	return 0;
}

static http_parser_settings parser_settings = {
	.on_message_complete = on_complete,
};

static int connect_to(const char *ep)
{
	struct sockaddr_storage ss;
	if (net_addr_parse(ep, &ss) != 0)
		die("bad endpoint %s", ep);
	int fd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (fd < 0)
		die("%s", strerror(errno));
	socklen_t len = ss.ss_family == AF_INET ? sizeof(struct sockaddr_in)
						: sizeof(struct sockaddr_in6);
	if (connect(fd, (struct sockaddr *)&ss, len) != 0)
		die("cannot connect to %s", ep);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static const char b64chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t b64(const unsigned char *in, size_t n, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = b64chars[(v >> 18) & 63];
		out[o++] = b64chars[(v >> 12) & 63];
		out[o++] = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? b64chars[v & 63] : '=';
	}
	out[o] = 0;
	return o;
}

static char *build_request(bool etcd, const char *ep, int slot, size_t size)
{
	unsigned char val[4096];
	char body[8192];
	size_t blen;
	if (size > sizeof(val))
		die("%s", "--size too large");
	for (size_t i = 0; i < size; i++)
		val[i] = (unsigned char)('a' + (i + (size_t)slot) % 26);
	if (etcd) {
		char key[32], k64[64], v64[6000];
		snprintf(key, sizeof(key), "bench-%04d", slot);
		b64((const unsigned char *)key, strlen(key), k64);
		b64(val, size, v64);
		blen = (size_t)snprintf(body, sizeof(body),
					"{\"key\":\"%s\",\"value\":\"%s\"}", k64,
					v64);
	} else {
		memcpy(body, val, size);
		blen = size;
	}
	char *req = malloc(blen + 512);
	if (!req)
		die("%s", "out of memory");
	int h = snprintf(req, 512,
			 "POST %s HTTP/1.1\r\nHost: %s\r\n"
			 "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n",
			 etcd ? "/v3/kv/put" : "/propose", ep,
			 etcd ? "application/json" : "application/octet-stream",
			 blen);
	memcpy(req + h, body, blen);
	req[(size_t)h + blen] = 0;
	return req;
}

static int send_req(struct slot *s)
{
	while (s->req_off < s->req_len) {
		ssize_t w = write(s->fd, s->req + s->req_off,
				  s->req_len - s->req_off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		s->req_off += (size_t)w;
	}
	return 0;
}

static int cmd_put(int argc, char **argv)
{
	const char *target = NULL, *endpoints = NULL;
	int inflight = 1;
	double seconds = 5, warmup = 1;
	size_t size = 100;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--target"))
			target = argv[i + 1];
		else if (!strcmp(argv[i], "--endpoints"))
			endpoints = argv[i + 1];
		else if (!strcmp(argv[i], "--inflight"))
			inflight = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--seconds"))
			seconds = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--warmup"))
			warmup = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--size"))
			size = (size_t)atoi(argv[i + 1]);
		else
			die("unknown option %s", argv[i]);
	}
	if (!target || !endpoints || inflight < 1 || inflight > MAX_SLOTS ||
	    seconds <= 0)
		die("%s", "usage: raftload put --target decree|etcd --endpoints "
			  "H:P,... [--inflight N] [--seconds S] [--warmup S]");
	bool etcd = !strcmp(target, "etcd");
	if (!etcd && strcmp(target, "decree"))
		die("unknown target %s", target);

	char *list = strdup(endpoints), *eps[16];
	int n = 0;
	for (char *t = strtok(list, ","); t && n < 16; t = strtok(NULL, ","))
		eps[n++] = t;
	int li = -1;
	for (double dl = now_ms() + 20000; li < 0 && now_ms() < dl;) {
		li = etcd ? etcd_leader(eps, n) : decree_leader(eps, n, 1000);
		if (li < 0)
			usleep(100000);
	}
	if (li < 0)
		die("no leader among %s", endpoints);
	const char *ep = eps[li];

	int ep_fd = epoll_create1(0);
	struct slot *slots = calloc((size_t)inflight, sizeof(*slots));
	for (int i = 0; i < inflight; i++) {
		struct slot *s = &slots[i];
		s->fd = connect_to(ep);
		s->req = build_request(etcd, ep, i, size);
		s->req_len = strlen(s->req); /* the value holds no NUL */
		http_parser_init(&s->parser, HTTP_RESPONSE);
		s->parser.data = s;
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
		epoll_ctl(ep_fd, EPOLL_CTL_ADD, s->fd, &ev);
	}

	struct samples lat = {0};
	uint64_t errors = 0, commits = 0;
	double start = now_ms(), m0 = start + warmup * 1e3,
	       m1 = m0 + seconds * 1e3, end_at = m1 + 5000;
	for (int i = 0; i < inflight; i++) {
		slots[i].t0 = now_ms();
		if (send_req(&slots[i]) != 0)
			die("%s", "write failed");
	}
	int outstanding = inflight;
	char buf[65536];
	struct epoll_event evs[256];
	while (outstanding > 0 && now_ms() < end_at) {
		int k = epoll_wait(ep_fd, evs, 256, 100);
		for (int e = 0; e < k; e++) {
			struct slot *s = evs[e].data.ptr;
			ssize_t r = read(s->fd, buf, sizeof(buf));
			if (r <= 0) {
				if (r < 0 && (errno == EINTR || errno == EAGAIN))
					continue;
				die("%s", "connection closed by the server");
			}
			size_t off = 0;
			while (off < (size_t)r) {
				size_t used = http_parser_execute(
					&s->parser, &parser_settings, buf + off,
					(size_t)r - off);
				off += used;
				if (HTTP_PARSER_ERRNO(&s->parser) == HPE_PAUSED)
					http_parser_pause(&s->parser, 0);
				else if (HTTP_PARSER_ERRNO(&s->parser) != HPE_OK)
					die("bad HTTP response: %s",
					    http_errno_name(HTTP_PARSER_ERRNO(
						    &s->parser)));
				if (!s->done)
					continue;
				s->done = false;
				double t = now_ms();
				if (s->t0 >= m0 && t <= m1) {
					if (s->status == 200) {
						commits++;
						samples_add(&lat, t - s->t0);
					} else {
						errors++;
					}
				} else if (s->status != 200 && t <= m1) {
					errors++;
				}
				if (t >= m1) {
					outstanding--;
					continue;
				}
				s->t0 = t;
				s->req_off = 0;
				if (send_req(s) != 0)
					die("%s", "write failed");
			}
		}
	}
	double p50 = samples_pct(&lat, 0.50), p99 = samples_pct(&lat, 0.99);
	printf("RESULT target=%s inflight=%d commits=%" PRIu64
	       " seconds=%.2f rate=%.1f p50_ms=%.3f p99_ms=%.3f errors=%" PRIu64
	       " leader=%s\n",
	       target, inflight, commits, seconds, (double)commits / seconds,
	       p50, p99, errors, ep);
	for (int i = 0; i < inflight; i++) {
		close(slots[i].fd);
		free(slots[i].req);
	}
	free(slots);
	free(lat.v);
	free(list);
	close(ep_fd);
	return 0;
}

/* ---- failover ----------------------------------------------------------- */

struct node {
	char client[64];
	char script[512];
	pid_t pid;
};

static pid_t start_node(const struct node *nd)
{
	pid_t p = fork();
	if (p < 0)
		die("%s", "fork failed");
	if (p == 0) {
		setpgid(0, 0);
		execl("/bin/sh", "sh", nd->script, (char *)NULL);
		_exit(127);
	}
	return p;
}

static int read_line_file(const char *path, char *out, size_t n)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	if (!fgets(out, (int)n, f)) {
		fclose(f);
		return -1;
	}
	fclose(f);
	out[strcspn(out, "\r\n")] = 0;
	return 0;
}

/* POST /propose once; 200 = committed. */
static int propose_once(const char *ep, int timeout_ms)
{
	struct http_response r;
	static const char val[101] =
		"failover-probe-failover-probe-failover-probe-failover-probe-"
		"failover-probe-failover-probe-failover-";
	if (http_client_request(ep, "POST", "/propose",
				"application/octet-stream", val, 100,
				timeout_ms, &r) != 0)
		return -1;
	int st = r.status;
	http_response_free(&r);
	return st;
}

/*
 * All nodes answer /status, agree on a leader, have applied >= idx and are
 * connected to every other node (a restarted node's peers reconnect with
 * backoff; a trial starts once they have).
 */
static bool cluster_settled(struct node *nodes, int n, uint64_t idx)
{
	uint64_t leader = 0;
	for (int i = 0; i < n; i++) {
		int st;
		json_t *j = http_json(nodes[i].client, "GET", "/status", NULL,
				      500, &st);
		if (!j)
			return false;
		uint64_t l = json_u64(json_object_get(j, "leader"));
		uint64_t a = json_u64(json_object_get(j, "applied"));
		uint64_t c = json_u64(json_object_get(j, "peers_connected"));
		json_decref(j);
		if (st != 200 || l == 0 || (leader && l != leader) || a < idx ||
		    c != (uint64_t)(n - 1))
			return false;
		leader = l;
	}
	return true;
}

static uint64_t node_applied(const char *ep)
{
	int st;
	json_t *j = http_json(ep, "GET", "/status", NULL, 500, &st);
	uint64_t a = j ? json_u64(json_object_get(j, "applied")) : 0;
	json_decref(j);
	return a;
}

static int cmd_failover(int argc, char **argv)
{
	const char *dir = NULL;
	int n = 3, trials = 50;
	double budget = 240;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--dir"))
			dir = argv[i + 1];
		else if (!strcmp(argv[i], "--nodes"))
			n = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--trials"))
			trials = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--budget"))
			budget = atof(argv[i + 1]);
		else
			die("unknown option %s", argv[i]);
	}
	if (!dir || n < 2 || n > 16 || trials < 1)
		die("%s", "usage: raftload failover --dir DIR --nodes N "
			  "--trials T [--budget SECONDS]");
	struct node nodes[16];
	char path[600];
	char *eps[16];
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/client-%d", dir, i + 1);
		if (read_line_file(path, nodes[i].client,
				   sizeof(nodes[i].client)) != 0)
			die("cannot read %s", path);
		snprintf(nodes[i].script, sizeof(nodes[i].script),
			 "%s/start-%d.sh", dir, i + 1);
		nodes[i].pid = start_node(&nodes[i]);
		eps[i] = nodes[i].client;
	}
	struct samples s = {0};
	int ok = 0, done = 0;
	double t_start = now_ms(), maxv = 0;
	uint64_t last_idx = 0;
	int rc = 0;
	for (int t = 0; t < trials; t++) {
		if (now_ms() - t_start > budget * 1e3) {
			fprintf(stderr, "raftload: budget of %.0f s used up "
					"after %d trials\n",
				budget, t);
			break;
		}
		/* A settled cluster with a known leader. */
		int li = -1;
		double dl = now_ms() + 15000;
		while (now_ms() < dl) {
			if (cluster_settled(nodes, n, last_idx) &&
			    (li = decree_leader(eps, n, 500)) >= 0)
				break;
			usleep(20000);
		}
		if (li < 0) {
			fprintf(stderr, "raftload: trial %d: cluster did not "
					"settle\n",
				t + 1);
			rc = 1;
			break;
		}
		/* One committed entry under this leader first. */
		if (propose_once(eps[li], 2000) != 200)
			continue;
		kill(-nodes[li].pid, SIGKILL);
		kill(nodes[li].pid, SIGKILL);
		double k0 = now_ms();
		waitpid(nodes[li].pid, NULL, 0);
		double got = -1;
		int winner = -1;
		while (now_ms() - k0 < 10000 && got < 0) {
			for (int i = 0; i < n && got < 0; i++) {
				if (i == li)
					continue;
				if (propose_once(eps[i], 1000) == 200) {
					got = now_ms() - k0;
					winner = i;
				}
			}
			if (got < 0)
				usleep(2000);
		}
		done++;
		if (got >= 0) {
			ok++;
			samples_add(&s, got);
			if (got > maxv)
				maxv = got;
			last_idx = node_applied(eps[winner]);
			fprintf(stderr,
				"trial %d: killed node %d, node %d committed "
				"after %.1f ms\n",
			       t + 1, li + 1, winner + 1, got);
		} else {
			fprintf(stderr,
				"trial %d: killed node %d, no commit within "
				"10 s\n",
			       t + 1, li + 1);
		}
		nodes[li].pid = start_node(&nodes[li]);
	}
	double p50 = samples_pct(&s, 0.50), p99 = samples_pct(&s, 0.99);
	printf("FAILOVER trials=%d ok=%d p50_ms=%.1f p99_ms=%.1f "
	       "max_ms=%.1f\n",
	       done, ok, p50, p99, maxv);
	for (int i = 0; i < n; i++) {
		kill(-nodes[i].pid, SIGTERM);
		kill(nodes[i].pid, SIGTERM);
		waitpid(nodes[i].pid, NULL, 0);
	}
	free(s.v);
	return rc != 0 ? rc : (ok == done ? 0 : 1);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc >= 2 && !strcmp(argv[1], "put"))
		return cmd_put(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "failover"))
		return cmd_failover(argc - 1, argv + 1);
	fprintf(stderr, "usage: raftload put|failover ...\n");
	return 2;
}
