/*
 * config.c - loads decree's JSON config files and checks every key, so a
 * mistake is reported once, at start-up, naming the file and the key path.
 *
 * Design notes
 *  - Two layers.  The generic one walks a jansson document with a
 *    struct config_value that carries the key path ("resources[1].driver");
 *    every getter checks presence, type and range and, on failure, writes
 *    one message "config FILE: key "PATH": what was expected, what was
 *    found" and returns -EINVAL.  The node layer (config_node_load) is a
 *    straight-line reading of the schema in docs/config.md on top of it.
 *  - Unknown keys are errors, not warnings: a misspelt "prepare_ms" that
 *    silently fell back to its default is worse than a refusal to start.
 *    Duplicate keys are refused by the parser (JSON_REJECT_DUPLICATES).
 *  - The node's strings point into the jansson document, which the node
 *    keeps; only the member and resource arrays are allocated.  So a loaded
 *    config costs few allocations and is freed in one place.
 *  - Checks that span keys (duplicate resource names, node_id among the
 *    members, retry_initial_ms <= retry_max_ms, heartbeat_ms <
 *    election_ms) run after the keys they relate have each been checked.
 *  - Conninfo strings may carry passwords; config_conninfo_redact() is the
 *    one way to print them.
 */
#include "common/common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
	int code;
	const char *msg;
} config_errors[] = {
#define CONFIG_ERR_ROW(name, msg) {-name, msg},
    CONFIG_ERRORS(CONFIG_ERR_ROW)
#undef CONFIG_ERR_ROW
};

const char *config_strerror(int err)
{
	for (size_t i = 0; i < sizeof(config_errors) / sizeof(config_errors[0]);
	     i++)
		if (config_errors[i].code == err)
			return config_errors[i].msg;
	return strerror(-err);
}

const char *const config_driver_names[] = {"postgres", "agent", "kv", NULL};
const char *const config_sync_names[] = {"fdatasync", "dsync", "none", NULL};
/* Indexed by enum log_level, in log.h's order. */
static const char *const log_level_names[] = {"debug", "info", "warn",
					      "error", "off",  NULL};
_Static_assert(LOG_DEBUG == 0 && LOG_INFO == 1 && LOG_WARN == 2 &&
		   LOG_ERROR == 3 && LOG_OFF == 4,
	       "log_level_names follows enum log_level");

/* ---- messages ----------------------------------------------------------- */

static const char *ctx_file(const struct config_ctx *ctx)
{
	return ctx->file != NULL ? ctx->file : "<string>";
}

/* Writes "config FILE: " + (key "PATH": if path) + fmt into the buffer. */
static int vfail(const struct config_ctx *ctx, const char *path,
		 const char *fmt, va_list ap)
{
	int n;

	if (ctx->err == NULL || ctx->errlen == 0)
		return -EINVAL;
	if (path != NULL && path[0] != '\0')
		n = snprintf(ctx->err, ctx->errlen,
			     "config %s: key \"%s\": ", ctx_file(ctx), path);
	else
		n = snprintf(ctx->err, ctx->errlen,
			     "config %s: ", ctx_file(ctx));
	if (n >= 0 && (size_t)n < ctx->errlen)
		vsnprintf(ctx->err + n, ctx->errlen - (size_t)n, fmt, ap);
	return -EINVAL;
}

static int ctx_fail(const struct config_ctx *ctx, const char *path,
		    const char *fmt, ...) LOG_PRINTF(3, 4);

