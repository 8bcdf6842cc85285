/*
 * rng.h - a small deterministic generator (xorshift64*) for seeded tests:
 * a failure replays from its seed.  One generator per test program.
 */
#ifndef DECREE_TESTS_RNG_H
#define DECREE_TESTS_RNG_H

#include <stdint.h>

static uint64_t rng_state;

static inline void rng_seed(uint64_t seed)
{
	rng_state = seed ? seed : 0x9e3779b97f4a7c15ull;
}

static inline uint64_t rng_next(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

#endif
