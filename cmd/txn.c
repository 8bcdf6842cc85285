/*
 * txn.c - `decree txn run|status|list`: the command-line client of the
 * coordinator's HTTP API (docs/api.md).
 *
 * Design notes
 *  - One blocking request per command (common/http.h's client); a 307 or
 *    308 answer (a Raft follower naming its leader) is followed once, with
 *    the same method and body.  A second redirect is an error: no leader is
 *    known, or the nodes disagree.
 *  - The spec of `txn run` is parsed here first, so a typo is reported with
 *    its line and column before anything is sent; the coordinator checks it
 *    again in full.
 *  - Output is for people unless --json is given, which prints the answer's
 *    body as it came.  Errors go to stderr either way.
 *  - A run whose answer never arrives after the request may have gone out
 *    (timeout, reset, garbled answer) is reported as "outcome unknown", not
 *    as a failure: the transaction may have committed.  Only a connect
 *    error proves that nothing was sent.
 *
 * Exit status (also in the help text):
 *   run:    0 committed, 1 aborted, 3 outcome unknown, 2 usage error,
 *           coordinator unreachable or request rejected (nothing ran)
 *   status: 0 found, 1 not found, 2 usage/connection error
 *   list:   0 listed, 2 usage/connection error
 */
#include "cmd/cmd.h"
#include "common/common.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_COMMITTED 0
#define EXIT_ABORTED   1
#define EXIT_USAGE     2
#define EXIT_UNKNOWN   3

#define DEFAULT_COORDINATOR  "127.0.0.1:7400"
#define RUN_TIMEOUT_MS	     60000 /* waiting for a run's outcome */
#define RUN_TIMEOUT_SLACK_MS 10000 /* over the spec's own timeout_ms */
#define QUERY_TIMEOUT_MS     10000 /* status and list */
#define SPEC_MAX_BYTES	     (64u << 20)
#define CELL_MAX	     40 /* display width of a result cell before "..." */
#define LIST_LIMIT_MAX	     10000

struct txn_opts {
	const char *sub;	 /* run, status, list */
	const char *coordinator; /* HOST:PORT */
	long timeout_ms;	 /* -1: the subcommand's default */
	bool json;
	bool help;
	const char *state;    /* list --state */
	long limit;	      /* list --limit, 0: server default */
	const char *key;      /* run/status --idempotency-key / --key */
	const char *protocol; /* run --protocol */
	const char *pos[2];   /* positional arguments after sub */
	int npos;
};

/* ------------------------------------------------------------- help */

static void usage_main(FILE *out)
{
	fprintf(
	    out,
	    "usage: decree txn <run|status|list> [options]\n"
	    "\n"
	    "Runs, inspects and lists transactions through a coordinator's "
	    "HTTP API\n(docs/api.md).\n"
	    "\n"
	    "  decree txn run FILE|-            run the transaction spec in "
	    "FILE (- : stdin)\n"
	    "  decree txn status GID            one transaction, by id or "
	    "branch gid\n"
	    "  decree txn status --key KEY      one transaction, by "
	    "idempotency key\n"
	    "  decree txn list [--state S] [--limit N]\n"
	    "                                   transactions the "
	    "coordinator knows\n"
	    "\n"
	    "options (every subcommand):\n"
	    "  --coordinator HOST:PORT  the coordinator's HTTP address "
	    "(default:\n"
	    "                           $DECREE_COORDINATOR, "
	    "else " DEFAULT_COORDINATOR ")\n"
	    "  --timeout-ms N           how long to wait for the answer "
	    "(run: the spec's\n"
	    "                           timeout_ms + 10000, else 60000; "
	    "status, list: 10000)\n"
	    "  --json                   print the coordinator's JSON answer "
	    "as it came\n"
	    "  -h, --help               this text; 'decree txn run --help' "
	    "for one subcommand\n"
	    "\n"
	    "A 307 redirect (a Raft follower naming its leader) is followed "
	    "once.\n"
	    "\n"
	    "exit status: run: 0 committed, 1 aborted, 3 outcome unknown; "
	    "status: 0 found,\n1 not found; list: 0; all: 2 usage error, "
	    "coordinator unreachable or request\nrejected.\n");
}

