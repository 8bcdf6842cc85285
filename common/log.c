/*
 * log.c - one line per event, key=value fields, to stderr (or a test sink).
 *
 * A line is built in a local buffer and written with one fwrite so that lines
 * from the WAL writer thread and the loop thread never interleave mid-line.
 */
#include "common/common.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

static enum log_level threshold = LOG_INFO;
static FILE *sink;

static const char *const level_names[] = {"debug", "info", "warn", "error",
					   "off"};

void log_set_level(enum log_level level)
{
	threshold = level;
}

enum log_level log_get_level(void)
{
	return threshold;
}

int log_level_parse(const char *name, enum log_level *out)
{
	for (int i = LOG_DEBUG; i <= LOG_OFF; i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

void log_set_output(FILE *out)
{
	sink = out;
}

void log_emit(enum log_level level, const char *comp, const char *event,
	      const char *fields, ...)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int w;

	if (level < threshold || level >= LOG_OFF)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
	w = snprintf(line + n, sizeof(line) - n,
		     ".%03ldZ level=%s comp=%s event=%s", ts.tv_nsec / 1000000L,
		     level_names[level], comp, event);
	n += (size_t)(w > 0 ? w : 0);
	if (fields != NULL && fields[0] != '\0' && n + 2 < sizeof(line)) {
		va_list ap;

		line[n++] = ' ';
		va_start(ap, fields);
		w = vsnprintf(line + n, sizeof(line) - n, fields, ap);
		va_end(ap);
		n += (size_t)(w > 0 ? w : 0);
	}
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	fwrite(line, 1, n, sink ? sink : stderr);
}

static bool needs_quotes(const char *s)
{
	if (*s == '\0')
		return true;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f)
			return true;
	}
	return false;
}

const char *log_q(const char *s)
{
	static _Thread_local char ring[8][256];
	static _Thread_local unsigned next;
	char *out;
	size_t n = 0;
	const size_t cap = 200;

	if (s == NULL)
		return "(null)";
	if (!needs_quotes(s))
		return s;
	out = ring[next++ % 8];
	out[n++] = '"';
	for (; *s && n < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			out[n++] = '\\';
			out[n++] = (char)c;
		} else if (c < ' ' || c == 0x7f) {
			n += (size_t)snprintf(out + n, 8, "\\x%02x", c);
		} else {
			out[n++] = (char)c;
		}
	}
	if (*s) {
		memcpy(out + n, "...", 3);
		n += 3;
	}
	out[n++] = '"';
	out[n] = '\0';
	return out;
}
