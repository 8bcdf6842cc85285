/*
 * log.h - structured logging: one line per event on stderr, key=value fields.
 *
 *   ts=2026-11-22T04:40:00.123Z level=info comp=wal event=open dir=/var/x
 *
 * Callers format their fields with printf syntax; a value that may hold
 * spaces, quotes or control characters goes through log_q(), which returns it
 * double-quoted and escaped.  (Part of common/; include common/common.h.)
 */
#ifndef DECREE_COMMON_LOG_H
#define DECREE_COMMON_LOG_H

#include <stdbool.h>
#include <stdio.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "debug", "info", "warn", "error" or "off"; -EINVAL otherwise. */
int log_level_parse(const char *name, enum log_level *out);
/* Where lines go; NULL restores stderr.  The caller keeps ownership. */
void log_set_output(FILE *out);

#if defined(__GNUC__)
#define LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LOG_PRINTF(a, b)
#endif

/* Emits one line if level passes the threshold.  fields may be NULL. */
void log_emit(enum log_level level, const char *comp, const char *event,
	      const char *fields, ...) LOG_PRINTF(4, 5);

#define log_debug(comp, event, ...) log_emit(LOG_DEBUG, comp, event, __VA_ARGS__)
#define log_info(comp, event, ...)  log_emit(LOG_INFO, comp, event, __VA_ARGS__)
#define log_warn(comp, event, ...)  log_emit(LOG_WARN, comp, event, __VA_ARGS__)
#define log_error(comp, event, ...) log_emit(LOG_ERROR, comp, event, __VA_ARGS__)

/*
 * Returns s quoted for a log field if it needs quoting ("a b" -> "\"a b\""),
 * else s itself.  The result lives in a small ring of static buffers, valid
 * for the next 7 calls: use it within one log_emit() call.  Long values are
 * cut at 200 bytes with a trailing "...".
 */
const char *log_q(const char *s);

#endif
