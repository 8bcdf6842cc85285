/*
 * test_common_config.c - the node config: a full file, defaults, every kind
 * of bad config with its exact message, allocation failures, and conninfo
 * redaction.
 */
#include "common/common.h"

#include <check.h>
#include "tests/lib/suite.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * Test configs are written with ' for " to keep them readable; this turns
 * them into JSON.  The result lives in a static buffer.
 */
static const char *js(const char *text)
{
	static char buf[4096];
	size_t i = 0;

	for (; text[i] != '\0' && i + 1 < sizeof(buf); i++)
		buf[i] = text[i] == '\'' ? '"' : text[i];
	buf[i] = '\0';
	return buf;
}

/* Loads text (after js()) under the name t.json; expects exactly msg. */
static void expect_error(const char *text, const char *msg)
{
	struct config_node *n = NULL;
	char err[CONFIG_ERR_MAX];
	int rc;

	rc = config_node_load_string(js(text), "t.json", &n, err, sizeof(err));
	ck_assert_msg(rc == -EINVAL, "rc %d for %s", rc, text);
	ck_assert_ptr_null(n);
	ck_assert_str_eq(err, msg);
}

#define MIN_RES	 "'resources':[{'name':'a','driver':'kv'}]"
#define MIN_HEAD "'node_id':'c1','cluster_id':'bank','data_dir':'/d'"

static const char full_config[] =
    "{\n"
    "  'node_id': 'c1',\n"
    "  'cluster_id': 'bank01',\n"
    "  'listen': {'http': '127.0.0.1:7400', 'peer': '127.0.0.1:7401'},\n"
    "  'data_dir': '/var/lib/decree/c1',\n"
    "  'members': [\n"
    "    {'id': 'c1', 'peer': '127.0.0.1:7401', 'http': '127.0.0.1:7400'},\n"
    "    {'id': 'c2', 'peer': '127.0.0.1:7411', 'http': '127.0.0.1:7410'},\n"
    "    {'id': 'c3', 'peer': '[::1]:7421', 'http': '[::1]:7420'}\n"
    "  ],\n"
    "  'resources': [\n"
    "    {'name': 'bank_a', 'driver': 'postgres',\n"
    "     'conninfo': 'host=/tmp/pg1 port=5432 dbname=bank', "
    "'pool_size': 4},\n"
    "    {'name': 'bank-b', 'driver': 'agent', 'address': "
    "'127.0.0.1:7500'},\n"
    "    {'name': 'ledger', 'driver': 'kv'}\n"
    "  ],\n"
    "  'timeouts': {'prepare_ms': 2000, 'statement_ms': 3000,\n"
    "               'retry_initial_ms': 10, 'retry_max_ms': 1000,\n"
    "               'election_ms': 500, 'heartbeat_ms': 100},\n"
    "  'limits': {'max_body_bytes': 65536, 'max_branches': 8,\n"
    "             'max_concurrency': 64, 'max_rows': 10,\n"
    "             'max_finished': 5000},\n"
    "  'sync_mode': 'dsync',\n"
    "  'log_level': 'debug',\n"
    "  'crash_point': 'coordinator.after_decision_forced:2'\n"
    "}\n";

START_TEST(full_config_loads_every_field)
{
	struct config_node *n = NULL;
	char err[CONFIG_ERR_MAX];
	const struct config_resource *r;

	ck_assert_int_eq(config_node_load_string(js(full_config), "full.json",
						 &n, err, sizeof(err)),
			 0);
	ck_assert_str_eq(err, "");
	ck_assert_str_eq(n->file, "full.json");
	ck_assert_str_eq(n->node_id, "c1");
	ck_assert_str_eq(n->cluster_id, "bank01");
	ck_assert_str_eq(n->listen_http, "127.0.0.1:7400");
	ck_assert_str_eq(n->listen_peer, "127.0.0.1:7401");
	ck_assert_str_eq(n->data_dir, "/var/lib/decree/c1");
	ck_assert_uint_eq(n->nmembers, 3);
	ck_assert_str_eq(n->members[2].id, "c3");
	ck_assert_str_eq(n->members[2].peer, "[::1]:7421");
	ck_assert_str_eq(n->members[1].http, "127.0.0.1:7410");
	ck_assert_uint_eq(n->nresources, 3);
	ck_assert_int_eq(n->resources[0].driver, CONFIG_DRIVER_POSTGRES);
	ck_assert_str_eq(n->resources[0].conninfo,
			 "host=/tmp/pg1 port=5432 dbname=bank");
	ck_assert_uint_eq(n->resources[0].pool_size, 4);
	ck_assert_ptr_null(n->resources[0].address);
	r = config_node_resource(n, "bank-b");
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(r->driver, CONFIG_DRIVER_AGENT);
	ck_assert_str_eq(r->address, "127.0.0.1:7500");
	ck_assert_uint_eq(r->pool_size, 8);
	ck_assert_int_eq(n->resources[2].driver, CONFIG_DRIVER_KV);
	ck_assert_ptr_null(config_node_resource(n, "nope"));
	ck_assert_uint_eq(n->timeouts.prepare_ms, 2000);
	ck_assert_uint_eq(n->timeouts.statement_ms, 3000);
	ck_assert_uint_eq(n->timeouts.retry_initial_ms, 10);
	ck_assert_uint_eq(n->timeouts.retry_max_ms, 1000);
	ck_assert_uint_eq(n->timeouts.election_ms, 500);
	ck_assert_uint_eq(n->timeouts.heartbeat_ms, 100);
	ck_assert_uint_eq(n->limits.max_body_bytes, 65536);
	ck_assert_uint_eq(n->limits.max_branches, 8);
	ck_assert_uint_eq(n->limits.max_concurrency, 64);
	ck_assert_uint_eq(n->limits.max_rows, 10);
	ck_assert_uint_eq(n->limits.max_finished, 5000);
	ck_assert_int_eq(n->sync_mode, CONFIG_SYNC_DSYNC);
	ck_assert_int_eq(n->log_level, LOG_DEBUG);
	ck_assert_str_eq(n->crash_point, "coordinator.after_decision_forced:2");
	config_node_free(n);
}
END_TEST

