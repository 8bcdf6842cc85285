/*
 * mem.c - allocation wrappers with a failure-injection hook for tests.
 *
 * The counters are plain globals: decree runs one event loop per process and
 * allocates only on it; the WAL's writer thread allocates nothing.
 */
#include "common/common.h"

#include <stdlib.h>
#include <string.h>

static long fail_at;  /* 0: never fail; otherwise fail from this count on */
static long count;

static int should_fail(void)
{
	count++;
	return fail_at > 0 && count >= fail_at;
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
