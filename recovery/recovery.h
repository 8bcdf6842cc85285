/*
 * recovery.h - the public header of recovery/: bringing a coordinator back
 * after a crash, and keeping PostgreSQL free of orphaned prepared
 * transactions while it runs.
 *
 * Coordinator recovery (DESIGN.md sections 5 and 9), on every start:
 *  1. replay the decision log;
 *  2. force the next epoch and re-drive COMMIT PREPARED for every commit
 *     decision without an end record (the engine does both);
 *  3. on every configured resource, list the prepared gids with this
 *     cluster's prefix and resolve those of older epochs: commit the ones
 *     with a commit decision, roll back the rest.  An unreachable resource
 *     is retried with backoff until it answers;
 *  4. then, every reconcile interval, list again and roll back any
 *     prepared gid that belongs to no live transaction and has no commit
 *     decision: a PREPARE whose answer was lost may land after its
 *     transaction aborted.
 * Live transactions (the current epoch, in the table) are never touched.
 *
 * Ownership: the recovery object borrows the server, which must outlive it;
 * recovery_coordinator_stop()'s callback says when its handles are closed,
 * after which recovery_coordinator_free() releases it.
 */
#ifndef DECREE_RECOVERY_H
#define DECREE_RECOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct coordinator_server;
struct recovery_coordinator;

struct recovery_options {
	uint64_t reconcile_every_ms; /* 0: 10000 */
	uint64_t retry_initial_ms;   /* unreachable resource; 0: 100 */
	uint64_t retry_max_ms;	     /* 0: 5000 */
};

struct recovery_stats {
	uint64_t last_epoch;	/* found in the log (0: fresh) */
	uint64_t redriven;	/* decisions re-driven from the log */
	uint64_t committed;	/* prepared gids sent COMMIT PREPARED */
	uint64_t rolled_back;	/* ... ROLLBACK PREPARED (resolve + reconcile) */
	size_t resources_pending; /* not yet listed once */
	uint64_t reconcile_passes;
};

/* Replays the log and starts resolving.  On error nothing was started and
 * err says why.  opts may be NULL. */
int recovery_coordinator_start(struct coordinator_server *srv,
			       const struct recovery_options *opts,
			       struct recovery_coordinator **out, char *err,
			       size_t errlen);
void recovery_coordinator_stats(const struct recovery_coordinator *rc,
				struct recovery_stats *out);
/* True once every resource was listed and resolved once. */
bool recovery_coordinator_is_done(const struct recovery_coordinator *rc);
void recovery_coordinator_stop(struct recovery_coordinator *rc,
			       void (*cb)(void *data), void *data);
void recovery_coordinator_free(struct recovery_coordinator *rc);

#endif