static int ctx_fail(const struct config_ctx *ctx, const char *path,
		    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(ctx, path, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int oom(const struct config_ctx *ctx)
{
	ctx_fail(ctx, NULL, "out of memory");
	return -ENOMEM;
}

int config_fail(const struct config_value *v, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(v->ctx, v->path, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* "a string", "an integer", ... for "got ..." in messages. */
static const char *type_name(const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a real number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "an unknown type";
}

/*
 * Copies s into a message-safe form: at most 64 bytes, control characters
 * and quotes replaced by '?', so a hostile key cannot forge log lines.
 */
static const char *shown(const char *s, char *buf, size_t len)
{
	size_t i = 0;

	for (; *s != '\0' && i + 4 < len && i < 64; s++)
		buf[i++] = ((unsigned char)*s < 0x20 || *s == '"' || *s == 0x7f)
			       ? '?'
			       : *s;
	if (*s != '\0') {
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	buf[i] = '\0';
	return buf;
}

/* ---- documents ---------------------------------------------------------- */

int config_parse(const struct config_ctx *ctx, const char *text, size_t len,
		 json_t **root)
{
	json_error_t jerr;
	json_t *j;

	if (text == NULL)
		return ctx_fail(ctx, NULL, "no text");
	j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (j == NULL) {
		if (jerr.line < 1)
			return ctx_fail(ctx, NULL, "invalid JSON: %s",
					jerr.text);
		return ctx_fail(ctx, NULL,
				"line %d, column %d: invalid JSON: %s",
				jerr.line, jerr.column, jerr.text);
	}
	*root = j;
	return 0;
}

int config_read_file(const struct config_ctx *ctx, json_t **root)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f;
	int rc;

	if (ctx->file == NULL)
		return ctx_fail(ctx, NULL, "no file name");
	f = fopen(ctx->file, "rb");
	if (f == NULL) {
		rc = -errno;
		ctx_fail(ctx, NULL, "cannot open: %s", strerror(-rc));
		return rc;
	}
	text = mem_alloc(CONFIG_FILE_MAX + 1);
	if (text == NULL) {
		rc = -ENOMEM;
		ctx_fail(ctx, NULL, "out of memory");
		goto err_close;
	}
	len = fread(text, 1, CONFIG_FILE_MAX + 1, f);
	if (ferror(f)) {
		rc = errno ? -errno : -EIO;
		ctx_fail(ctx, NULL, "cannot read: %s", strerror(-rc));
		goto err_free;
	}
	if (len > CONFIG_FILE_MAX) {
		rc = -EFBIG;
		ctx_fail(ctx, NULL, "file larger than %u bytes",
			 CONFIG_FILE_MAX);
		goto err_free;
	}
	rc = config_parse(ctx, text, len, root);
err_free:
	mem_free(text);
err_close:
	fclose(f);
	return rc;
}

void config_value_root(const struct config_ctx *ctx, json_t *root,
		       struct config_value *out)
{
	out->ctx = ctx;
	out->json = root;
	out->path[0] = '\0';
}

/*
 * dst = a + b + c, cut to CONFIG_PATH_MAX - 1 bytes (paths that long only
 * come from absurdly nested documents; the message stays readable).
 */
static void path_join(char *dst, const char *a, const char *b, const char *c)
{
	const char *parts[3] = {a, b, c};
	size_t n = 0;

	for (int i = 0; i < 3; i++) {
		size_t len = strlen(parts[i]);

		if (len > CONFIG_PATH_MAX - 1 - n)
			len = CONFIG_PATH_MAX - 1 - n;
		memmove(dst + n, parts[i], len);
		n += len;
	}
	dst[n] = '\0';
}

/* child path = parent.path + "." + key (or key at the root). */
static void path_key(struct config_value *child, const struct config_value *v,
		     const char *key)
{
	char safe[80];
	char parent[CONFIG_PATH_MAX];

	memcpy(parent, v->path, sizeof(parent));
	path_join(child->path, parent, parent[0] ? "." : "",
		  shown(key, safe, sizeof(safe)));
	child->ctx = v->ctx;
}

/* ---- generic getters ---------------------------------------------------- */

static bool in_list(const char *s, const char *const *list)
{
	for (; *list != NULL; list++)
		if (strcmp(s, *list) == 0)
			return true;
	return false;
}

int config_value_object(const struct config_value *v,
			const char *const *allowed)
{
	const char *key;
	json_t *val;

	if (!json_is_object(v->json))
		return config_fail(v, "expected an object, got %s",
				   type_name(v->json));
	json_object_foreach(v->json, key, val)
	{
		if (allowed != NULL && !in_list(key, allowed)) {
			struct config_value bad;
			char list[256];
			size_t n = 0;

			list[0] = '\0';
			for (const char *const *a = allowed;
			     *a != NULL && n < sizeof(list); a++) {
				int w =
				    snprintf(list + n, sizeof(list) - n, "%s%s",
					     a == allowed ? "" : ", ", *a);

				if (w < 0)
					break;
				n += (size_t)w;
			}
			path_key(&bad, v, key);
			return config_fail(&bad, "unknown key (allowed: %s)",
					   list);
		}
	}
	return 0;
}

bool config_has(const struct config_value *v, const char *key)
{
	return json_is_object(v->json) && json_object_get(v->json, key) != NULL;
}

int config_get(const struct config_value *v, const char *key, int flags,
	       struct config_value *child)
{
	path_key(child, v, key);
	child->json =
	    json_is_object(v->json) ? json_object_get(v->json, key) : NULL;
	if (child->json == NULL && (flags & CONFIG_REQUIRED))
		return config_fail(child, "required key is missing");
	return 0;
}

int config_value_string(const struct config_value *v, const char **out)
{
	if (!json_is_string(v->json))
		return config_fail(v, "expected a string, got %s",
				   type_name(v->json));
	if (strlen(json_string_value(v->json)) != json_string_length(v->json))
		return config_fail(v, "string contains a NUL character");
	*out = json_string_value(v->json);
	return 0;
}

int config_value_int(const struct config_value *v, long long min, long long max,
		     long long *out)
{
	long long x;

	if (!json_is_integer(v->json))
		return config_fail(v, "expected an integer, got %s",
				   type_name(v->json));
	x = (long long)json_integer_value(v->json);
	if (x < min || x > max)
		return config_fail(v,
				   "expected an integer from %lld to %lld, "
				   "got %lld",
				   min, max, x);
	*out = x;
	return 0;
}

int config_get_string(const struct config_value *v, const char *key, int flags,
		      const char **out)
{
	struct config_value c;
	int rc = config_get(v, key, flags, &c);

	if (rc < 0 || c.json == NULL)
		return rc;
	return config_value_string(&c, out);
}

int config_get_int(const struct config_value *v, const char *key, int flags,
		   long long min, long long max, long long *out)
{
	struct config_value c;
	int rc = config_get(v, key, flags, &c);

	if (rc < 0 || c.json == NULL)
		return rc;
	return config_value_int(&c, min, max, out);
}

int config_get_bool(const struct config_value *v, const char *key, int flags,
		    bool *out)
{
	struct config_value c;
	int rc = config_get(v, key, flags, &c);

	if (rc < 0 || c.json == NULL)
		return rc;
	if (!json_is_boolean(c.json))
		return config_fail(&c, "expected a boolean, got %s",
				   type_name(c.json));
	*out = json_is_true(c.json);
	return 0;
}

int config_get_enum(const struct config_value *v, const char *key, int flags,
		    const char *const *names, int *out)
{
	struct config_value c;
	const char *s;
	char list[256];
	char safe[80];
	size_t n = 0;
	int rc = config_get(v, key, flags, &c);

	if (rc < 0 || c.json == NULL)
		return rc;
	rc = config_value_string(&c, &s);
	if (rc < 0)
		return rc;
	for (int i = 0; names[i] != NULL; i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = i;
			return 0;
		}
	}
	list[0] = '\0';
	for (int i = 0; names[i] != NULL && n < sizeof(list); i++) {
		int w = snprintf(list + n, sizeof(list) - n, "%s\"%s\"",
				 i ? ", " : "", names[i]);

		if (w < 0)
			break;
		n += (size_t)w;
	}
	return config_fail(&c, "expected one of %s, got \"%s\"", list,
			   shown(s, safe, sizeof(safe)));
}

int config_get_object(const struct config_value *v, const char *key, int flags,
		      const char *const *allowed, struct config_value *child)
{
	int rc = config_get(v, key, flags, child);

	if (rc < 0 || child->json == NULL)
		return rc;
	return config_value_object(child, allowed);
}

int config_get_array(const struct config_value *v, const char *key, int flags,
		     struct config_value *arr, size_t *n)
{
	int rc = config_get(v, key, flags, arr);

	*n = 0;
	if (rc < 0 || arr->json == NULL)
		return rc;
	if (!json_is_array(arr->json))
		return config_fail(arr, "expected an array, got %s",
				   type_name(arr->json));
	*n = json_array_size(arr->json);
	return 0;
}

int config_array_elem(const struct config_value *arr, size_t i,
		      struct config_value *elem)
{
	char idx[32];
	char parent[CONFIG_PATH_MAX];

	memcpy(parent, arr->path, sizeof(parent));
	snprintf(idx, sizeof(idx), "[%zu]", i);
	elem->ctx = arr->ctx;
	path_join(elem->path, parent, idx, "");
	elem->json = json_array_get(arr->json, i);
	if (elem->json == NULL)
		return config_fail(elem, "no such element");
	return 0;
}

/* ---- node config: value checks ----------------------------------------- */

static bool chars_ok(const char *s, size_t min, size_t max, bool upper,
		     const char *extra)
{
	size_t n = strlen(s);

	if (n < min || n > max)
		return false;
	for (; *s; s++) {
		char c = *s;

		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    (upper && c >= 'A' && c <= 'Z') ||
		    (c != '\0' && strchr(extra, c) != NULL))
			continue;
		return false;
	}
	return true;
}

/* "host:port" or "[v6]:port" with a decimal port 0..65535. */
static bool hostport_ok(const char *s)
{
	const char *port;
	long v = 0;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (close == NULL || close == s + 1 || close[1] != ':')
			return false;
		port = close + 2;
	} else {
		const char *colon = strrchr(s, ':');

		if (colon == NULL || colon == s)
			return false;
		for (const char *p = s; p < colon; p++)
			if (*p == ':' || (unsigned char)*p <= ' ' || *p == '/')
				return false;
		port = colon + 1;
	}
	if (*port == '\0' || strlen(port) > 5)
		return false;
	for (const char *p = port; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (*p - '0');
	}
	return v <= 65535;
}

/* A required or optional "host:port" string. */
static int get_addr(const struct config_value *v, const char *key, int flags,
		    const char **out)
{
	struct config_value c;
	const char *s;
	char safe[80];
	int rc = config_get(v, key, flags, &c);

	if (rc < 0 || c.json == NULL)
		return rc;
	rc = config_value_string(&c, &s);
	if (rc < 0)
		return rc;
	if (!hostport_ok(s))
		return config_fail(&c,
				   "expected \"host:port\" (port 0-65535), "
				   "got \"%s\"",
				   shown(s, safe, sizeof(safe)));
	*out = s;
	return 0;
}

/* A string matching chars_ok(); what describes the rule for the message. */
static int get_name(const struct config_value *v, const char *key, int flags,
		    size_t max, bool upper, const char *extra, const char *what,
		    const char **out)
{
	struct config_value c;
	const char *s;
	char safe[80];
	int rc = config_get(v, key, flags, &c);

	if (rc < 0 || c.json == NULL)
		return rc;
	rc = config_value_string(&c, &s);
	if (rc < 0)
		return rc;
	if (!chars_ok(s, 1, max, upper, extra))
		return config_fail(&c, "expected %s, got \"%s\"", what,
				   shown(s, safe, sizeof(safe)));
	*out = s;
	return 0;
}

static int get_nonempty(const struct config_value *v, const char *key,
			int flags, const char **out)
{
	struct config_value c;
	const char *s;
	int rc = config_get(v, key, flags, &c);

	if (rc < 0 || c.json == NULL)
		return rc;
	rc = config_value_string(&c, &s);
	if (rc < 0)
		return rc;
	if (s[0] == '\0')
		return config_fail(&c, "expected a non-empty string");
	*out = s;
	return 0;
}

static int get_uint(const struct config_value *v, const char *key,
		    long long min, long long max, unsigned *out)
{
	long long x = *out;
	int rc = config_get_int(v, key, CONFIG_OPTIONAL, min, max, &x);

	if (rc == 0)
		*out = (unsigned)x;
	return rc;
}

/* ---- node config: sections ---------------------------------------------- */

static int load_listen(const struct config_value *root, struct config_node *n)
{
	static const char *const keys[] = {"http", "peer", NULL};
	struct config_value l;
	int rc;

	n->listen_http = "127.0.0.1:7400";
	rc = config_get_object(root, "listen", CONFIG_OPTIONAL, keys, &l);
	if (rc < 0 || l.json == NULL)
		return rc;
	rc = get_addr(&l, "http", CONFIG_OPTIONAL, &n->listen_http);
	if (rc == 0)
		rc = get_addr(&l, "peer", CONFIG_OPTIONAL, &n->listen_peer);
	return rc;
}

static int load_members(const struct config_value *root, struct config_node *n)
{
	static const char *const keys[] = {"id", "peer", "http", NULL};
	struct config_value arr, m;
	bool self = false;
	size_t count;
	int rc;

	rc = config_get_array(root, "members", CONFIG_OPTIONAL, &arr, &count);
	if (rc < 0 || count == 0)
		return rc;
	n->members = mem_calloc(count, sizeof(*n->members));
	if (n->members == NULL)
		return oom(root->ctx);
	n->nmembers = count;
	for (size_t i = 0; i < count; i++) {
		struct config_member *mb = &n->members[i];
		struct config_value id;

		rc = config_array_elem(&arr, i, &m);
		if (rc == 0)
			rc = config_value_object(&m, keys);
		if (rc == 0)
			rc = get_name(
			    &m, "id", CONFIG_REQUIRED, 64, true, "._-",
			    "1 to 64 characters from [A-Za-z0-9._-]", &mb->id);
		if (rc == 0)
			rc = get_addr(&m, "peer", CONFIG_REQUIRED, &mb->peer);
		if (rc == 0)
			rc = get_addr(&m, "http", CONFIG_REQUIRED, &mb->http);
		if (rc < 0)
			return rc;
		for (size_t j = 0; j < i; j++) {
			if (strcmp(n->members[j].id, mb->id) == 0) {
				config_get(&m, "id", CONFIG_REQUIRED, &id);
				return config_fail(&id,
						   "duplicate member id \"%s\" "
						   "(also %s[%zu])",
						   mb->id, arr.path, j);
			}
		}
		if (strcmp(mb->id, n->node_id) == 0)
			self = true;
	}
	if (!self)
		return config_fail(&arr,
				   "node_id \"%s\" is not among the members",
				   n->node_id);
	if (n->listen_peer == NULL)
		return ctx_fail(root->ctx, "listen.peer",
				"required when members are configured");
	return 0;
}

static int load_resource(const struct config_value *arr, size_t i,
			 struct config_node *n)
{
	static const char *const keys[] = {"name",    "driver",	   "conninfo",
					   "address", "pool_size", NULL};
	struct config_resource *r = &n->resources[i];
	struct config_value v, c;
	int driver = 0;
	int rc;

	rc = config_array_elem(arr, i, &v);
	if (rc == 0)
		rc = config_value_object(&v, keys);
	if (rc == 0)
		rc =
		    get_name(&v, "name", CONFIG_REQUIRED, 32, true, "_-",
			     "1 to 32 characters from [A-Za-z0-9_-]", &r->name);
	if (rc == 0)
		rc = config_get_enum(&v, "driver", CONFIG_REQUIRED,
				     config_driver_names, &driver);
	if (rc < 0)
		return rc;
	r->driver = (enum config_driver)driver;
	/* conninfo belongs to postgres, address to agent, neither to kv. */
	if (r->driver != CONFIG_DRIVER_POSTGRES && config_has(&v, "conninfo")) {
		config_get(&v, "conninfo", CONFIG_REQUIRED, &c);
		return config_fail(&c, "only for driver \"postgres\"");
	}
	if (r->driver != CONFIG_DRIVER_AGENT && config_has(&v, "address")) {
		config_get(&v, "address", CONFIG_REQUIRED, &c);
		return config_fail(&c, "only for driver \"agent\"");
	}
	if (r->driver == CONFIG_DRIVER_POSTGRES)
		rc = config_get_string(&v, "conninfo", CONFIG_REQUIRED,
				       &r->conninfo);
	else if (r->driver == CONFIG_DRIVER_AGENT)
		rc = get_addr(&v, "address", CONFIG_REQUIRED, &r->address);
	if (rc < 0)
		return rc;
	r->pool_size = 8;
	rc = get_uint(&v, "pool_size", 1, 1024, &r->pool_size);
	if (rc < 0)
		return rc;
	for (size_t j = 0; j < i; j++) {
		if (strcmp(n->resources[j].name, r->name) == 0) {
			config_get(&v, "name", CONFIG_REQUIRED, &c);
			return config_fail(&c,
					   "duplicate resource name \"%s\" "
					   "(also %s[%zu])",
					   r->name, arr->path, j);
		}
	}
	return 0;
}

static int load_resources(const struct config_value *root,
			  struct config_node *n)
{
	struct config_value arr;
	size_t count;
	int rc;

	rc = config_get_array(root, "resources", CONFIG_REQUIRED, &arr, &count);
	if (rc < 0)
		return rc;
	if (count == 0)
		return config_fail(&arr, "expected at least one resource");
	n->resources = mem_calloc(count, sizeof(*n->resources));
	if (n->resources == NULL)
		return oom(root->ctx);
	n->nresources = count;
	for (size_t i = 0; i < count; i++) {
		rc = load_resource(&arr, i, n);
		if (rc < 0)
			return rc;
	}
	return 0;
}

#define MS_MAX 86400000LL /* one day */

static int load_timeouts(const struct config_value *root, struct config_node *n)
{
	static const char *const keys[] = {"prepare_ms",
					   "statement_ms",
					   "retry_initial_ms",
					   "retry_max_ms",
					   "election_ms",
					   "heartbeat_ms",
					   NULL};
	struct config_timeouts *t = &n->timeouts;
	struct config_value o, c;
	int rc;

	t->prepare_ms = 5000;
	t->statement_ms = 10000;
	t->retry_initial_ms = 50;
	t->retry_max_ms = 5000;
	t->election_ms = 300;
	t->heartbeat_ms = 50;
	rc = config_get_object(root, "timeouts", CONFIG_OPTIONAL, keys, &o);
	if (rc < 0 || o.json == NULL)
		return rc;
	if ((rc = get_uint(&o, "prepare_ms", 1, MS_MAX, &t->prepare_ms)) < 0 ||
	    (rc = get_uint(&o, "statement_ms", 1, MS_MAX, &t->statement_ms)) <
		0 ||
	    (rc = get_uint(&o, "retry_initial_ms", 1, MS_MAX,
			   &t->retry_initial_ms)) < 0 ||
	    (rc = get_uint(&o, "retry_max_ms", 1, MS_MAX, &t->retry_max_ms)) <
		0 ||
	    (rc = get_uint(&o, "election_ms", 1, MS_MAX, &t->election_ms)) <
		0 ||
	    (rc = get_uint(&o, "heartbeat_ms", 1, MS_MAX, &t->heartbeat_ms)) <
		0)
		return rc;
	if (t->retry_initial_ms > t->retry_max_ms) {
		config_get(&o, "retry_initial_ms", CONFIG_OPTIONAL, &c);
		return config_fail(&c, "must not exceed retry_max_ms (%u)",
				   t->retry_max_ms);
	}
	if (t->heartbeat_ms >= t->election_ms) {
		config_get(&o, "heartbeat_ms", CONFIG_OPTIONAL, &c);
		return config_fail(&c, "must be less than election_ms (%u)",
				   t->election_ms);
	}
	return 0;
}

static int load_limits(const struct config_value *root, struct config_node *n)
{
	static const char *const keys[] = {"max_body_bytes",  "max_branches",
					   "max_concurrency", "max_rows",
					   "max_finished",    NULL};
	struct config_limits *l = &n->limits;
	struct config_value o;
	long long body = 1 << 20;
	int rc;

	l->max_body_bytes = 1u << 20;
	l->max_branches = 16;
	l->max_concurrency = 256;
	l->max_rows = 100;
	l->max_finished = 200000;
	rc = config_get_object(root, "limits", CONFIG_OPTIONAL, keys, &o);
	if (rc < 0 || o.json == NULL)
		return rc;
	if ((rc = config_get_int(&o, "max_body_bytes", CONFIG_OPTIONAL, 1024,
				 1LL << 30, &body)) < 0 ||
	    (rc = get_uint(&o, "max_branches", 1, 1024, &l->max_branches)) <
		0 ||
	    (rc = get_uint(&o, "max_concurrency", 1, 1000000,
			   &l->max_concurrency)) < 0 ||
	    (rc = get_uint(&o, "max_rows", 1, 1000000, &l->max_rows)) < 0 ||
	    (rc = get_uint(&o, "max_finished", 1000, 100000000,
			   &l->max_finished)) < 0)
		return rc;
	l->max_body_bytes = (size_t)body;
	return 0;
}

/* Same rule as crashpoint_arm(): "name" or "name:N", name in [a-z0-9._-]. */
static bool crash_point_ok(const char *s)
{
	const char *colon = strchr(s, ':');
	size_t len = colon ? (size_t)(colon - s) : strlen(s);
	char name[128];

	if (len == 0 || len >= sizeof(name))
		return false;
	memcpy(name, s, len);
	name[len] = '\0';
	if (!chars_ok(name, 1, sizeof(name) - 1, false, "._-"))
		return false;
	if (colon == NULL)
		return true;
	if (colon[1] == '\0' || strlen(colon + 1) > 9 || colon[1] == '0')
		return false;
	for (const char *p = colon + 1; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	return true;
}

static int load_node(const struct config_value *root, struct config_node *n)
{
	static const char *const keys[] = {
	    "node_id",	 "cluster_id", "listen",      "data_dir",
	    "members",	 "resources",  "timeouts",    "limits",
	    "sync_mode", "log_level",  "crash_point", NULL};
	struct config_value c;
	int sync = CONFIG_SYNC_FDATASYNC;
	int level = LOG_INFO;
	int rc;

	if ((rc = config_value_object(root, keys)) < 0 ||
	    (rc = get_name(root, "node_id", CONFIG_REQUIRED, 64, true, "._-",
			   "1 to 64 characters from [A-Za-z0-9._-]",
			   &n->node_id)) < 0 ||
	    (rc = get_name(root, "cluster_id", CONFIG_REQUIRED, 16, false, "",
			   "1 to 16 characters from [a-z0-9]",
			   &n->cluster_id)) < 0 ||
	    (rc = load_listen(root, n)) < 0 ||
	    (rc = get_nonempty(root, "data_dir", CONFIG_REQUIRED,
			       &n->data_dir)) < 0 ||
	    (rc = load_members(root, n)) < 0 ||
	    (rc = load_resources(root, n)) < 0 ||
	    (rc = load_timeouts(root, n)) < 0 ||
	    (rc = load_limits(root, n)) < 0 ||
	    (rc = config_get_enum(root, "sync_mode", CONFIG_OPTIONAL,
				  config_sync_names, &sync)) < 0 ||
	    (rc = config_get_enum(root, "log_level", CONFIG_OPTIONAL,
				  log_level_names, &level)) < 0 ||
	    (rc = config_get_string(root, "crash_point", CONFIG_OPTIONAL,
				    &n->crash_point)) < 0)
		return rc;
	n->sync_mode = (enum config_sync)sync;
	n->log_level = (enum log_level)level;
	if (n->crash_point != NULL && !crash_point_ok(n->crash_point)) {
		config_get(root, "crash_point", CONFIG_REQUIRED, &c);
		return config_fail(&c,
				   "expected \"name\" or \"name:N\" with name "
				   "in [a-z0-9._-] and N >= 1");
	}
	return 0;
}

/* Shared tail of the two loaders: owns root from here on. */
static int node_from_json(const struct config_ctx *ctx, json_t *root,
			  struct config_node **out)
{
	struct config_node *n;
	struct config_value v;
	int rc;

	n = mem_calloc(1, sizeof(*n));
	if (n == NULL) {
		json_decref(root);
		ctx_fail(ctx, NULL, "out of memory");
		return -ENOMEM;
	}
	n->json = root;
	n->file = mem_strdup(ctx_file(ctx));
	if (n->file == NULL) {
		rc = -ENOMEM;
		ctx_fail(ctx, NULL, "out of memory");
		goto err_free_node;
	}
	config_value_root(ctx, root, &v);
	rc = load_node(&v, n);
	if (rc < 0)
		goto err_free_node;
	*out = n;
	return 0;

err_free_node:
	config_node_free(n);
	return rc;
}

int config_node_load(const char *path, struct config_node **out, char *err,
		     size_t errlen)
{
	struct config_ctx ctx = {path, err, errlen};
	json_t *root;
	int rc;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (path == NULL || out == NULL)
		return ctx_fail(&ctx, NULL, "no config file given");
	rc = config_read_file(&ctx, &root);
	if (rc < 0)
		return rc;
	return node_from_json(&ctx, root, out);
}

int config_node_load_string(const char *text, const char *name,
			    struct config_node **out, char *err, size_t errlen)
{
	struct config_ctx ctx = {name, err, errlen};
	json_t *root;
	int rc;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (text == NULL || out == NULL)
		return ctx_fail(&ctx, NULL, "no config text given");
	rc = config_parse(&ctx, text, strlen(text), &root);
	if (rc < 0)
		return rc;
	return node_from_json(&ctx, root, out);
}

void config_node_free(struct config_node *node)
{
	if (node == NULL)
		return;
	mem_free(node->members);
	mem_free(node->resources);
	mem_free((char *)node->file);
	json_decref(node->json);
	mem_free(node);
}

const struct config_resource *
config_node_resource(const struct config_node *node, const char *name)
{
	for (size_t i = 0; i < node->nresources; i++)
		if (strcmp(node->resources[i].name, name) == 0)
			return &node->resources[i];
	return NULL;
}

/* ---- effective config ------------------------------------------------- */

/* obj[key] = v, taking v; false if v is NULL or the set fails. */
static bool put_new(json_t *obj, const char *key, json_t *v)
{
	return v != NULL && json_object_set_new(obj, key, v) == 0;
}

static json_t *resource_json(const struct config_resource *r)
{
	json_t *o = json_object();
	bool ok =
	    o != NULL && put_new(o, "name", json_string(r->name)) &&
	    put_new(o, "driver", json_string(config_driver_names[r->driver])) &&
	    put_new(o, "pool_size", json_integer(r->pool_size));

	if (ok && r->address != NULL)
		ok = put_new(o, "address", json_string(r->address));
	if (ok && r->conninfo != NULL) {
		/* "***" replaces a value of at least one byte after at
		 * least "password=": the text grows by under a half. */
		size_t len = 2 * strlen(r->conninfo) + 16;
		char *red = mem_alloc(len);

		ok = red != NULL &&
		     config_conninfo_redact(r->conninfo, red, len) == 0 &&
		     put_new(o, "conninfo", json_string(red));
		mem_free(red);
	}
	if (!ok) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int config_node_to_json(const struct config_node *n, json_t **out)
{
	const struct config_timeouts *t = &n->timeouts;
	const struct config_limits *l = &n->limits;
	json_t *o = json_object();
	json_t *listen = json_object();
	json_t *res = json_array();
	json_t *tim = json_object();
	json_t *lim = json_object();
	json_t *mem = NULL;
	bool ok = o != NULL && listen != NULL && res != NULL && tim != NULL &&
		  lim != NULL;

	ok = ok && put_new(o, "node_id", json_string(n->node_id)) &&
	     put_new(o, "cluster_id", json_string(n->cluster_id)) &&
	     put_new(o, "data_dir", json_string(n->data_dir)) &&
	     put_new(listen, "http", json_string(n->listen_http)) &&
	     (n->listen_peer == NULL ||
	      put_new(listen, "peer", json_string(n->listen_peer)));
	for (size_t i = 0; ok && i < n->nresources; i++)
		ok = json_array_append_new(
			 res, resource_json(&n->resources[i])) == 0;
	if (ok && n->nmembers > 0) {
		mem = json_array();
		ok = mem != NULL;
		for (size_t i = 0; ok && i < n->nmembers; i++) {
			json_t *m = json_object();

			ok =
			    m != NULL && json_array_append_new(mem, m) == 0 &&
			    put_new(m, "id", json_string(n->members[i].id)) &&
			    put_new(m, "peer",
				    json_string(n->members[i].peer)) &&
			    put_new(m, "http", json_string(n->members[i].http));
		}
	}
	ok =
	    ok && put_new(tim, "prepare_ms", json_integer(t->prepare_ms)) &&
	    put_new(tim, "statement_ms", json_integer(t->statement_ms)) &&
	    put_new(tim, "retry_initial_ms",
		    json_integer(t->retry_initial_ms)) &&
	    put_new(tim, "retry_max_ms", json_integer(t->retry_max_ms)) &&
	    put_new(tim, "election_ms", json_integer(t->election_ms)) &&
	    put_new(tim, "heartbeat_ms", json_integer(t->heartbeat_ms)) &&
	    put_new(lim, "max_body_bytes",
		    json_integer((json_int_t)l->max_body_bytes)) &&
	    put_new(lim, "max_branches", json_integer(l->max_branches)) &&
	    put_new(lim, "max_concurrency", json_integer(l->max_concurrency)) &&
	    put_new(lim, "max_rows", json_integer(l->max_rows)) &&
	    put_new(lim, "max_finished", json_integer(l->max_finished)) &&
	    put_new(o, "sync_mode",
		    json_string(config_sync_names[n->sync_mode])) &&
	    put_new(o, "log_level",
		    json_string(log_level_names[n->log_level])) &&
	    (n->crash_point == NULL ||
	     put_new(o, "crash_point", json_string(n->crash_point)));
	/* The containers go in last so each is freed exactly once below. */
	if (ok) {
		ok = put_new(o, "listen", listen);
		listen = NULL;
	}
	if (ok) {
		ok = put_new(o, "resources", res);
		res = NULL;
	}
	if (ok) {
		ok = put_new(o, "timeouts", tim);
		tim = NULL;
	}
	if (ok) {
		ok = put_new(o, "limits", lim);
		lim = NULL;
	}
	if (ok && mem != NULL) {
		ok = put_new(o, "members", mem);
		mem = NULL;
	}
	json_decref(listen);
	json_decref(res);
	json_decref(tim);
	json_decref(lim);
	json_decref(mem);
	if (!ok) {
		json_decref(o);
		return -ENOMEM;
	}
	*out = o;
	return 0;
}

/* ---- conninfo redaction ------------------------------------------------- */

struct out {
	char *p;
	size_t len;
	size_t cap; /* bytes usable before the NUL */
	bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (n > o->cap - o->len) {
		n = o->cap - o->len;
		o->full = true;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
	       c == '\v';
}

static bool is_secret_key(const char *k, size_t n)
{
	return (n == 8 && strncmp(k, "password", 8) == 0) ||
	       (n == 11 && strncmp(k, "sslpassword", 11) == 0);
}

/* postgresql://user:secret@host/db?password=x&sslpassword=y */
static void redact_uri(const char *s, struct out *o)
{
	const char *auth = strstr(s, "://") + 3;
	size_t alen = strcspn(auth, "/?");
	const char *at = NULL;
	const char *q;

	for (const char *p = auth; p < auth + alen; p++)
		if (*p == '@')
			at = p;
	put(o, s, (size_t)(auth - s));
	if (at != NULL) {
		const char *colon = memchr(auth, ':', (size_t)(at - auth));

		if (colon != NULL) {
			put(o, auth, (size_t)(colon - auth) + 1);
			put(o, "***", 3);
			put(o, at, (size_t)(auth + alen - at));
		} else {
			put(o, auth, alen);
		}
	} else {
		put(o, auth, alen);
	}
	s = auth + alen;
	q = strchr(s, '?');
	if (q == NULL) {
		put(o, s, strlen(s));
		return;
	}
	put(o, s, (size_t)(q - s) + 1);
	s = q + 1;
	while (*s != '\0') {
		size_t plen = strcspn(s, "&");
		const char *eq = memchr(s, '=', plen);

		if (eq != NULL && is_secret_key(s, (size_t)(eq - s))) {
			put(o, s, (size_t)(eq - s) + 1);
			put(o, "***", 3);
		} else {
			put(o, s, plen);
		}
		s += plen;
		if (*s == '&')
			put(o, s++, 1);
	}
}

/* keyword = value pairs; values bare or 'single quoted' with \ escapes. */
static void redact_kv(const char *s, struct out *o)
{
	while (*s != '\0') {
		const char *k, *v;
		size_t klen;
		bool secret;

		while (is_space(*s))
			put(o, s++, 1);
		if (*s == '\0')
			break;
		k = s;
		while (*s != '\0' && *s != '=' && !is_space(*s))
			s++;
		klen = (size_t)(s - k);
		secret = is_secret_key(k, klen);
		put(o, k, klen);
		while (is_space(*s))
			put(o, s++, 1);
		if (*s != '=')
			continue; /* malformed; libpq will say so */
		put(o, s++, 1);
		while (is_space(*s))
			put(o, s++, 1);
		v = s;
		if (*s == '\'') {
			for (s++; *s != '\0' && *s != '\''; s++)
				if (*s == '\\' && s[1] != '\0')
					s++;
			if (*s == '\'')
				s++;
		} else {
			for (; *s != '\0' && !is_space(*s); s++)
				if (*s == '\\' && s[1] != '\0')
					s++;
		}
		if (secret)
			put(o, "***", 3);
		else
			put(o, v, (size_t)(s - v));
	}
}

int config_conninfo_redact(const char *conninfo, char *out, size_t outlen)
{
	struct out o;

	if (out == NULL || outlen == 0)
		return -EINVAL;
	o.p = out;
	o.len = 0;
	o.cap = outlen - 1;
	o.full = false;
	out[0] = '\0';
	if (conninfo == NULL)
		return 0;
	if (strncmp(conninfo, "postgresql://", 13) == 0 ||
	    strncmp(conninfo, "postgres://", 11) == 0)
		redact_uri(conninfo, &o);
	else
		redact_kv(conninfo, &o);
	return o.full ? -ENOSPC : 0;
}
