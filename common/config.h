/*
 * config.h - decree's JSON configuration: checked access to any JSON config
 * with errors that name the file and the key path, and the node config
 * (docs/config.md) built on it.  (Part of common/; include common/common.h.)
 *
 * Every error message has the form
 *
 *   config /etc/decree/c1.json: key "resources[1].driver": expected a
 *   string, got an integer
 *   config /etc/decree/c1.json: line 4, column 3: invalid JSON: ...
 *
 * and goes into the caller's buffer (err, errlen); the return value is a
 * negative errno: -EINVAL for anything wrong in the text, -ENOENT, -EACCES,
 * ... when the file cannot be read, -EFBIG for a file over
 * CONFIG_FILE_MAX, -ENOMEM.  On error nothing is handed out.
 *
 * Ownership: struct config_node and everything it points to belong to the
 * node, freed by config_node_free().  In the generic layer, a struct
 * config_value borrows its json_t from the document the caller holds, and
 * strings from config_get_string() live as long as that document.
 */
#ifndef DECREE_COMMON_CONFIG_H
#define DECREE_COMMON_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/log.h"

/* Codes config returns, with the message config_strerror() gives them. */
#define CONFIG_ERRORS(X)                                                       \
	X(EINVAL, "invalid configuration")                                     \
	X(EFBIG, "configuration file too large")                               \
	X(ENOSPC, "output buffer too small")                                   \
	X(ENOMEM, "out of memory")

/* Text for a negative code: the list above, then strerror(-err). */
const char *config_strerror(int err);

#define CONFIG_FILE_MAX (1u << 20) /* largest config file read */
#define CONFIG_PATH_MAX 200	   /* longest key path kept in messages */
#define CONFIG_ERR_MAX	512	   /* a buffer this big holds any message */

/* ---- generic checked access -------------------------------------------- */

/* Where errors go: the file name used in messages and the caller's buffer. */
struct config_ctx {
	const char *file;
	char *err;
	size_t errlen;
};

/* One JSON value and the key path that led to it ("" for the root). */
struct config_value {
	const struct config_ctx *ctx;
	json_t *json; /* borrowed; NULL for an absent optional key */
	char path[CONFIG_PATH_MAX];
};

/* Flags for the getters. */
#define CONFIG_OPTIONAL 0
#define CONFIG_REQUIRED 1

/*
 * Parses text (len bytes) as one JSON value, refusing duplicate keys, and
 * returns it in *root (the caller json_decref()s it).  A syntax error
 * gives "line L, column C: invalid JSON: <what>".
 */
int config_parse(const struct config_ctx *ctx, const char *text, size_t len,
		 json_t **root);
/* Reads ctx->file (at most CONFIG_FILE_MAX bytes) and parses it. */
int config_read_file(const struct config_ctx *ctx, json_t **root);

/* Makes *out the root value of a document. */
void config_value_root(const struct config_ctx *ctx, json_t *root,
		       struct config_value *out);

/*
 * Writes "config FILE: key "PATH": <fmt...>" (or "config FILE: <fmt...>"
 * for the root) into the error buffer and returns -EINVAL.
 */
int config_fail(const struct config_value *v, const char *fmt, ...)
    LOG_PRINTF(2, 3);

/*
 * Checks that v is an object whose keys are all in allowed (a
 * NULL-terminated list): "unknown key (allowed: a, b, c)" otherwise.
 */
int config_value_object(const struct config_value *v,
			const char *const *allowed);

/* True if object v has key (v must be an object). */
bool config_has(const struct config_value *v, const char *key);

/*
 * The member key of object v in *child (its path extended with key).
 * Absent: -EINVAL "required key is missing" with CONFIG_REQUIRED, else 0
 * with child->json == NULL.  A JSON null counts as present (and then fails
 * the type check of whoever reads it).
 */
int config_get(const struct config_value *v, const char *key, int flags,
	       struct config_value *child);

/*
 * Typed getters.  Each reads member key of object v; when the key is absent
 * and optional they return 0 and leave *out untouched, so the caller sets
 * the default first.
 */
int config_get_string(const struct config_value *v, const char *key, int flags,
		      const char **out);
/* An integer (not a real) within [min, max]. */
int config_get_int(const struct config_value *v, const char *key, int flags,
		   long long min, long long max, long long *out);
int config_get_bool(const struct config_value *v, const char *key, int flags,
		    bool *out);
