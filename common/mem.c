/*
 * mem.c - allocation wrappers with a failure-injection hook for tests.
 *
 * The counters are atomic: the loop thread and helper threads (the WAL's
 * writer) allocate at once.  The hook is meant for single-threaded tests;
 * with several threads, which allocation is the N-th is a race, but the
 * count itself is not.
 */
#include "common/common.h"

#include <stdlib.h>
#include <string.h>

static _Atomic long fail_at; /* 0: never fail; else fail from this count on */
static _Atomic long count;

static int should_fail(void)
{
	long n = ++count;
	long at = fail_at;

	return at > 0 && n >= at;
}

void *mem_alloc(size_t size)
{
	if (should_fail())
		return NULL;
	return malloc(size ? size : 1);
}

void *mem_calloc(size_t n, size_t size)
{
	if (should_fail())
		return NULL;
	return calloc(n ? n : 1, size ? size : 1);
}

void *mem_realloc(void *ptr, size_t size)
{
	if (should_fail())
		return NULL;
	return realloc(ptr, size ? size : 1);
}

char *mem_strndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = mem_alloc(len + 1);

	if (p == NULL)
		return NULL;
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

char *mem_strdup(const char *s)
{
	return mem_strndup(s, strlen(s));
}

void mem_free(void *ptr)
{
	if (ptr != NULL) /* (many frees on cleanup paths are of nothing) */
		free(ptr);
}

void mem_fail_after(long n)
{
	count = 0;
	fail_at = n > 0 ? n : 0;
}

void mem_fail_reset(void)
{
	mem_fail_after(0);
}

long mem_alloc_count(void)
{
	return count;
}

size_t str_copy(char *dst, size_t size, const char *src)
{
	size_t n;

	if (size == 0)
		return 0;
	if (src == NULL)
		src = "";
	n = strnlen(src, size - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
	return n;
}

size_t str_u64(char *dst, unsigned long long v)
{
	char tmp[20];
	size_t n = 0;

	do {
		tmp[sizeof(tmp) - ++n] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	memcpy(dst, tmp + sizeof(tmp) - n, n);
	return n;
}