START_TEST(minimal_config_gets_documented_defaults)
{
	struct config_node *n = NULL;
	char err[CONFIG_ERR_MAX];

	ck_assert_int_eq(
	    config_node_load_string(js("{" MIN_HEAD "," MIN_RES "}"), NULL, &n,
				    err, sizeof(err)),
	    0);
	ck_assert_str_eq(n->file, "<string>");
	ck_assert_str_eq(n->listen_http, "127.0.0.1:7400");
	ck_assert_ptr_null(n->listen_peer);
	ck_assert_uint_eq(n->nmembers, 0);
	ck_assert_ptr_null(n->members);
	ck_assert_uint_eq(n->resources[0].pool_size, 8);
	ck_assert_ptr_null(n->resources[0].conninfo);
	ck_assert_uint_eq(n->timeouts.prepare_ms, 5000);
	ck_assert_uint_eq(n->timeouts.statement_ms, 10000);
	ck_assert_uint_eq(n->timeouts.retry_initial_ms, 50);
	ck_assert_uint_eq(n->timeouts.retry_max_ms, 5000);
	ck_assert_uint_eq(n->timeouts.election_ms, 300);
	ck_assert_uint_eq(n->timeouts.heartbeat_ms, 50);
	ck_assert_uint_eq(n->limits.max_body_bytes, 1 << 20);
	ck_assert_uint_eq(n->limits.max_branches, 16);
	ck_assert_uint_eq(n->limits.max_concurrency, 256);
	ck_assert_uint_eq(n->limits.max_rows, 100);
	ck_assert_uint_eq(n->limits.max_finished, 200000);
	ck_assert_int_eq(n->sync_mode, CONFIG_SYNC_FDATASYNC);
	ck_assert_int_eq(n->log_level, LOG_INFO);
	ck_assert_ptr_null(n->crash_point);
	config_node_free(n);
	config_node_free(NULL);
}
END_TEST

START_TEST(file_is_read_and_missing_file_is_named)
{
	char path[] = "/tmp/decree-config-XXXXXX";
	struct config_node *n = NULL;
	char err[CONFIG_ERR_MAX];
	char want[CONFIG_ERR_MAX + 64];
	const char *text = js("{" MIN_HEAD "," MIN_RES "}");
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	ck_assert_int_eq(config_node_load(path, &n, err, sizeof(err)), 0);
	ck_assert_str_eq(n->file, path);
	ck_assert_str_eq(n->cluster_id, "bank");
	config_node_free(n);
	n = NULL;
	unlink(path);
	ck_assert_int_eq(config_node_load(path, &n, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_null(n);
	snprintf(want, sizeof(want),
		 "config %s: cannot open: No such file or directory", path);
	ck_assert_str_eq(err, want);
	ck_assert_int_eq(config_node_load("/tmp", &n, err, sizeof(err)),
			 -EISDIR);
	ck_assert_str_eq(err, "config /tmp: cannot read: Is a directory");
	ck_assert_ptr_null(n);
}
END_TEST

START_TEST(oversized_file_is_refused)
{
	char path[] = "/tmp/decree-config-XXXXXX";
	struct config_node *n = NULL;
	char err[CONFIG_ERR_MAX];
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, CONFIG_FILE_MAX + 1), 0);
	close(fd);
	ck_assert_int_eq(config_node_load(path, &n, err, sizeof(err)), -EFBIG);
	unlink(path);
	ck_assert_ptr_nonnull(strstr(err, ": file larger than 1048576 bytes"));
	ck_assert_str_eq(config_strerror(-EFBIG),
			 "configuration file too large");
}
END_TEST

