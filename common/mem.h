/*
 * mem.h - the one place every decree component allocates through, so tests
 * can make the N-th allocation fail and check that each error path copes.
 * (Part of common/; include common/common.h.)
 */
#ifndef DECREE_COMMON_MEM_H
#define DECREE_COMMON_MEM_H

#include <stddef.h>

/* Like malloc/calloc/realloc/strdup/free, but may be told to fail. */
void *mem_alloc(size_t size);
void *mem_calloc(size_t count, size_t size);
void *mem_realloc(void *ptr, size_t size);
char *mem_strdup(const char *s);
char *mem_strndup(const char *s, size_t n);
void mem_free(void *ptr);

/* Copies src into dst[size] as snprintf(dst, size, "%s", src) does
 * (truncated, always terminated when size > 0) without the format
 * machinery, which hot paths paid for; NULL copies as "".  Returns the
 * length copied. */
size_t str_copy(char *dst, size_t size, const char *src);

/* Writes v in decimal at dst, which has room for 20 digits (no NUL is
 * added); returns the number of digits.  For hot paths, as str_copy. */
size_t str_u64(char *dst, unsigned long long v);

/*
 * Test hook: the n-th allocation from now (1 = the next one) and every one
 * after it returns NULL, until mem_fail_reset().  n <= 0 disables.
 */
void mem_fail_after(long n);
void mem_fail_reset(void);
/* Allocations made since the last mem_fail_after()/mem_fail_reset(). */
long mem_alloc_count(void);

#endif