/* A string that is one of names (NULL-terminated); *out gets its index. */
int config_get_enum(const struct config_value *v, const char *key, int flags,
		    const char *const *names, int *out);
/* An object whose keys are all in allowed; child->json NULL if absent. */
int config_get_object(const struct config_value *v, const char *key, int flags,
		      const char *const *allowed, struct config_value *child);
/* An array; *n gets its size (0 if absent). */
int config_get_array(const struct config_value *v, const char *key, int flags,
		     struct config_value *arr, size_t *n);
/* Element i of array arr, path "arr[i]".  -EINVAL if i is out of range. */
int config_array_elem(const struct config_value *arr, size_t i,
		      struct config_value *elem);

/* The value itself as a string / integer in [min, max]. */
int config_value_string(const struct config_value *v, const char **out);
int config_value_int(const struct config_value *v, long long min, long long max,
		     long long *out);

/* ---- the decree node config ------------------------------------------- */

enum config_driver {
	CONFIG_DRIVER_POSTGRES,
	CONFIG_DRIVER_AGENT,
	CONFIG_DRIVER_KV,
};

enum config_sync {
	CONFIG_SYNC_FDATASYNC, /* fdatasync() after each group (default) */
	CONFIG_SYNC_DSYNC,     /* files opened O_DSYNC */
	CONFIG_SYNC_NONE,      /* no syncing: unsafe, experiments only */
};

/* Names as they appear in the config, indexed by the enums above. */
extern const char *const config_driver_names[];
extern const char *const config_sync_names[];

struct config_member {
	const char *id;
	const char *peer; /* "host:port" of its Raft / peer listener */
	const char *http; /* "host:port" of its HTTP API */
};

struct config_resource {
	const char *name;
	enum config_driver driver;
	const char *conninfo; /* postgres only, else NULL; may hold a password:
				 log it only through config_conninfo_redact() */
	const char *address;  /* agent only, else NULL */
	unsigned pool_size;
};

struct config_timeouts {
	unsigned prepare_ms;
	unsigned statement_ms;
	unsigned retry_initial_ms;
	unsigned retry_max_ms;
	unsigned election_ms;
	unsigned heartbeat_ms;
};

struct config_limits {
	size_t max_body_bytes;
	unsigned max_branches;
	unsigned max_concurrency;
	unsigned max_rows;
	unsigned max_finished; /* finished txns kept in memory, at most */
};

/* A loaded node config.  Every string is owned by the node. */
struct config_node {
	const char *file; /* the name errors used */
	const char *node_id;
	const char *cluster_id;
	const char *listen_http;
	const char *listen_peer; /* NULL if not set */
	const char *data_dir;
	struct config_member *members; /* nmembers entries; NULL if none */
	size_t nmembers;
	struct config_resource *resources;
	size_t nresources;
	struct config_timeouts timeouts;
	struct config_limits limits;
	enum config_sync sync_mode;
	enum log_level log_level;
	const char *crash_point; /* NULL if not set */
	json_t *json;		 /* private: the document the strings live in */
};

/*
 * Loads and checks the node config at path.  0 and *out on success; on
 * failure a negative code and a message in err (which may be NULL if
 * errlen is 0), and *out is untouched.
 */
int config_node_load(const char *path, struct config_node **out, char *err,
		     size_t errlen);
/* The same from a string; name is used in messages ("<string>" if NULL). */
int config_node_load_string(const char *text, const char *name,
			    struct config_node **out, char *err, size_t errlen);
/* NULL is ignored. */
void config_node_free(struct config_node *node);

/* The resource called name, or NULL. */
const struct config_resource *
config_node_resource(const struct config_node *node, const char *name);

/*
 * The effective config (every default filled in) as a JSON object in the
 * file's own schema, with conninfo passwords redacted: for the start-up
 * log line and status pages.  Loading its dump gives the same node (bar
 * the redacted passwords).  The caller json_decref()s *out.  -ENOMEM.
 */
int config_node_to_json(const struct config_node *node, json_t **out);

/*
 * Copies a libpq conninfo (keyword=value form or a postgres:// URI) into
 * out with every password value replaced by "***" ("password", "sslpassword"
 * keywords, URI user:password@ and ?password=), for logs and messages.
 * -ENOSPC if it does not fit (out is then cut short, still redacted and
 * NUL-terminated); -EINVAL if out is NULL or outlen is 0.
 */
int config_conninfo_redact(const char *conninfo, char *out, size_t outlen);

#endif