START_TEST(malformed_json_names_the_line)
{
	struct config_node *n = NULL;
	char err[CONFIG_ERR_MAX];
	const char *text =
	    "{\n  \"node_id\": \"c1\",\n  \"cluster_id\" \"x\"\n}";

	ck_assert_int_eq(
	    config_node_load_string(text, "t.json", &n, err, sizeof(err)),
	    -EINVAL);
	ck_assert_ptr_null(n);
	ck_assert_msg(strncmp(err, "config t.json: line 3, column ", 30) == 0,
		      "%s", err);
	ck_assert_ptr_nonnull(strstr(err, ": invalid JSON: "));

	ck_assert_int_eq(
	    config_node_load_string("", "t.json", &n, err, sizeof(err)),
	    -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "invalid JSON"));
	ck_assert_int_eq(
	    config_node_load_string("{} junk", "t.json", &n, err, sizeof(err)),
	    -EINVAL);
	ck_assert_msg(strncmp(err, "config t.json: line 1, column ", 30) == 0,
		      "%s", err);
}
END_TEST

START_TEST(duplicate_json_key_is_refused)
{
	struct config_node *n = NULL;
	char err[CONFIG_ERR_MAX];

	ck_assert_int_eq(config_node_load_string(
			     js("{" MIN_HEAD "," MIN_RES ",'node_id':'c2'}"),
			     "t.json", &n, err, sizeof(err)),
			 -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "duplicate object key"));
}
END_TEST

START_TEST(root_must_be_an_object)
{
	expect_error("[1,2]",
		     "config t.json: expected an object, got an array");
}
END_TEST

START_TEST(unknown_keys_are_named_with_their_path)
{
	expect_error("{" MIN_HEAD "," MIN_RES ",'prepare_ms':5}",
		     "config t.json: key \"prepare_ms\": unknown key (allowed: "
		     "node_id, cluster_id, listen, data_dir, members, "
		     "resources, timeouts, limits, sync_mode, log_level, "
		     "crash_point)");
	expect_error("{" MIN_HEAD ",'resources':[{'name':'a','driver':'kv'},"
		     "{'name':'b','drvier':'kv'}]}",
		     "config t.json: key \"resources[1].drvier\": unknown key "
		     "(allowed: name, driver, conninfo, address, pool_size)");
	expect_error("{" MIN_HEAD "," MIN_RES ",'timeouts':{'prepare':1}}",
		     "config t.json: key \"timeouts.prepare\": unknown key "
		     "(allowed: prepare_ms, statement_ms, retry_initial_ms, "
		     "retry_max_ms, election_ms, heartbeat_ms)");
	expect_error("{" MIN_HEAD "," MIN_RES ",'listen':{'api':'h:1'}}",
		     "config t.json: key \"listen.api\": unknown key (allowed: "
		     "http, peer)");
	/* A hostile key cannot inject quotes or newlines into the message. */
	expect_error("{" MIN_HEAD "," MIN_RES ",'a\\'\\nb':1}",
		     "config t.json: key \"a??b\": unknown key (allowed: "
		     "node_id, cluster_id, listen, data_dir, members, "
		     "resources, timeouts, limits, sync_mode, log_level, "
		     "crash_point)");
}
END_TEST

START_TEST(missing_required_keys_are_named)
{
	expect_error("{'node_id':'c1','data_dir':'/d'," MIN_RES "}",
		     "config t.json: key \"cluster_id\": required key is "
		     "missing");
	expect_error("{" MIN_HEAD "}",
		     "config t.json: key \"resources\": required key is "
		     "missing");
	expect_error("{'node_id':'c1','cluster_id':'bank'," MIN_RES "}",
		     "config t.json: key \"data_dir\": required key is "
		     "missing");
	expect_error("{" MIN_HEAD ",'resources':[{'name':'a','driver':'kv'},"
		     "{'name':'b'}]}",
		     "config t.json: key \"resources[1].driver\": required key "
		     "is missing");
	expect_error("{" MIN_HEAD ",'resources':[{'name':'a','driver':"
		     "'postgres'}]}",
		     "config t.json: key \"resources[0].conninfo\": required "
		     "key is missing");
	expect_error("{" MIN_HEAD ",'resources':[{'name':'a','driver':"
		     "'agent'}]}",
		     "config t.json: key \"resources[0].address\": required "
		     "key is missing");
}
END_TEST

