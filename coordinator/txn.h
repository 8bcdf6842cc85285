/*
 * txn.h - private to coordinator/: what the engine needs of the txn table
 * beyond the public header.
 */
#ifndef DECREE_COORDINATOR_TXN_H
#define DECREE_COORDINATOR_TXN_H

#include "coordinator/coordinator.h"

/* Unlinks x from the table and frees it (and its stmts via free_stmts). */
void coordinator__table_drop(struct coordinator_table *t,
			     struct coordinator_txn *x,
			     void (*free_stmts)(void *));

#endif
