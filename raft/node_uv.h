/*
 * node_uv.h - the Raft runtime of raft/: one struct raft driven on a libuv
 * loop, with its log on raft/storage.c and its peers on raft/transport.c.
 * (Part of raft/; declared apart from raft/raft.h because raft.h is the
 * pure core's contract and does not pull libuv or wal/ in.)
 *
 * The runtime owns the ready cycle: a tick timer feeds raft_tick(); each
 * loop iteration that changed the node ends with one ready batch, whose
 * entries and hard state are saved through the storage, and only once they
 * are durable are its messages sent, its committed entries applied and
 * raft_advance() called.  A batch with nothing to make durable (messages,
 * committed entries, a hard state whose term and vote are unchanged: the
 * commit index need not be durable) skips the save.  A leader sends its
 * appends while its own save runs (parallel_append; the core counts the
 * leader's entries only once they are durable, at raft_advance()).  Messages, proposals and ticks that arrive while
 * a batch is being saved wait in the runtime and enter the next batch
 * (group commit).
 *
 * Proposals: raft_node_propose() takes data (copied) and a callback that
 * fires exactly once: status 0 with the entry's index once the entry is
 * committed and applied on this node; -RAFT_ENOTLEADER at once when this
 * node is not the leader (raft_node_leader() names the one to redirect
 * to), or later when it lost leadership before the entry was applied here
 * (the outcome is then unknown to the caller); -RAFT_EUNAVAILABLE when
 * the node stops (or its storage fails) first.
 *
 * The application state machine of this runtime is a counter of applied
 * entries and bytes; raft_node_set_apply() lets a caller see every
 * committed entry as well.
 */
#ifndef DECREE_RAFT_NODE_UV_H
#define DECREE_RAFT_NODE_UV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "raft/raft.h"
#include "wal/wal.h"

#define RAFT_NODE_MAX_PEERS (RAFT_MAX_MEMBERS - 1)
#define RAFT_NODE_ADDR_MAX  64

struct raft_node_peer {
	uint64_t id;
	char addr[RAFT_NODE_ADDR_MAX]; /* raft transport "host:port" */
};

struct raft_node_config {
	uint64_t id;		       /* this node, nonzero */
	const char *listen;	       /* raft transport "host:port" */
	struct raft_node_peer peers[RAFT_NODE_MAX_PEERS];
	unsigned n_peers;	       /* the other first voters */
	const char *data_dir;	       /* log and snapshots; created if needed */
	enum wal_sync_mode sync_mode;  /* WAL_SYNC_FDATASYNC by default */
	unsigned tick_ms;	       /* 0: 15 */
	unsigned election_tick;	       /* 0: 10 (timeouts of 10..19 ticks) */
	unsigned heartbeat_tick;       /* 0: 3 */
	uint64_t seed;		       /* 0: from the clock and the pid */
	uint64_t compact_every;	       /* applied entries between snapshots;
					  0: 10000 */
	bool parallel_append;	       /* leader sends appends while its own
					  save runs (see node_uv.c); default
					  true */
};

/* Fills cfg with defaults (zero, fdatasync, parallel_append). */
void raft_node_config_init(struct raft_node_config *cfg);

struct raft_node;

typedef void (*raft_node_propose_cb)(struct raft_node *n, int status,
				     uint64_t index, void *data);
typedef void (*raft_node_apply_cb)(struct raft_node *n,
				   const struct raft_entry *e, void *data);

/*
 * Opens the storage in cfg->data_dir (recovering what was persisted, or
 * booting a new cluster of cfg->id and the peers), starts the transport on
 * cfg->listen and the tick timer.  Returns 0 and sets *out, or a negative
 * code (raft, raft storage, or socket errno) with a message in err.
 */
int raft_node_start(uv_loop_t *loop, const struct raft_node_config *cfg,
		    struct raft_node **out, char *err, size_t errlen);

/* See the header comment.  Returns 0 (cb will fire) or a negative code
 * (cb never fires): -RAFT_ENOMEM, -RAFT_EINVAL, -RAFT_EUNAVAILABLE
 * (stopping or failed). */
int raft_node_propose(struct raft_node *n, const void *data, size_t len,
		      raft_node_propose_cb cb, void *cb_data);

/* Sees every applied normal entry (may be NULL). */
void raft_node_set_apply(struct raft_node *n, raft_node_apply_cb cb,
			 void *data);

/* Inspection. */
uint64_t raft_node_id(const struct raft_node *n);
uint64_t raft_node_leader(const struct raft_node *n); /* 0: unknown */
/* Raft address of a member from the configuration given at start, or NULL. */
const char *raft_node_peer_addr(const struct raft_node *n, uint64_t id);
const struct raft *raft_node_raft(const struct raft_node *n);
/* 0, or the storage error that stopped the node (it then does nothing). */
int raft_node_failed(const struct raft_node *n);
uint64_t raft_node_batches(const struct raft_node *n); /* ready batches */
uint64_t raft_node_saves(const struct raft_node *n);   /* of them saved */
/* Peers with an established outgoing connection. */
unsigned raft_node_peers_connected(const struct raft_node *n);

/*
 * Stops: fails waiting proposals with -RAFT_EUNAVAILABLE, stops the
 * transport, the timer and the storage (after a save in progress ends),
 * then calls cb(data) (may be NULL) and frees n.
 */
void raft_node_stop(struct raft_node *n, void (*cb)(void *data), void *data);

#endif
