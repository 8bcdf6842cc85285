/*
 * crashpoint.c - die at a named protocol step, for drills.
 *
 * This is the one place in decree's libraries that ends the process, and only
 * because an operator or a test asked for it: crash points simulate power
 * loss, so they use _exit() (no atexit handlers, no stdio flush, no cleanup),
 * which is the closest a process can come to kill -9 on itself.
 */
#include "common/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char armed[128];
static long remaining;

int crashpoint_arm(const char *spec)
{
	const char *colon;
	size_t len;
	long n = 1;

	armed[0] = '\0';
	if (spec == NULL || spec[0] == '\0')
		return 0;
	colon = strchr(spec, ':');
	len = colon ? (size_t)(colon - spec) : strlen(spec);
	if (len == 0 || len >= sizeof(armed))
		return -EINVAL;
	if (colon != NULL) {
		char *end;

		errno = 0;
		n = strtol(colon + 1, &end, 10);
		if (errno != 0 || *end != '\0' || end == colon + 1 || n < 1)
			return -EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		char c = spec[i];

		if (!(c == '.' || c == '_' || c == '-' || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9')))
			return -EINVAL;
	}
	memcpy(armed, spec, len);
	armed[len] = '\0';
	remaining = n;
	return 0;
}

int crashpoint_arm_from_env(void)
{
	return crashpoint_arm(getenv("DECREE_CRASH_POINT"));
}

const char *crashpoint_armed(void)
{
	return armed[0] ? armed : NULL;
}

void crashpoint_hit(const char *name)
{
	static const char prefix[] = "crash point ";
	static const char suffix[] = " hit\n";

	if (armed[0] == '\0' || strcmp(name, armed) != 0)
		return;
	if (--remaining > 0)
		return;
	/* write(2) directly: stdio buffers would be lost by _exit anyway. */
	if (write(2, prefix, sizeof(prefix) - 1) < 0 ||
	    write(2, name, strlen(name)) < 0 ||
	    write(2, suffix, sizeof(suffix) - 1) < 0) {
		/* Nothing to do: we are about to die either way. */
	}
	_exit(CRASHPOINT_EXIT);
}