static void usage_run(FILE *out)
{
	fprintf(
	    out,
	    "usage: decree txn run [options] FILE|-\n"
	    "\n"
	    "Sends the transaction spec in FILE (or stdin for -) to POST "
	    "/v1/txns, waits for\nthe outcome and prints it: the "
	    "transaction id, the outcome, each branch's state,\nrows "
	    "affected and returned rows per statement, and on abort the "
	    "error with its\nbranch, SQLSTATE and PostgreSQL's message.\n"
	    "\n"
	    "spec (JSON):\n"
	    "  {\"branches\": [\n"
	    "     {\"resource\": \"bank_a\",\n"
	    "      \"statements\": [\"UPDATE acct SET bal = bal - 10 WHERE "
	    "id = 1\",\n"
	    "        {\"sql\": \"SELECT bal FROM acct WHERE id = $1\", "
	    "\"params\": [1]}]},\n"
	    "     {\"resource\": \"bank_b\", \"statements\": [...], "
	    "\"read_only\": false}],\n"
	    "   \"protocol\": \"2pc-pa\", \"timeout_ms\": 5000, "
	    "\"idempotency_key\": \"transfer-42\"}\n"
	    "  Only \"branches\" is required.\n"
	    "\n"
	    "options:\n"
	    "  --idempotency-key KEY    set the spec's idempotency_key: "
	    "running again with\n"
	    "                           the same key answers with the first "
	    "run's transaction\n"
	    "  --protocol P             set the spec's protocol (2pc-pa or "
	    "2pc-pn)\n"
	    "  --coordinator HOST:PORT  default: $DECREE_COORDINATOR, "
	    "else " DEFAULT_COORDINATOR "\n"
	    "  --timeout-ms N           how long to wait for the outcome "
	    "(default: the spec's\n"
	    "                           timeout_ms + 10000, else 60000)\n"
	    "  --json                   print the coordinator's JSON answer "
	    "as it came\n"
	    "\n"
	    "exit status: 0 committed, 1 aborted, 3 outcome unknown (the "
	    "coordinator lost an\nanswer, or no answer came after the "
	    "request went out: look it up with 'decree\ntxn status', or run "
	    "again with the same idempotency key), 2 usage error,\n"
	    "coordinator unreachable or request rejected (nothing ran).\n");
}

static void usage_status(FILE *out)
{
	fprintf(
	    out,
	    "usage: decree txn status [options] GID\n"
	    "       decree txn status [options] --key KEY\n"
	    "\n"
	    "Prints one transaction the coordinator knows (GET "
	    "/v1/txns/GID, or GET\n/v1/txns?idempotency_key=KEY): its "
	    "outcome, state, branches and their results.\nGID is a "
	    "transaction id (<cluster>_<epoch>_<seq>) or one of its branch "
	    "gids.\nFinished transactions are kept for 10 minutes (at most "
	    "limits.max_finished).\n"
	    "\n"
	    "options:\n"
	    "  --key KEY                look the transaction up by its "
	    "idempotency key\n"
	    "  --coordinator HOST:PORT  default: $DECREE_COORDINATOR, "
	    "else " DEFAULT_COORDINATOR "\n"
	    "  --timeout-ms N           how long to wait (default 10000)\n"
	    "  --json                   print the coordinator's JSON answer "
	    "as it came\n"
	    "\n"
	    "exit status: 0 found, 1 not found, 2 usage error or "
	    "coordinator unreachable.\n");
}

static void usage_list(FILE *out)
{
	fprintf(
	    out,
	    "usage: decree txn list [options]\n"
	    "\n"
	    "Lists the transactions the coordinator knows, oldest first "
	    "(GET /v1/txns).\n"
	    "\n"
	    "options:\n"
	    "  --state S                only those in state S: active, "
	    "preparing, committing,\n"
	    "                           aborting, in_doubt or done\n"
	    "  --limit N                at most N (1-10000; the "
	    "coordinator's default is 100)\n"
	    "  --coordinator HOST:PORT  default: $DECREE_COORDINATOR, "
	    "else " DEFAULT_COORDINATOR "\n"
	    "  --timeout-ms N           how long to wait (default 10000)\n"
	    "  --json                   print the coordinator's JSON answer "
	    "as it came\n"
	    "\n"
	    "exit status: 0 listed, 2 usage error or coordinator "
	    "unreachable.\n");
}

static void usage_for(const char *sub, FILE *out)
{
	if (sub != NULL && strcmp(sub, "run") == 0)
		usage_run(out);
	else if (sub != NULL && strcmp(sub, "status") == 0)
		usage_status(out);
	else if (sub != NULL && strcmp(sub, "list") == 0)
		usage_list(out);
	else
		usage_main(out);
}

/* ------------------------------------------------------ argument parsing */

static bool parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	if (s == NULL || *s == '\0')
		return false;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

/*
 * Fills o from argv (argv[0] is "txn").  Options may come before or after
 * the subcommand and take their value as "--opt V" or "--opt=V"; "--" ends
 * the options.  Returns 0, or EXIT_USAGE after printing why.
 */
