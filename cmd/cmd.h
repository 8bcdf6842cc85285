/*
 * cmd.h - the subcommands of the decree binary.  Each lives in cmd/<name>.c
 * and has the signature of main(): argv[0] is the subcommand's name.  It
 * returns the process exit status (0 ok, 1 failure, 2 usage error).
 */
#ifndef DECREE_CMD_H
#define DECREE_CMD_H

struct cmd {
	const char *name;
	const char *summary;
	int (*run)(int argc, char **argv);
};

/* True if argv holds -h or --help. */
int cmd_wants_help(int argc, char **argv);

int cmd_version(int argc, char **argv);
int cmd_coordinator(int argc, char **argv);
int cmd_txn(int argc, char **argv);
int cmd_wal(int argc, char **argv);
int cmd_raft(int argc, char **argv);

#endif
