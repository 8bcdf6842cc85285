/*
 * coordinator.c - `decree coordinator --config FILE`: a single-node
 * coordinator serving the HTTP API (docs/api.md), recovering on start.
 *
 * Start-up order: load and check the config, arm a crash point if asked,
 * open the decision log and the resources, replay and recover (the engine
 * accepts no new transaction until its new epoch is durable), then listen.
 * SIGINT/SIGTERM stop it cleanly; an in-flight transaction is then left to
 * the next start's recovery, exactly as after a crash.
 */
#include "cmd/cmd.h"

#include "common/common.h"
#include "common/config.h"
#include "coordinator/coordinator.h"
#include "recovery/recovery.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

struct main_ctx {
	uv_loop_t *loop;
	struct coordinator_server *srv;
	struct recovery_coordinator *rec;
	uv_signal_t sigint, sigterm;
	bool stopping;
	int closes;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: decree coordinator --config FILE [--check]\n\n"
		"Runs a single-node coordinator: the HTTP API on the config's\n"
		"listen.http, the decision log in <data_dir>/decision-log, and\n"
		"the configured PostgreSQL resources.  Recovery runs on every\n"
		"start.\n\n"
		"  --config FILE   node config (docs/config.md)\n"
		"  --check         check the config, print the effective config\n"
		"                  (passwords redacted) and exit\n\n"
		"environment:\n"
		"  DECREE_CRASH_POINT=name[:N]  die at a named protocol step\n"
		"                  (docs/operations.md lists them); overrides the\n"
		"                  config's crash_point\n");
}

static void all_closed(void *data)
{
	struct main_ctx *m = data;

	if (--m->closes == 0)
		uv_stop(m->loop);
}

static void handle_closed(uv_handle_t *h)
{
	all_closed(h->data);
}

static void on_signal(uv_signal_t *sig, int signum)
{
	struct main_ctx *m = sig->data;

	if (m->stopping)
		return;
	m->stopping = true;
	log_info("coordinator", "stopping", "signal=%d", signum);
	m->closes = 4;
	uv_close((uv_handle_t *)&m->sigint, handle_closed);
	uv_close((uv_handle_t *)&m->sigterm, handle_closed);
	if (m->rec != NULL)
		recovery_coordinator_stop(m->rec, all_closed, m);
	else
		m->closes--;
	coordinator_server_close(m->srv, all_closed, m);
}

int cmd_coordinator(int argc, char **argv)
{
	const char *path = NULL;
	bool check = false;
	struct config_node *cfg = NULL;
	struct main_ctx m;
	char err[CONFIG_ERR_MAX];
	const char *cp;
	int rc, status = 1;

	if (cmd_wants_help(argc, argv)) {
		usage(stdout);
		return 0;
	}
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			path = argv[++i];
		} else if (strncmp(argv[i], "--config=", 9) == 0) {
			path = argv[i] + 9;
		} else if (strcmp(argv[i], "--check") == 0) {
			check = true;
		} else {
			fprintf(stderr, "decree coordinator: unknown argument "
					"'%s'\n\n",
				argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (path == NULL) {
		fprintf(stderr, "decree coordinator: --config FILE is required\n\n");
		usage(stderr);
		return 2;
	}
	rc = config_node_load(path, &cfg, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "decree coordinator: %s\n", err);
		return 2;
	}
	log_set_level(cfg->log_level);
	{
		json_t *eff = NULL;
		char *text = NULL;

		if (config_node_to_json(cfg, &eff) == 0)
			text = json_dumps(eff, JSON_COMPACT | JSON_SORT_KEYS);
		if (check) {
			printf("%s\n", text ? text : "{}");
		} else {
			log_info("coordinator", "config", "file=%s effective=%s",
				 log_q(path), text ? text : "{}");
		}
		free(text);
		json_decref(eff);
		if (check) {
			config_node_free(cfg);
			return 0;
		}
	}
	cp = getenv("DECREE_CRASH_POINT");
	if (crashpoint_arm(cp != NULL ? cp : cfg->crash_point) < 0) {
		fprintf(stderr, "decree coordinator: bad crash point '%s' "
				"(want name or name:N)\n",
			cp != NULL ? cp : cfg->crash_point);
		config_node_free(cfg);
		return 2;
	}
	if (crashpoint_armed() != NULL)
		log_warn("coordinator", "crash_point_armed", "name=%s",
			 log_q(crashpoint_armed()));
	signal(SIGPIPE, SIG_IGN);

	memset(&m, 0, sizeof(m));
	m.loop = uv_default_loop();
	uv_update_time(m.loop);
	rc = coordinator_server_new(m.loop, cfg, &m.srv, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "decree coordinator: %s\n", err);
		goto out_cfg;
	}
	rc = recovery_coordinator_start(m.srv, NULL, &m.rec, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "decree coordinator: %s\n", err);
		goto out_close;
	}
	rc = coordinator_server_listen(m.srv, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "decree coordinator: %s\n", err);
		goto out_close;
	}
	uv_signal_init(m.loop, &m.sigint);
	uv_signal_init(m.loop, &m.sigterm);
	m.sigint.data = m.sigterm.data = &m;
	uv_signal_start(&m.sigint, on_signal, SIGINT);
	uv_signal_start(&m.sigterm, on_signal, SIGTERM);
	printf("decree coordinator %s listening on %s port %d\n", cfg->node_id,
	       cfg->listen_http, coordinator_server_port(m.srv));
	fflush(stdout);
	uv_run(m.loop, UV_RUN_DEFAULT);
	status = 0;
	goto out_drain;
out_close:
	m.closes = 1;
	if (m.rec != NULL) {
		m.closes++;
		recovery_coordinator_stop(m.rec, all_closed, &m);
	}
	coordinator_server_close(m.srv, all_closed, &m);
	uv_run(m.loop, UV_RUN_DEFAULT);
out_drain:
	/* Let close callbacks of anything left finish. */
	uv_run(m.loop, UV_RUN_NOWAIT);
	recovery_coordinator_free(m.rec);
	coordinator_server_free(m.srv);
	uv_loop_close(m.loop);
out_cfg:
	config_node_free(cfg);
	return status;
}
