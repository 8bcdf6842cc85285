/*
 * server.h - private to coordinator/: what api.c needs of the runtime in
 * server.c beyond the public coordinator_server_* functions.
 */
#ifndef DECREE_COORDINATOR_SERVER_H
#define DECREE_COORDINATOR_SERVER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct coordinator_server;
struct coordinator_reply;
struct http_request;
struct jsonw;
struct metrics_registry;

bool coordinator_server_has_resource(struct coordinator_server *s,
				     const char *name);
struct metrics_registry *
coordinator_server_metrics(struct coordinator_server *s);
size_t coordinator_server_clients(const struct coordinator_server *s);
void coordinator_server_client_waiting(struct coordinator_server *s);
void coordinator_server_client_answered(struct coordinator_server *s);
/* Writes the JSON a client sees for r (docs/api.md) into w. */
void coordinator_server_reply_write(struct coordinator_server *s,
				    const struct coordinator_reply *r,
				    struct jsonw *w);
void coordinator_server_http_handler(struct http_request *req, void *data);

#endif