START_TEST(wrong_types_are_named)
{
	expect_error("{" MIN_HEAD ",'resources':[{'name':'a','driver':'kv'},"
		     "{'name':'b','driver':5}]}",
		     "config t.json: key \"resources[1].driver\": expected a "
		     "string, got an integer");
	expect_error("{" MIN_HEAD ",'resources':{}}",
		     "config t.json: key \"resources\": expected an array, got "
		     "an object");
	expect_error("{" MIN_HEAD ",'resources':['a']}",
		     "config t.json: key \"resources[0]\": expected an object, "
		     "got a string");
	expect_error("{" MIN_HEAD "," MIN_RES ",'timeouts':{'prepare_ms':"
		     "'5s'}}",
		     "config t.json: key \"timeouts.prepare_ms\": expected an "
		     "integer, got a string");
	expect_error("{" MIN_HEAD "," MIN_RES ",'timeouts':{'prepare_ms':"
		     "1.5}}",
		     "config t.json: key \"timeouts.prepare_ms\": expected an "
		     "integer, got a real number");
	expect_error(
	    "{'node_id':null,'cluster_id':'bank','data_dir':'/d'," MIN_RES "}",
	    "config t.json: key \"node_id\": expected a string, got "
	    "null");
	expect_error("{" MIN_HEAD "," MIN_RES ",'limits':[]}",
		     "config t.json: key \"limits\": expected an object, got "
		     "an array");
	expect_error("{" MIN_HEAD "," MIN_RES ",'crash_point':true}",
		     "config t.json: key \"crash_point\": expected a string, "
		     "got a boolean");
}
END_TEST

START_TEST(bad_enum_values_list_the_choices)
{
	expect_error("{" MIN_HEAD "," MIN_RES ",'sync_mode':'fsync'}",
		     "config t.json: key \"sync_mode\": expected one of "
		     "\"fdatasync\", \"dsync\", \"none\", got \"fsync\"");
	expect_error("{" MIN_HEAD ",'resources':[{'name':'a','driver':"
		     "'mysql'}]}",
		     "config t.json: key \"resources[0].driver\": expected one "
		     "of \"postgres\", \"agent\", \"kv\", got \"mysql\"");
	expect_error("{" MIN_HEAD "," MIN_RES ",'log_level':'verbose'}",
		     "config t.json: key \"log_level\": expected one of "
		     "\"debug\", \"info\", \"warn\", \"error\", \"off\", got "
		     "\"verbose\"");
}
END_TEST

START_TEST(duplicate_resource_names_are_refused)
{
	expect_error("{" MIN_HEAD ",'resources':[{'name':'a','driver':'kv'},"
		     "{'name':'b','driver':'kv'},{'name':'a','driver':'kv'}]}",
		     "config t.json: key \"resources[2].name\": duplicate "
		     "resource name \"a\" (also resources[0])");
}
END_TEST

START_TEST(bad_names_are_refused)
{
	expect_error(
	    "{'node_id':'c1','cluster_id':'Bank','data_dir':'/d'," MIN_RES "}",
	    "config t.json: key \"cluster_id\": expected 1 to 16 "
	    "characters from [a-z0-9], got \"Bank\"");
	expect_error(
	    "{'node_id':'c1','cluster_id':'a_b','data_dir':'/d'," MIN_RES "}",
	    "config t.json: key \"cluster_id\": expected 1 to 16 "
	    "characters from [a-z0-9], got \"a_b\"");
	expect_error("{'node_id':'c1','cluster_id':'','data_dir':'/d'," MIN_RES
		     "}",
		     "config t.json: key \"cluster_id\": expected 1 to 16 "
		     "characters from [a-z0-9], got \"\"");
	expect_error("{'node_id':'c1','cluster_id':'abcdefghijklmnopq',"
		     "'data_dir':'/d'," MIN_RES "}",
		     "config t.json: key \"cluster_id\": expected 1 to 16 "
		     "characters from [a-z0-9], got \"abcdefghijklmnopq\"");
	expect_error("{" MIN_HEAD ",'resources':[{'name':'a b','driver':"
		     "'kv'}]}",
		     "config t.json: key \"resources[0].name\": expected 1 to "
		     "32 characters from [A-Za-z0-9_-], got \"a b\"");
	expect_error(
	    "{'node_id':'c 1','cluster_id':'bank','data_dir':'/d'," MIN_RES "}",
	    "config t.json: key \"node_id\": expected 1 to 64 "
	    "characters from [A-Za-z0-9._-], got \"c 1\"");
	expect_error(
	    "{'node_id':'c1','cluster_id':'bank','data_dir':''," MIN_RES "}",
	    "config t.json: key \"data_dir\": expected a non-empty "
	    "string");
}
END_TEST

START_TEST(driver_specific_keys_and_addresses_are_checked)
{
	expect_error("{" MIN_HEAD ",'resources':[{'name':'a','driver':'agent',"
		     "'address':'h:1','conninfo':'x'}]}",
		     "config t.json: key \"resources[0].conninfo\": only for "
		     "driver \"postgres\"");
	expect_error("{" MIN_HEAD ",'resources':[{'name':'a','driver':'kv',"
		     "'address':'h:1'}]}",
		     "config t.json: key \"resources[0].address\": only for "
		     "driver \"agent\"");
	expect_error("{" MIN_HEAD ",'resources':[{'name':'a','driver':'agent',"
		     "'address':'nohost'}]}",
		     "config t.json: key \"resources[0].address\": expected "
		     "\"host:port\" (port 0-65535), got \"nohost\"");
	expect_error("{" MIN_HEAD "," MIN_RES ",'listen':{'http':'h:70000'}}",
		     "config t.json: key \"listen.http\": expected "
		     "\"host:port\" (port 0-65535), got \"h:70000\"");
	expect_error("{" MIN_HEAD "," MIN_RES ",'listen':{'http':'[::1]'}}",
		     "config t.json: key \"listen.http\": expected "
		     "\"host:port\" (port 0-65535), got \"[::1]\"");
	expect_error("{" MIN_HEAD ",'resources':[]}",
		     "config t.json: key \"resources\": expected at least one "
		     "resource");
}
END_TEST