static int parse_args(int argc, char **argv, struct txn_opts *o)
{
	static const char *const valued[] = {
	    "--coordinator", "--timeout-ms",	  "--state",	"--limit",
	    "--key",	     "--idempotency-key", "--protocol", NULL};
	bool opts_done = false;

	memset(o, 0, sizeof(*o));
	o->timeout_ms = -1;
	o->coordinator = getenv("DECREE_COORDINATOR");
	if (o->coordinator == NULL || o->coordinator[0] == '\0')
		o->coordinator = DEFAULT_COORDINATOR;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = NULL, *name = a;
		char namebuf[32];
		bool takes = false;

		if (opts_done || a[0] != '-' || strcmp(a, "-") == 0) {
			if (o->sub == NULL) {
				o->sub = a;
			} else if (o->npos < 2) {
				o->pos[o->npos++] = a;
			} else {
				fprintf(stderr,
					"decree txn: unexpected argument "
					"\"%s\"\n",
					a);
				return EXIT_USAGE;
			}
			continue;
		}
		if (strcmp(a, "--") == 0) {
			opts_done = true;
			continue;
		}
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			o->help = true;
			continue;
		}
		if (strcmp(a, "--json") == 0) {
			o->json = true;
			continue;
		}
		if (strncmp(a, "--", 2) == 0 && strchr(a, '=') != NULL) {
			size_t n = (size_t)(strchr(a, '=') - a);

			if (n >= sizeof(namebuf))
				n = sizeof(namebuf) - 1;
			memcpy(namebuf, a, n);
			namebuf[n] = '\0';
			name = namebuf;
			val = strchr(a, '=') + 1;
		}
		for (size_t k = 0; valued[k] != NULL; k++)
			takes = takes || strcmp(name, valued[k]) == 0;
		if (!takes) {
			fprintf(stderr,
				"decree txn: unknown option \"%s\" (see "
				"'decree txn --help')\n",
				a);
			return EXIT_USAGE;
		}
		if (val == NULL) {
			if (i + 1 >= argc) {
				fprintf(stderr,
					"decree txn: option %s needs a value\n",
					name);
				return EXIT_USAGE;
			}
			val = argv[++i];
		}
		if (strcmp(name, "--coordinator") == 0) {
			o->coordinator = val;
		} else if (strcmp(name, "--timeout-ms") == 0) {
			if (!parse_long(val, 1, 86400000, &o->timeout_ms)) {
				fprintf(stderr,
					"decree txn: --timeout-ms: want an "
					"integer from 1 to 86400000, not "
					"\"%s\"\n",
					val);
				return EXIT_USAGE;
			}
		} else if (strcmp(name, "--state") == 0) {
			o->state = val;
		} else if (strcmp(name, "--limit") == 0) {
			if (!parse_long(val, 1, LIST_LIMIT_MAX, &o->limit)) {
				fprintf(stderr,
					"decree txn: --limit: want an integer "
					"from 1 to %d, not \"%s\"\n",
					LIST_LIMIT_MAX, val);
				return EXIT_USAGE;
			}
		} else if (strcmp(name, "--protocol") == 0) {
			o->protocol = val;
		} else {
			o->key = val; /* --key, --idempotency-key */
		}
	}
	return 0;
}

/* Checks that the options given fit the subcommand. */
static int check_args(const struct txn_opts *o)
{
	struct sockaddr_storage ss;
	const char *s = o->sub;
	bool run = strcmp(s, "run") == 0, status = strcmp(s, "status") == 0,
	     list = strcmp(s, "list") == 0;

	if (!run && !status && !list) {
		fprintf(stderr,
			"decree txn: unknown subcommand \"%s\" (want run, "
			"status or list)\n",
			s);
		return EXIT_USAGE;
	}
	if ((o->state != NULL || o->limit != 0) && !list) {
		fprintf(stderr,
			"decree txn %s: --state and --limit are for "
			"'decree txn list'\n",
			s);
		return EXIT_USAGE;
	}
	if (o->protocol != NULL && !run) {
		fprintf(stderr,
			"decree txn %s: --protocol is for 'decree txn run'\n",
			s);
		return EXIT_USAGE;
	}
	if (o->key != NULL && list) {
		fprintf(stderr, "decree txn list: no --key (use 'decree txn "
				"status --key KEY')\n");
		return EXIT_USAGE;
	}
	if (o->key != NULL && o->key[0] == '\0') {
		fprintf(stderr, "decree txn %s: the idempotency key is empty\n",
			s);
		return EXIT_USAGE;
	}
	if (run && o->npos != 1) {
		fprintf(stderr, "decree txn run: want one FILE (or - for "
				"stdin)\n");
		return EXIT_USAGE;
	}
	if (status && o->npos + (o->key != NULL) != 1) {
		fprintf(stderr,
			"decree txn status: want one GID, or --key KEY\n");
		return EXIT_USAGE;
	}
	if (status && o->npos == 1 && o->pos[0][0] == '\0') {
		fprintf(stderr, "decree txn status: the GID is empty\n");
		return EXIT_USAGE;
	}
	if (list && o->npos != 0) {
		fprintf(stderr, "decree txn list: unexpected argument \"%s\"\n",
			o->pos[0]);
		return EXIT_USAGE;
	}
	if (net_addr_parse(o->coordinator, &ss) < 0) {
		fprintf(stderr,
			"decree txn: bad coordinator address \"%s\": want "
			"IPv4:port, [IPv6]:port or localhost:port\n",
			o->coordinator);
		return EXIT_USAGE;
	}
	return 0;
}

/* ------------------------------------------------------------ requests */

/* Percent-encodes s for a path segment or query value. */
static char *url_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = mem_alloc(strlen(s) * 3 + 1), *p = out;

	if (out == NULL)
		return NULL;
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
		    (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' ||
		    *c == '_' || *c == '~') {
			*p++ = (char)*c;
		} else {
			*p++ = '%';
			*p++ = hex[*c >> 4];
			*p++ = hex[*c & 15];
		}
	}
	*p = '\0';
	return out;
}

