/*
 * format.c - the on-disk format of the log: segment file header, record
 * header, start marker, file names.  This comment is the specification; the
 * decoders check the magic numbers, version and CRCs.
 *
 * All integers are little-endian.  CRC is CRC-32C (wal_crc32c, starting 0).
 *
 * Directory contents:
 *   <first-lsn as 16 lowercase hex digits>.wal   segment files
 *   <name>.tmp                                     being created (deleted by
 *                                                  recovery)
 *   wal.start                                      start marker (optional)
 *
 * Segment file (fixed maximum size S, chosen at creation, preallocated):
 *
 *   offset size  field
 *   0      4     magic          0x4C415744 (bytes "DWAL")
 *   4      2     version        1
 *   6      2     header size    32
 *   8      8     first lsn      LSN of the first record in this segment
 *                               (equals the file name)
 *   16     8     segment size   S
 *   24     4     reserved       0
 *   28     4     crc            CRC-32C of bytes 0..27
 *   32     ...   records, back to back, then zero bytes up to S
 *
 * Record (24-byte header, then the payload, no padding):
 *
 *   offset size  field
 *   0      4     crc            CRC-32C of bytes 4..23 and the payload
 *   4      4     length         payload bytes (0 allowed)
 *   8      8     lsn            previous record's LSN + 1
 *   16     4     type           caller's record type
 *   20     4     reserved       0
 *   24     len   payload
 *
 * A record never spans segments; a record that does not fit in the rest of
 * a segment starts the next one.  The log ends at the first record header
 * that is all zero (clean end) or at the end of the file.
 *
 * Start marker wal.start (written as wal.start.tmp, synced, renamed):
 *
 *   0      4     magic          0x54535744 (bytes "DWST")
 *   4      2     version        1
 *   6      2     reserved       0
 *   8      8     first lsn      records below it are dropped
 *   16     4     reserved       0
 *   20     4     crc            CRC-32C of bytes 0..19
 *
 * Invariants:
 *   1. LSNs are dense across the whole directory: a segment's first LSN is
 *      the previous segment's last LSN + 1.
 *   2. Every segment but the last is fully synced before a record is
 *      written to the next (so a crash can only tear the last one).
 *   3. Bytes after the end of the log in a segment are zero (truncation
 *      and recovery cut a segment with ftruncate, then preallocate again).
 */
#include "wal/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void wal__put16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

void wal__put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

void wal__put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

uint16_t wal__get16(const unsigned char *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

uint32_t wal__get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

uint64_t wal__get64(const unsigned char *p)
{
	return (uint64_t)wal__get32(p) | (uint64_t)wal__get32(p + 4) << 32;
}

void wal__seg_header_encode(unsigned char out[WAL_SEGMENT_HEADER_SIZE],
			    const struct wal__seg_header *h)
{
	memset(out, 0, WAL_SEGMENT_HEADER_SIZE);
	wal__put32(out, WAL__SEG_MAGIC);
	wal__put16(out + 4, WAL__VERSION);
	wal__put16(out + 6, WAL_SEGMENT_HEADER_SIZE);
	wal__put64(out + 8, h->first_lsn);
	wal__put64(out + 16, h->segment_size);
	wal__put32(out + 28, wal_crc32c(0, out, 28));
}

int wal__seg_header_decode(const unsigned char in[WAL_SEGMENT_HEADER_SIZE],
			   struct wal__seg_header *h)
{
	if (wal__get32(in) != WAL__SEG_MAGIC ||
	    wal__get16(in + 4) != WAL__VERSION ||
	    wal__get16(in + 6) != WAL_SEGMENT_HEADER_SIZE ||
	    wal__get32(in + 28) != wal_crc32c(0, in, 28))
		return -WAL_EFORMAT;
	h->first_lsn = wal__get64(in + 8);
	h->segment_size = wal__get64(in + 16);
	if (h->first_lsn == 0 || h->segment_size < WAL_MIN_SEGMENT_SIZE)
		return -WAL_EFORMAT;
	return 0;
}

void wal__rec_encode(unsigned char *out, uint64_t lsn, uint32_t type,
		     const void *payload, uint32_t len)
{
	uint32_t crc;

	wal__put32(out + 4, len);
	wal__put64(out + 8, lsn);
	wal__put32(out + 16, type);
	wal__put32(out + 20, 0);
	if (len)
		memcpy(out + WAL_RECORD_HEADER_SIZE, payload, len);
	crc = wal_crc32c(0, out + 4, WAL_RECORD_HEADER_SIZE - 4 + (size_t)len);
	wal__put32(out, crc);
}

void wal__rec_header_decode(const unsigned char in[WAL_RECORD_HEADER_SIZE],
			    struct wal__rec_header *h)
{
	h->crc = wal__get32(in);
	h->len = wal__get32(in + 4);
	h->lsn = wal__get64(in + 8);
	h->type = wal__get32(in + 16);
	h->reserved = wal__get32(in + 20);
}

bool wal__rec_check(const unsigned char hdr[WAL_RECORD_HEADER_SIZE],
		    const void *payload, uint32_t len)
{
	uint32_t crc = wal_crc32c(0, hdr + 4, WAL_RECORD_HEADER_SIZE - 4);

	crc = wal_crc32c(crc, payload, len);
	return crc == wal__get32(hdr);
}

bool wal__is_zero(const void *buf, size_t len)
{
	const unsigned char *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

void wal__start_encode(unsigned char out[WAL__START_SIZE], uint64_t first)
{
	memset(out, 0, WAL__START_SIZE);
	wal__put32(out, WAL__START_MAGIC);
	wal__put16(out + 4, WAL__VERSION);
	wal__put64(out + 8, first);
	wal__put32(out + 20, wal_crc32c(0, out, 20));
}

int wal__start_decode(const unsigned char in[WAL__START_SIZE], uint64_t *first)
{
	if (wal__get32(in) != WAL__START_MAGIC ||
	    wal__get16(in + 4) != WAL__VERSION ||
	    wal__get32(in + 20) != wal_crc32c(0, in, 20))
		return -WAL_EFORMAT;
	*first = wal__get64(in + 8);
	if (*first == 0)
		return -WAL_EFORMAT;
	return 0;
}

void wal__seg_name(char out[WAL__NAME_MAX], uint64_t first_lsn)
{
	snprintf(out, WAL__NAME_MAX, "%016" PRIx64 ".wal", first_lsn);
}

bool wal__seg_name_parse(const char *name, uint64_t *first_lsn)
{
	uint64_t v = 0;

	if (strlen(name) != 20 || strcmp(name + 16, ".wal") != 0)
		return false;
	for (int i = 0; i < 16; i++) {
		char c = name[i];
		unsigned d;

		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else
			return false;
		v = v << 4 | d;
	}
	if (v == 0)
		return false;
	*first_lsn = v;
	return true;
}
