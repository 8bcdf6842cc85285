/*
 * common.h - the public header of common/: the pieces every decree component
 * stands on (allocation, logging, errors, config, framing, networking,
 * metrics).  Include this header, never the per-concern headers directly.
 *
 * Ownership: unless a declaration says otherwise, the caller owns what it
 * passes in and what it gets back, and frees it with the matching *_free().
 */
#ifndef DECREE_COMMON_H
#define DECREE_COMMON_H

#include "common/config.h"
#include "common/cork.h"
#include "common/crashpoint.h"
#include "common/frame.h"
#include "common/http.h"
#include "common/jsonr.h"
#include "common/jsonw.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/metrics.h"
#include "common/net.h"
#include "common/wake.h"

#endif