/*
 * Splits a Location header into a host:port and a path.  Accepted:
 * "http://host:port/path", "http://host:port" (path kept), "/path" (same
 * host) and a bare "host:port".  Returns false if it names no plain-HTTP
 * place we can reach.
 */
static bool parse_location(const char *loc, const char *cur_host,
			   const char *cur_path, char *host, size_t hostlen,
			   char *path, size_t pathlen)
{
	const char *rest = loc, *slash;
	size_t n;

	if (loc[0] == '/') {
		snprintf(host, hostlen, "%s", cur_host);
		return (size_t)snprintf(path, pathlen, "%s", loc) < pathlen;
	}
	if (strncmp(loc, "http://", 7) == 0)
		rest = loc + 7;
	else if (strstr(loc, "://") != NULL)
		return false; /* https and others: not ours */
	slash = strchr(rest, '/');
	n = slash != NULL ? (size_t)(slash - rest) : strlen(rest);
	if (n == 0 || n + 4 >= hostlen)
		return false;
	memcpy(host, rest, n);
	host[n] = '\0';
	/* A URL may leave out port 80. */
	if (strrchr(host, ':') == NULL ||
	    (host[0] == '[' && strrchr(host, ']') > strrchr(host, ':')))
		strcat(host, ":80");
	return (size_t)snprintf(path, pathlen, "%s",
				slash != NULL ? slash : cur_path) < pathlen;
}

/* Why a request failed, for the message printed. */
struct req_err {
	char host[768]; /* the address we were talking to */
	bool sent;	/* the request may have reached the coordinator */
};

/*
 * Sends the request to o->coordinator, following one 307/308 redirect.
 * Returns 0 with *resp filled, or a negative code with e filled (-ELOOP: a
 * second redirect, -EPROTONOSUPPORT: a redirect we cannot follow).
 */
static int request(const struct txn_opts *o, const char *method,
		   const char *path, const char *body, long timeout_ms,
		   struct http_response *resp, struct req_err *e)
{
	char host[256], nhost[256], npath[2048];
	const char *p = path;
	int rc;

	memset(e, 0, sizeof(*e));
	snprintf(host, sizeof(host), "%s", o->coordinator);
	for (int hop = 0;; hop++) {
		snprintf(e->host, sizeof(e->host), "%s", host);
		rc = http_client_request(
		    host, method, p, body ? "application/json" : NULL, body,
		    body ? strlen(body) : 0, (int)timeout_ms, resp);
		if (rc < 0) {
			/* Only a failed connect proves nothing went out. */
			e->sent = rc != -ECONNREFUSED && rc != -EINVAL &&
				  rc != -ENETUNREACH && rc != -EHOSTUNREACH &&
				  rc != -EADDRNOTAVAIL && rc != -ENOMEM;
			return rc;
		}
		if (resp->status != 307 && resp->status != 308)
			return 0;
		if (hop == 1) {
			snprintf(e->host, sizeof(e->host), "%s -> %s",
				 o->coordinator, host);
			http_response_free(resp);
			return -ELOOP;
		}
		if (resp->location == NULL ||
		    !parse_location(resp->location, host, p, nhost,
				    sizeof(nhost), npath, sizeof(npath))) {
			snprintf(e->host, sizeof(e->host),
				 "%.200s (Location: %.300s)", o->coordinator,
				 resp->location ? resp->location : "none");
			http_response_free(resp);
			return -EPROTONOSUPPORT;
		}
		p = npath;
		memcpy(host, nhost, sizeof(host));
		http_response_free(resp);
	}
}

static void print_request_error(const char *cmd, int rc,
				const struct req_err *e)
{
	if (rc == -ELOOP)
		fprintf(stderr,
			"decree txn %s: redirected twice (%s): no leader is "
			"known yet; try again shortly\n",
			cmd, e->host);
	else if (rc == -EPROTONOSUPPORT)
		fprintf(stderr,
			"decree txn %s: cannot follow the redirect from %s\n",
			cmd, e->host);
	else if (!e->sent)
		fprintf(stderr,
			"decree txn %s: cannot reach coordinator at %s: %s\n",
			cmd, e->host, http_strerror(rc));
	else
		fprintf(stderr,
			"decree txn %s: no complete answer from coordinator "
			"at %s: %s\n",
			cmd, e->host, http_strerror(rc));
}

/*
 * Prints an error answer ({"error": {"code", "message"}} or anything
 * else) for a status the caller did not expect.
 */