START_TEST(numbers_out_of_range_and_inconsistent_timeouts_are_refused)
{
	expect_error("{" MIN_HEAD ",'resources':[{'name':'a','driver':'kv',"
		     "'pool_size':0}]}",
		     "config t.json: key \"resources[0].pool_size\": expected "
		     "an integer from 1 to 1024, got 0");
	expect_error("{" MIN_HEAD "," MIN_RES ",'timeouts':{'election_ms':-5}}",
		     "config t.json: key \"timeouts.election_ms\": expected an "
		     "integer from 1 to 86400000, got -5");
	expect_error("{" MIN_HEAD "," MIN_RES ",'timeouts':{'retry_initial_ms'"
		     ":100,'retry_max_ms':50}}",
		     "config t.json: key \"timeouts.retry_initial_ms\": must "
		     "not exceed retry_max_ms (50)");
	expect_error("{" MIN_HEAD "," MIN_RES ",'timeouts':{'heartbeat_ms':"
		     "300}}",
		     "config t.json: key \"timeouts.heartbeat_ms\": must be "
		     "less than election_ms (300)");
	expect_error(
	    "{" MIN_HEAD "," MIN_RES ",'limits':{'max_body_bytes':"
	    "10}}",
	    "config t.json: key \"limits.max_body_bytes\": expected an "
	    "integer from 1024 to 1073741824, got 10");
	expect_error("{" MIN_HEAD "," MIN_RES ",'limits':{'max_finished':"
		     "999}}",
		     "config t.json: key \"limits.max_finished\": expected an "
		     "integer from 1000 to 100000000, got 999");
}
END_TEST

START_TEST(members_must_include_this_node)
{
	expect_error("{" MIN_HEAD "," MIN_RES ",'listen':{'peer':'h:2'},"
		     "'members':[{'id':'c2','peer':'h:1','http':'h:3'}]}",
		     "config t.json: key \"members\": node_id \"c1\" is not "
		     "among the members");
	expect_error(
	    "{" MIN_HEAD "," MIN_RES ",'listen':{'peer':'h:2'},"
	    "'members':[{'id':'c1','peer':'h:1','http':'h:3'},"
	    "{'id':'c1','peer':'h:4','http':'h:5'}]}",
	    "config t.json: key \"members[1].id\": duplicate member id "
	    "\"c1\" (also members[0])");
	expect_error(
	    "{" MIN_HEAD "," MIN_RES ","
	    "'members':[{'id':'c1','peer':'h:1','http':'h:3'}]}",
	    "config t.json: key \"listen.peer\": required when members "
	    "are configured");
	expect_error("{" MIN_HEAD "," MIN_RES ",'listen':{'peer':'h:2'},"
		     "'members':[{'id':'c1','http':'h:3'}]}",
		     "config t.json: key \"members[0].peer\": required key is "
		     "missing");
}
END_TEST

START_TEST(bad_crash_point_is_refused)
{
	expect_error("{" MIN_HEAD "," MIN_RES ",'crash_point':'Bad Point'}",
		     "config t.json: key \"crash_point\": expected \"name\" or "
		     "\"name:N\" with name in [a-z0-9._-] and N >= 1");
	expect_error("{" MIN_HEAD "," MIN_RES ",'crash_point':'x:0'}",
		     "config t.json: key \"crash_point\": expected \"name\" or "
		     "\"name:N\" with name in [a-z0-9._-] and N >= 1");
}
END_TEST

START_TEST(small_error_buffer_is_cut_not_overrun)
{
	struct config_node *n = NULL;
	char err[16];

	memset(err, 'x', sizeof(err));
	ck_assert_int_eq(
	    config_node_load_string("[]", "t.json", &n, err, sizeof(err)),
	    -EINVAL);
	ck_assert_str_eq(err, "config t.json: ");
	/* No buffer at all is allowed too. */
	ck_assert_int_eq(config_node_load_string("[]", "t.json", &n, NULL, 0),
			 -EINVAL);
	ck_assert_ptr_null(n);
}
END_TEST

