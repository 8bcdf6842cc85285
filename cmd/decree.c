/*
 * decree.c - the decree binary: one program, one subcommand per job.
 *
 * To add a subcommand, write cmd/<name>.c with int cmd_<name>(argc, argv),
 * declare it in cmd/cmd.h and add a row to the table below.
 */
#include "cmd/cmd.h"

#include <stdio.h>
#include <string.h>

#define DECREE_VERSION "0.1.0"

static const struct cmd commands[] = {
	{"coordinator", "run a coordinator node", cmd_coordinator},
	{"version", "print the version", cmd_version},
	{"txn", "run, inspect and list transactions", cmd_txn},
	{"wal", "inspect a write-ahead log (wal dump DIR)", cmd_wal},
	{"raft", "run a Raft group member (raft node ...)", cmd_raft},
};

static const size_t ncommands = sizeof(commands) / sizeof(commands[0]);

static void usage(FILE *out)
{
	fprintf(out, "usage: decree <command> [options]\n\n"
		     "decree is a distributed transaction coordinator: 2PC and "
		     "3PC with forced-write\nlogs, crash recovery, and an "
		     "optional Raft-replicated decision log.\n\ncommands:\n");
	for (size_t i = 0; i < ncommands; i++)
		fprintf(out, "  %-12s %s\n", commands[i].name,
			commands[i].summary);
	fprintf(out, "\nRun 'decree <command> --help' for a command's "
		     "options.\n");
}

int cmd_wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
			return 1;
	}
	return 0;
}

int cmd_version(int argc, char **argv)
{
	if (cmd_wants_help(argc, argv)) {
		printf("usage: decree version\n\nPrints decree's version.\n");
		return 0;
	}
	printf("decree %s\n", DECREE_VERSION);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < ncommands; i++) {
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	}
	fprintf(stderr, "decree: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}