static void print_http_error(const char *cmd, const char *host,
			     const struct http_response *r, json_t *body)
{
	json_t *err = json_object_get(body, "error");
	const char *code = json_string_value(json_object_get(err, "code"));
	const char *msg = json_string_value(json_object_get(err, "message"));
	size_t len = r->body_len;

	if (msg != NULL) {
		fprintf(
		    stderr,
		    "decree txn %s: coordinator at %s answered %d %s: %s%s%s\n",
		    cmd, host, r->status, http_status_reason(r->status),
		    code ? code : "", code ? ": " : "", msg);
		return;
	}
	fprintf(stderr, "decree txn %s: coordinator at %s answered %d %s", cmd,
		host, r->status, http_status_reason(r->status));
	while (len > 0 && isspace((unsigned char)r->body[len - 1]))
		len--;
	if (len > 0)
		fprintf(stderr, ": %.*s", (int)(len < 200 ? len : 200),
			r->body);
	fprintf(stderr, "\n");
}

/* ------------------------------------------------------------ printing */

/* Display width of a UTF-8 string (one column per code point). */
static size_t width_of(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		w += ((unsigned char)*s & 0xC0) != 0x80;
	return w;
}

/*
 * A result cell made printable on one line: control characters escaped,
 * cut to CELL_MAX columns with "...".  NULL prints as NULL.
 */
static void cell_text(json_t *v, char *out, size_t len)
{
	const char *s = json_is_string(v) ? json_string_value(v) : NULL;
	size_t o = 0, w = 0;
	bool cut;

	if (json_is_null(v) || v == NULL) {
		snprintf(out, len, "NULL");
		return;
	}
	if (s == NULL) { /* not what the API sends, but print it anyway */
		char *d = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);

		snprintf(out, len, "%s", d ? d : "?");
		free(d);
		return;
	}
	cut = width_of(s) > CELL_MAX;
	for (; *s && o + 8 < len; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c & 0xC0) != 0x80 && cut && ++w > CELL_MAX - 3) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		if (c == '\n' || c == '\t' || c == '\r') {
			out[o++] = '\\';
			out[o++] = c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
		} else if (c < 0x20 || c == 0x7f) {
			out[o++] = '?';
		} else {
			out[o++] = (char)c;
		}
	}
	out[o] = '\0';
}

static void pad(FILE *out, size_t n)
{
	while (n-- > 0)
		fputc(' ', out);
}

/* Returned rows as an aligned table, indented by ind spaces. */
static void print_rows(FILE *out, json_t *cols, json_t *rows, int ind)
{
	size_t nc = json_array_size(cols), nr = json_array_size(rows);
	size_t *w = mem_calloc(nc ? nc : 1, sizeof(*w));
	char cell[CELL_MAX * 4 + 16];

	if (w == NULL)
		return;
	for (size_t c = 0; c < nc; c++) {
		cell_text(json_array_get(cols, c), cell, sizeof(cell));
		w[c] = width_of(cell);
	}
	for (size_t r = 0; r < nr; r++) {
		for (size_t c = 0; c < nc; c++) {
			cell_text(json_array_get(json_array_get(rows, r), c),
				  cell, sizeof(cell));
			if (width_of(cell) > w[c])
				w[c] = width_of(cell);
		}
	}
	for (size_t r = 0; r < nr + 2; r++) {
		json_t *row = r >= 2 ? json_array_get(rows, r - 2) : cols;

		pad(out, (size_t)ind);
		for (size_t c = 0; c < nc; c++) {
			bool last = c + 1 == nc;

			if (r == 1) {
				for (size_t k = 0; k < w[c]; k++)
					fputc('-', out);
				fputs(last ? "" : "-+-", out);
				continue;
			}
			cell_text(json_array_get(row, c), cell, sizeof(cell));
			fputs(cell, out);
			if (!last) {
				pad(out, w[c] - width_of(cell));
				fputs(" | ", out);
			}
		}
		fputc('\n', out);
	}
	mem_free(w);
}

static void print_result(FILE *out, size_t i, json_t *res)
{
	json_t *cols = json_object_get(res, "columns");
	json_t *rows = json_object_get(res, "rows");
	json_int_t aff =
	    json_integer_value(json_object_get(res, "rows_affected"));

	fprintf(out, "  statement %zu: ", i + 1);
	if (json_is_array(cols)) {
		size_t n = json_array_size(rows);

		if (!json_is_true(json_object_get(res, "truncated")))
			fprintf(out, "%zu row%s\n", n, n == 1 ? "" : "s");
		else if (aff > (json_int_t)n)
			fprintf(
			    out,
			    "%" JSON_INTEGER_FORMAT
			    " rows, the first %zu shown (limits.max_rows)\n",
			    aff, n);
		else
			fprintf(out,
				"%zu rows shown, more were cut "
				"(limits.max_rows)\n",
				n);
		if (json_array_size(cols) > 0)
			print_rows(out, cols, rows, 4);
	} else {
		fprintf(out, "%" JSON_INTEGER_FORMAT " row%s affected\n", aff,
			aff == 1 ? "" : "s");
	}
}

static const char *str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

