/*
 * driver_pg.h - private to coordinator/: what driver_pg.c needs besides the
 * public header.  The driver's public API (struct coordinator_pg,
 * coordinator_pg_*(), COORDINATOR_PG_E*) is the "postgres driver" section of
 * coordinator/coordinator.h; docs/driver-pg.md describes its behaviour.
 */
#ifndef DECREE_COORDINATOR_DRIVER_PG_H
#define DECREE_COORDINATOR_DRIVER_PG_H

#include "coordinator/coordinator.h"

#include <uv.h>

#endif
