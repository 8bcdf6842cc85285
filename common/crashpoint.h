/*
 * crashpoint.h - named places in the protocol where a process may be told to
 * die at once, for recovery drills and crash tests.
 *
 * A process armed with a crash point (from the DECREE_CRASH_POINT environment
 * variable or the config's "crash_point") exits with _exit(CRASHPOINT_EXIT)
 * the first time code passes crashpoint_hit() with that name, and writes one
 * line "crash point <name> hit" to stderr first so drills can tell a planned
 * death from a bug.  "name:N" dies on the N-th pass instead of the first.
 * (Part of common/; include common/common.h.)
 */
#ifndef DECREE_COMMON_CRASHPOINT_H
#define DECREE_COMMON_CRASHPOINT_H

#include <stdbool.h>

#define CRASHPOINT_EXIT 86

/* Arms spec ("name" or "name:N"); NULL or "" disarms.  -EINVAL on a bad spec. */
int crashpoint_arm(const char *spec);
/* Arms from DECREE_CRASH_POINT if set; returns what crashpoint_arm did. */
int crashpoint_arm_from_env(void);
/* The armed name, or NULL. */
const char *crashpoint_armed(void);
/* Dies here if name is armed (and its count is reached). */
void crashpoint_hit(const char *name);

#endif