/* One transaction as the API returns it, for people. */
static void print_txn(FILE *out, json_t *t)
{
	json_t *branches = json_object_get(t, "branches");
	json_t *err = json_object_get(t, "error");
	json_t *tim = json_object_get(t, "timings");
	json_t *dec = json_object_get(tim, "decided_ms");
	json_t *done = json_object_get(tim, "done_ms");
	size_t nb = json_array_size(branches);

	fprintf(out, "txn %s: %s\n", str(t, "gid"), str(t, "outcome"));
	fprintf(out, "  state %s, protocol %s", str(t, "state"),
		str(t, "protocol"));
	if (json_is_integer(dec))
		fprintf(out, ", decided in %" JSON_INTEGER_FORMAT " ms",
			json_integer_value(dec));
	if (json_is_integer(done))
		fprintf(out, ", done in %" JSON_INTEGER_FORMAT " ms",
			json_integer_value(done));
	if (json_is_true(json_object_get(t, "recovered")))
		fprintf(out, ", recovered after a restart");
	fprintf(out, "\n");
	if (json_is_string(json_object_get(t, "idempotency_key")))
		fprintf(out, "  idempotency key: %s\n",
			str(t, "idempotency_key"));
	if (json_is_object(err)) {
		json_t *bi = json_object_get(err, "branch");
		json_t *b = json_is_integer(bi)
				? json_array_get(branches,
						 (size_t)json_integer_value(bi))
				: NULL;

		fprintf(out, "  error: %s",
			str(err, "reason")[0] ? str(err, "reason")
					      : str(err, "code"));
		if (json_is_integer(bi))
			fprintf(out, " on branch %" JSON_INTEGER_FORMAT " (%s)",
				json_integer_value(bi) + 1,
				str(err, "resource"));
		fprintf(out, "\n");
		if (json_is_string(json_object_get(err, "sqlstate")))
			fprintf(
			    out, "    SQLSTATE %s: %s\n", str(err, "sqlstate"),
			    b && str(b, "message")[0] ? str(b, "message")
						      : str(err, "message"));
		else if (str(err, "message")[0] != '\0')
			fprintf(out, "    %s\n", str(err, "message"));
	}
	for (size_t i = 0; i < nb; i++) {
		json_t *b = json_array_get(branches, i);
		json_t *res = json_object_get(b, "results");
		json_t *ebr = json_object_get(err, "branch");
		/* A branch still "failed", or the one the abort names (it is
		 * "rolled_back" by the time the answer goes out). */
		bool failed =
		    strcmp(str(b, "state"), "failed") == 0 ||
		    (json_is_integer(ebr) &&
		     json_integer_value(ebr) == (json_int_t)i &&
		     strcmp(str(err, "code"), "statement_failed") == 0);

		fprintf(out, "branch %zu of %zu: %s %s %s\n", i + 1, nb,
			str(b, "resource"), str(b, "gid"), str(b, "state"));
		for (size_t k = 0; k < json_array_size(res); k++)
			print_result(out, k, json_array_get(res, k));
		if (str(b, "sqlstate")[0] == '\0' &&
		    str(b, "message")[0] == '\0')
			continue;
		/* Statements run in order and stop at the first error, so
		 * a failed branch's error belongs to the one after the last
		 * result. */
		fprintf(out, "  ");
		if (failed)
			fprintf(out, "statement %zu failed: ",
				json_array_size(res) + 1);
		if (str(b, "sqlstate")[0] != '\0')
			fprintf(out, "SQLSTATE %s: ", str(b, "sqlstate"));
		fprintf(out, "%s\n", str(b, "message"));
	}
}

static void print_list(FILE *out, json_t *body, long limit)
{
	json_t *txns = json_object_get(body, "txns");
	size_t n = json_array_size(txns), wg = 3;

	for (size_t i = 0; i < n; i++) {
		size_t w = strlen(str(json_array_get(txns, i), "gid"));

		wg = w > wg ? w : wg;
	}
	if (n > 0) {
		fprintf(out, "%-*s  %-10s  %-9s  %-8s  %8s  %9s\n", (int)wg,
			"GID", "STATE", "OUTCOME", "PROTOCOL", "BRANCHES",
			"AGE");
	}
	for (size_t i = 0; i < n; i++) {
		json_t *t = json_array_get(txns, i);
		json_int_t age = json_integer_value(
		    json_object_get(json_object_get(t, "timings"), "age_ms"));
		char agebuf[32];

		if (age < 10000)
			snprintf(agebuf, sizeof(agebuf),
				 "%" JSON_INTEGER_FORMAT "ms", age);
		else
			snprintf(agebuf, sizeof(agebuf), "%.0fs",
				 (double)age / 1000.0);
		fprintf(out, "%-*s  %-10s  %-9s  %-8s  %8zu  %9s\n", (int)wg,
			str(t, "gid"), str(t, "state"), str(t, "outcome"),
			str(t, "protocol"),
			json_array_size(json_object_get(t, "branches")),
			agebuf);
	}
	fprintf(out, "%zu transaction%s", n, n == 1 ? "" : "s");
	if (n > 0 && n == (size_t)(limit ? limit : 100))
		fprintf(out, " (the limit; --limit N shows more)");
	fprintf(out, "\n");
}

/* Prints the body as it came, ending with a newline. */
static void print_raw(FILE *out, const struct http_response *r)
{
	fwrite(r->body, 1, r->body_len, out);
	if (r->body_len == 0 || r->body[r->body_len - 1] != '\n')
		fputc('\n', out);
}