START_TEST(generic_getters_check_what_they_read)
{
	struct config_ctx ctx;
	struct config_value root, arr, el;
	json_t *doc;
	char err[CONFIG_ERR_MAX];
	bool b = false;
	long long x = 7;
	const char *s = "default";
	size_t n;

	ctx.file = "g.json";
	ctx.err = err;
	ctx.errlen = sizeof(err);
	ck_assert_int_eq(config_parse(&ctx, js("{'on':true,'list':['x',3]}"),
				      strlen(js("{'on':true,'list':['x',3]}")),
				      &doc),
			 0);
	config_value_root(&ctx, doc, &root);
	ck_assert_int_eq(config_get_bool(&root, "on", CONFIG_REQUIRED, &b), 0);
	ck_assert(b);
	ck_assert_int_eq(
	    config_get_int(&root, "absent", CONFIG_OPTIONAL, 0, 9, &x), 0);
	ck_assert_int_eq(x, 7);
	ck_assert_int_eq(
	    config_get_string(&root, "absent", CONFIG_OPTIONAL, &s), 0);
	ck_assert_str_eq(s, "default");
	ck_assert(config_has(&root, "on"));
	ck_assert(!config_has(&root, "off"));
	ck_assert_int_eq(config_get_int(&root, "on", CONFIG_OPTIONAL, 0, 9, &x),
			 -EINVAL);
	ck_assert_str_eq(err, "config g.json: key \"on\": expected an integer, "
			      "got a boolean");
	ck_assert_int_eq(
	    config_get_array(&root, "list", CONFIG_REQUIRED, &arr, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(config_array_elem(&arr, 0, &el), 0);
	ck_assert_int_eq(config_value_string(&el, &s), 0);
	ck_assert_str_eq(s, "x");
	ck_assert_int_eq(config_array_elem(&arr, 1, &el), 0);
	ck_assert_int_eq(config_value_string(&el, &s), -EINVAL);
	ck_assert_str_eq(err, "config g.json: key \"list[1]\": expected a "
			      "string, got an integer");
	ck_assert_int_eq(config_array_elem(&arr, 2, &el), -EINVAL);
	ck_assert_int_eq(config_get_bool(&root, "list", CONFIG_REQUIRED, &b),
			 -EINVAL);
	ck_assert_str_eq(err,
			 "config g.json: key \"list\": expected a boolean, "
			 "got an array");
	json_decref(doc);
}
END_TEST

/*
 * Every allocation on the way (jansson's included, routed through mem.h
 * here) may fail: the load then fails cleanly, leaks nothing (ASan), and
 * hands nothing out; with enough allocations it succeeds.
 */
START_TEST(allocation_failures_fail_cleanly)
{
	bool succeeded = false;

	json_set_alloc_funcs(mem_alloc, mem_free);
	for (long k = 1; k < 400 && !succeeded; k++) {
		struct config_node *n = NULL;
		char err[CONFIG_ERR_MAX];
		int rc;

		mem_fail_after(k);
		rc = config_node_load_string(js(full_config), "t.json", &n, err,
					     sizeof(err));
		mem_fail_reset();
		if (rc == 0) {
			ck_assert_str_eq(n->resources[1].name, "bank-b");
			config_node_free(n);
			succeeded = true;
		} else {
			ck_assert_ptr_null(n);
			ck_assert_msg(err[0] != '\0', "k=%ld: no message", k);
		}
	}
	ck_assert(succeeded);
}
END_TEST

static void expect_redacted(const char *in, const char *want)
{
	char out[256];

	ck_assert_int_eq(config_conninfo_redact(in, out, sizeof(out)), 0);
	ck_assert_str_eq(out, want);
}

START_TEST(conninfo_passwords_are_redacted)
{
	expect_redacted("host=/tmp/pg port=5432 password=s3cret dbname=bank",
			"host=/tmp/pg port=5432 password=*** dbname=bank");
	expect_redacted("password = 'a b\\' c' user=x",
			"password = *** user=x");
	expect_redacted("sslpassword=k host=h", "sslpassword=*** host=h");
	expect_redacted("host=h", "host=h");
	expect_redacted("", "");
	expect_redacted("user=password host=h", "user=password host=h");
	expect_redacted("postgresql://bob:s3cret@db1:5432/bank?sslmode=require",
			"postgresql://bob:***@db1:5432/bank?sslmode=require");
	expect_redacted("postgres://bob@db1/bank?password=x&user=y",
			"postgres://bob@db1/bank?password=***&user=y");
	expect_redacted("postgresql://db1", "postgresql://db1");
}
END_TEST

START_TEST(redaction_into_a_small_buffer_never_leaks)
{
	char out[24];

	ck_assert_int_eq(config_conninfo_redact("password=abcdefghijklmnop "
						"host=hhhhhhhhhhhhhhhhhh",
						out, sizeof(out)),
			 -ENOSPC);
	ck_assert_str_eq(out, "password=*** host=hhhhh");
	ck_assert_ptr_null(strstr(out, "abc"));
	ck_assert_int_eq(config_conninfo_redact("x", NULL, 0), -EINVAL);
}
END_TEST

/* The effective config reloads to the same node, passwords redacted. */
START_TEST(effective_config_round_trips_with_passwords_redacted)
{
	struct config_node *a = NULL, *b = NULL;
	char err[CONFIG_ERR_MAX];
	char *text;
	char *secret = strdup(js(full_config));
	char *at = strstr(secret, "dbname=bank");
	json_t *j;

	/* Give bank_a a password: "... dbname=bank" -> "... password=pw1" */
	ck_assert_ptr_nonnull(at);
	memcpy(at, "password=pw", 11);
	ck_assert_int_eq(
	    config_node_load_string(secret, "t.json", &a, err, sizeof(err)), 0);
	ck_assert_int_eq(config_node_to_json(a, &j), 0);
	text = json_dumps(j, JSON_SORT_KEYS);
	ck_assert_ptr_nonnull(text);
	ck_assert_ptr_null(strstr(text, "pw"));
	ck_assert_int_eq(
	    config_node_load_string(text, "again.json", &b, err, sizeof(err)),
	    0);
	ck_assert_str_eq(b->resources[0].conninfo,
			 "host=/tmp/pg1 port=5432 password=***");
	ck_assert_str_eq(b->node_id, a->node_id);
	ck_assert_str_eq(b->cluster_id, a->cluster_id);
	ck_assert_str_eq(b->listen_http, a->listen_http);
	ck_assert_str_eq(b->listen_peer, a->listen_peer);
	ck_assert_str_eq(b->data_dir, a->data_dir);
	ck_assert_uint_eq(b->nmembers, a->nmembers);
	ck_assert_str_eq(b->members[2].peer, a->members[2].peer);
	ck_assert_uint_eq(b->nresources, a->nresources);
	ck_assert_str_eq(b->resources[1].address, a->resources[1].address);
	ck_assert_uint_eq(b->resources[0].pool_size, 4);
	ck_assert_int_eq(b->resources[2].driver, CONFIG_DRIVER_KV);
	ck_assert_mem_eq(&b->timeouts, &a->timeouts, sizeof(a->timeouts));
	ck_assert_mem_eq(&b->limits, &a->limits, sizeof(a->limits));
	ck_assert_int_eq(b->sync_mode, a->sync_mode);
	ck_assert_int_eq(b->log_level, a->log_level);
	ck_assert_str_eq(b->crash_point, a->crash_point);
	free(text);
	json_decref(j);
	config_node_free(b);
	config_node_free(a);
	free(secret);
}
END_TEST

START_TEST(effective_config_survives_allocation_failures)
{
	struct config_node *n = NULL;
	char err[CONFIG_ERR_MAX];
	bool succeeded = false;

	ck_assert_int_eq(config_node_load_string(js(full_config), "t.json", &n,
						 err, sizeof(err)),
			 0);
	json_set_alloc_funcs(mem_alloc, mem_free);
	for (long k = 1; k < 400 && !succeeded; k++) {
		json_t *j = NULL;
		int rc;

		mem_fail_after(k);
		rc = config_node_to_json(n, &j);
		mem_fail_reset();
		ck_assert_msg(rc == 0 || rc == -ENOMEM, "k=%ld rc=%d", k, rc);
		if (rc == 0) {
			ck_assert_uint_eq(json_object_size(j), 11);
			json_decref(j);
			succeeded = true;
		} else {
			ck_assert_ptr_null(j);
		}
	}
	ck_assert(succeeded);
	config_node_free(n);
}
END_TEST

/*
 * Systematic: every value of the full config, replaced by a value of each
 * other JSON type, is reported at exactly its own key path; and an unknown
 * key added to every object is reported at its path.
 */
static json_t *mut_doc;
static int mut_checked;

static void expect_at(const char *path, const char *what)
{
	struct config_node *n = NULL;
	char err[CONFIG_ERR_MAX];
	char want[CONFIG_ERR_MAX];
	char *text = json_dumps(mut_doc, 0);
	int rc;

	ck_assert_ptr_nonnull(text);
	rc = config_node_load_string(text, "t.json", &n, err, sizeof(err));
	snprintf(want, sizeof(want), "config t.json: key \"%s\": %s", path,
		 what);
	ck_assert_msg(rc == -EINVAL && strncmp(err, want, strlen(want)) == 0,
		      "mutating %s: rc %d, message: %s", path, rc, err);
	ck_assert_ptr_null(n);
	free(text);
	mut_checked++;
}

static bool same_kind(const json_t *a, const json_t *b)
{
	if (json_is_boolean(a) && json_is_boolean(b))
		return true;
	return json_typeof(a) == json_typeof(b);
}

/* Replaces the value at (parent, key | idx) by each other type. */
static void mutate(json_t *parent, const char *key, size_t idx, json_t *v,
		   const char *path)
{
	json_t *alts[] = {json_null(),	  json_true(),	    json_integer(7),
			  json_real(1.5), json_string("s"), json_array(),
			  json_object()};
	json_t *keep = json_incref(v);

	for (size_t i = 0; i < sizeof(alts) / sizeof(alts[0]); i++) {
		if (!same_kind(alts[i], keep)) {
			if (key != NULL)
				json_object_set(parent, key, alts[i]);
			else
				json_array_set(parent, idx, alts[i]);
			expect_at(path, "expected ");
		}
		json_decref(alts[i]);
	}
	if (key != NULL)
		json_object_set(parent, key, keep);
	else
		json_array_set(parent, idx, keep);
	json_decref(keep);
}

static void walk(json_t *v, const char *path)
{
	char child[CONFIG_PATH_MAX + 32];

	if (json_is_object(v)) {
		const char *key;
		json_t *m;
		void *tmp;

		snprintf(child, sizeof(child), "%s%szz", path,
			 path[0] ? "." : "");
		json_object_set_new(v, "zz", json_true());
		expect_at(child, "unknown key (allowed: ");
		json_object_del(v, "zz");
		json_object_foreach_safe(v, tmp, key, m)
		{
			snprintf(child, sizeof(child), "%s%s%s", path,
				 path[0] ? "." : "", key);
			mutate(v, key, 0, m, child);
			walk(json_object_get(v, key), child);
		}
	} else if (json_is_array(v)) {
		for (size_t i = 0; i < json_array_size(v); i++) {
			snprintf(child, sizeof(child), "%s[%zu]", path, i);
			mutate(v, NULL, i, json_array_get(v, i), child);
			walk(json_array_get(v, i), child);
		}
	}
}

START_TEST(every_wrong_type_and_stray_key_is_reported_at_its_path)
{
	json_error_t jerr;

	mut_doc = json_loads(js(full_config), 0, &jerr);
	ck_assert_ptr_nonnull(mut_doc);
	walk(mut_doc, "");
	ck_assert_int_ge(mut_checked, 200);
	json_decref(mut_doc);
}
END_TEST

/*
 * Random damage (flipped bytes, cuts, inserted bytes) never crashes or
 * leaks: the result either loads or fails with a message naming the file.
 */
START_TEST(random_damage_is_an_error_never_a_crash)
{
	const char *good = js(full_config);
	size_t len = strlen(good);
	char *buf = malloc(len + 16);
	uint64_t x = 20261122;

	ck_assert_ptr_nonnull(buf);
	for (int round = 0; round < 3000; round++) {
		struct config_node *n = NULL;
		char err[CONFIG_ERR_MAX];
		size_t blen = len;
		int rc;

		memcpy(buf, good, len + 1);
		for (int k = 0; k < 1 + round % 3; k++) {
			size_t at;

			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			at = (size_t)(x >> 8) % blen;
			switch (x % 3) {
			case 0:
				buf[at] = (char)(x >> 40);
				if (buf[at] == '\0')
					buf[at] = '~';
				break;
			case 1:
				blen = at;
				buf[blen] = '\0';
				break;
			default:
				memmove(buf + at + 1, buf + at, blen - at + 1);
				buf[at] = "{}[],:\"0a"[(x >> 32) % 9];
				blen++;
				break;
			}
			if (blen == 0)
				break;
		}
		rc = config_node_load_string(buf, "t.json", &n, err,
					     sizeof(err));
		if (rc == 0) {
			config_node_free(n);
			continue;
		}
		ck_assert_msg(rc == -EINVAL, "round %d (seed 20261122): rc %d",
			      round, rc);
		ck_assert_msg(strncmp(err, "config t.json: ", 15) == 0,
			      "round %d (seed 20261122): %s", round, err);
	}
	free(buf);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    full_config_loads_every_field,
	    minimal_config_gets_documented_defaults,
	    file_is_read_and_missing_file_is_named,
	    oversized_file_is_refused,
	    malformed_json_names_the_line,
	    duplicate_json_key_is_refused,
	    root_must_be_an_object,
	    unknown_keys_are_named_with_their_path,
	    missing_required_keys_are_named,
	    wrong_types_are_named,
	    bad_enum_values_list_the_choices,
	    duplicate_resource_names_are_refused,
	    bad_names_are_refused,
	    driver_specific_keys_and_addresses_are_checked,
	    numbers_out_of_range_and_inconsistent_timeouts_are_refused,
	    members_must_include_this_node,
	    bad_crash_point_is_refused,
	    small_error_buffer_is_cut_not_overrun,
	    generic_getters_check_what_they_read,
	    allocation_failures_fail_cleanly,
	    conninfo_passwords_are_redacted,
	    redaction_into_a_small_buffer_never_leaks,
	    effective_config_round_trips_with_passwords_redacted,
	    effective_config_survives_allocation_failures,
	    every_wrong_type_and_stray_key_is_reported_at_its_path,
	    random_damage_is_an_error_never_a_crash,
	    NULL,
	};

	return suite_main("common_config", 0, tests);
}