/* ---------------------------------------------------------------- run */

static char *read_all(FILE *f, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = mem_alloc(cap), *nb;

	if (buf == NULL)
		return NULL;
	for (;;) {
		size_t got = fread(buf + n, 1, cap - n - 1, f);

		n += got;
		if (got == 0 || n > SPEC_MAX_BYTES)
			break;
		if (cap - n - 1 == 0) {
			nb = mem_realloc(buf, cap * 2);
			if (nb == NULL) {
				mem_free(buf);
				return NULL;
			}
			buf = nb;
			cap *= 2;
		}
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* Reads and checks the spec; NULL after printing why. */
static json_t *load_spec(const struct txn_opts *o)
{
	const char *file = o->pos[0];
	bool is_stdin = strcmp(file, "-") == 0;
	const char *name = is_stdin ? "<stdin>" : file;
	FILE *f = is_stdin ? stdin : fopen(file, "rb");
	json_error_t jerr;
	json_t *spec, *k;
	char *text;
	size_t len = 0;
	bool rerr;

	if (f == NULL) {
		fprintf(stderr, "decree txn run: cannot open %s: %s\n", file,
			strerror(errno));
		return NULL;
	}
	text = read_all(f, &len);
	rerr = ferror(f) != 0;
	if (!is_stdin)
		fclose(f);
	if (text == NULL || rerr || len > SPEC_MAX_BYTES) {
		fprintf(stderr, "decree txn run: cannot read %s: %s\n", name,
			text == NULL ? "out of memory"
			: rerr	     ? "read error"
				     : "larger than 64 MiB");
		mem_free(text);
		return NULL;
	}
	spec = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	mem_free(text);
	if (spec == NULL) {
		fprintf(stderr, "decree txn run: %s: line %d column %d: %s\n",
			name, jerr.line, jerr.column, jerr.text);
		return NULL;
	}
	if (!json_is_object(spec)) {
		fprintf(stderr,
			"decree txn run: %s: the spec must be a JSON object "
			"with \"branches\" (see 'decree txn run --help')\n",
			name);
		goto err;
	}
	k = json_object_get(spec, "idempotency_key");
	if (o->key != NULL && k != NULL &&
	    (!json_is_string(k) || strcmp(json_string_value(k), o->key) != 0)) {
		fprintf(stderr,
			"decree txn run: --idempotency-key differs from the "
			"spec's idempotency_key\n");
		goto err;
	}
	if ((o->key != NULL && json_object_set_new(spec, "idempotency_key",
						   json_string(o->key)) < 0) ||
	    (o->protocol != NULL &&
	     json_object_set_new(spec, "protocol", json_string(o->protocol)) <
		 0)) {
		fprintf(stderr, "decree txn run: out of memory (or an option "
				"is not valid UTF-8)\n");
		goto err;
	}
	return spec;
err:
	json_decref(spec);
	return NULL;
}

/* A transaction reply (it has an outcome), not an error answer. */
static bool is_txn(json_t *body)
{
	return json_is_object(body) &&
	       json_is_string(json_object_get(body, "outcome")) &&
	       json_is_string(json_object_get(body, "gid"));
}

static int outcome_exit(json_t *t)
{
	const char *oc = str(t, "outcome");

	if (strcmp(oc, "committed") == 0)
		return EXIT_COMMITTED;
	if (strcmp(oc, "aborted") == 0)
		return EXIT_ABORTED;
	return EXIT_UNKNOWN;
}

static int txn_run(const struct txn_opts *o)
{
	struct http_response r;
	struct req_err e;
	json_t *spec, *body = NULL, *tmo;
	char *payload;
	long timeout = o->timeout_ms;
	int rc, status;

	spec = load_spec(o);
	if (spec == NULL)
		return EXIT_USAGE;
	tmo = json_object_get(spec, "timeout_ms");
	if (timeout < 0)
		timeout =
		    json_is_integer(tmo) && json_integer_value(tmo) > 0 &&
			    json_integer_value(tmo) < 86400000
			? (long)json_integer_value(tmo) + RUN_TIMEOUT_SLACK_MS
			: RUN_TIMEOUT_MS;
	payload = json_dumps(spec, JSON_COMPACT);
	json_decref(spec);
	if (payload == NULL) {
		fprintf(stderr, "decree txn run: out of memory\n");
		return EXIT_USAGE;
	}
	rc = request(o, "POST", "/v1/txns", payload, timeout, &r, &e);
	free(payload);
	if (rc < 0) {
		print_request_error("run", rc, &e);
		if (e.sent && rc != -ELOOP && rc != -EPROTONOSUPPORT) {
			fprintf(stderr,
				"decree txn run: the outcome is unknown: the "
				"transaction may have run.  Look it up with "
				"'decree txn list' or 'decree txn status', or "
				"run it again with the same idempotency "
				"key.\n");
			return EXIT_UNKNOWN;
		}
		return EXIT_USAGE;
	}
	body = json_loadb(r.body, r.body_len, 0, NULL);
	if (is_txn(body)) {
		status = outcome_exit(body);
		if (o->json)
			print_raw(stdout, &r);
		else
			print_txn(stdout, body);
		if (status == EXIT_UNKNOWN)
			fprintf(stderr,
				"decree txn run: the outcome of %s is not "
				"known yet; look it up later with 'decree txn "
				"status %s'\n",
				str(body, "gid"), str(body, "gid"));
	} else {
		if (o->json)
			print_raw(stdout, &r);
		print_http_error("run", e.host, &r, body);
		/* A 4xx, or a JSON error from the API, comes before anything
		 * ran; anything else (the 500 of a reply that could not be
		 * encoded after the decision, a proxy's 502) leaves the
		 * outcome unknown. */
		status =
		    (r.status >= 400 && r.status < 500) ||
			    (r.status >= 500 &&
			     json_is_object(json_object_get(body, "error")))
			? EXIT_USAGE
			: EXIT_UNKNOWN;
		if (status == EXIT_UNKNOWN)
			fprintf(stderr, "decree txn run: the outcome is "
					"unknown: the transaction may have "
					"run.\n");
	}
	json_decref(body);
	http_response_free(&r);
	return status;
}

/* ------------------------------------------------------- status, list */

static int txn_status(const struct txn_opts *o)
{
	struct http_response r;
	struct req_err e;
	json_t *body;
	char *enc, *path;
	size_t plen;
	int rc, status;

	enc = url_encode(o->key != NULL ? o->key : o->pos[0]);
	plen = enc ? strlen(enc) + 64 : 0;
	path = enc ? mem_alloc(plen) : NULL;
	if (path == NULL) {
		mem_free(enc);
		fprintf(stderr, "decree txn status: out of memory\n");
		return EXIT_USAGE;
	}
	if (o->key != NULL)
		snprintf(path, plen, "/v1/txns?idempotency_key=%s", enc);
	else
		snprintf(path, plen, "/v1/txns/%s", enc);
	mem_free(enc);
	rc = request(o, "GET", path, NULL,
		     o->timeout_ms > 0 ? o->timeout_ms : QUERY_TIMEOUT_MS, &r,
		     &e);
	mem_free(path);
	if (rc < 0) {
		print_request_error("status", rc, &e);
		return EXIT_USAGE;
	}
	body = json_loadb(r.body, r.body_len, 0, NULL);
	if (o->json)
		print_raw(stdout, &r);
	if (r.status == 200 && is_txn(body)) {
		if (!o->json)
			print_txn(stdout, body);
		status = 0;
	} else {
		print_http_error("status", e.host, &r, body);
		status = r.status == 404 ? 1 : EXIT_USAGE;
	}
	json_decref(body);
	http_response_free(&r);
	return status;
}

static int txn_list(const struct txn_opts *o)
{
	struct http_response r;
	struct req_err e;
	json_t *body;
	char *enc = o->state ? url_encode(o->state) : NULL;
	char path[512];
	int rc, status;

	if (o->state != NULL && (enc == NULL || strlen(enc) > 400)) {
		fprintf(stderr, "decree txn list: %s\n",
			enc ? "--state: too long" : "out of memory");
		mem_free(enc);
		return EXIT_USAGE;
	}
	snprintf(path, sizeof(path), "/v1/txns%s%s%s", enc ? "?state=" : "",
		 enc ? enc : "", o->limit ? (enc ? "&limit=" : "?limit=") : "");
	mem_free(enc);
	if (o->limit)
		snprintf(path + strlen(path), sizeof(path) - strlen(path),
			 "%ld", o->limit);
	rc = request(o, "GET", path, NULL,
		     o->timeout_ms > 0 ? o->timeout_ms : QUERY_TIMEOUT_MS, &r,
		     &e);
	if (rc < 0) {
		print_request_error("list", rc, &e);
		return EXIT_USAGE;
	}
	body = json_loadb(r.body, r.body_len, 0, NULL);
	if (o->json)
		print_raw(stdout, &r);
	if (r.status == 200 && json_is_array(json_object_get(body, "txns"))) {
		if (!o->json)
			print_list(stdout, body, o->limit);
		status = 0;
	} else {
		print_http_error("list", e.host, &r, body);
		status = EXIT_USAGE;
	}
	json_decref(body);
	http_response_free(&r);
	return status;
}

int cmd_txn(int argc, char **argv)
{
	struct txn_opts o;
	int rc;

	rc = parse_args(argc, argv, &o);
	if (rc != 0)
		return rc;
	if (o.help || (o.sub != NULL && strcmp(o.sub, "help") == 0)) {
		usage_for(o.help ? o.sub : o.pos[0], stdout);
		return 0;
	}
	if (o.sub == NULL) {
		usage_main(stderr);
		return EXIT_USAGE;
	}
	rc = check_args(&o);
	if (rc != 0)
		return rc;
	if (strcmp(o.sub, "run") == 0)
		return txn_run(&o);
	if (strcmp(o.sub, "status") == 0)
		return txn_status(&o);
	return txn_list(&o);
}
