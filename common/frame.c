/*
 * frame.c - encodes and incrementally decodes the length-prefixed frames
 * that carry every message between decree processes.
 *
 * Wire format, byte by byte (big endian):
 *
 *   byte 0..3  length  u32, the number of bytes after this field:
 *                      1 (version) + 1 (type) + payload size.  Valid values
 *                      are 2 .. the receiver's limit (16 MiB by default).
 *   byte 4     version u8, FRAME_VERSION = 1.  Anything else is refused.
 *   byte 5     type    u8, the message type (meaning set by the protocol
 *                      layer, not checked here).
 *   byte 6..   payload length - 2 bytes, opaque here.
 *
 *   Example: type 7 with the 3-byte payload "abc" is
 *     00 00 00 05  01  07  61 62 63
 *
 * There is no magic number: the stream is point to point and every frame
 * carries the version, which the decoder checks.  A receiver that meets a
 * bad frame cannot find the next frame boundary, so the error is final.
 *
 * Decoder design
 *  - Bytes are copied into one buffer [start, end).  frame_decoder_next()
 *    parses at start and advances it over each frame it hands out; the
 *    frame points into the buffer, so it stays valid until the next call.
 *  - frame_decoder_feed() first moves the unread bytes to the front (this is
 *    where an earlier frame stops being valid), then grows the buffer if it
 *    must, doubling, so the cost per byte is constant.  A buffer that grew
 *    past FRAME_KEEP_BUFFER for one big frame is released once that frame
 *    has been consumed, so idle connections hold little memory.
 *  - The header is checked as soon as its bytes are there: an oversized
 *    length is refused after 4 bytes, a bad version after 5, without
 *    waiting for (or buffering room for) the payload it announces.
 *
 * Invariants
 *  1. start <= end <= cap; bytes outside [start, end) are never read.
 *  2. err != 0 is sticky: no call changes it back, and nothing is parsed.
 *  3. A frame is handed out only when all length + 4 bytes are buffered.
 */
#include "common/common.h"

#include <errno.h>
#include <string.h>

/* A decoder keeps at most this much buffer once everything is consumed. */
#define FRAME_KEEP_BUFFER (256u << 10)

static const struct {
	int code;
	const char *msg;
} frame_errors[] = {
#define FRAME_ERR_ROW(name, msg) {-name, msg},
    FRAME_ERRORS(FRAME_ERR_ROW)
#undef FRAME_ERR_ROW
};

const char *frame_strerror(int err)
{
	for (size_t i = 0; i < sizeof(frame_errors) / sizeof(frame_errors[0]);
	     i++)
		if (frame_errors[i].code == err)
			return frame_errors[i].msg;
	return "unknown frame error";
}

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* ---- encoder ------------------------------------------------------------ */

void frame_buf_init(struct frame_buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void frame_buf_fini(struct frame_buf *b)
{
	mem_free(b->data);
	frame_buf_init(b);
}

void frame_buf_reset(struct frame_buf *b)
{
	b->len = 0;
}

size_t frame_size(size_t payload_len)
{
	return FRAME_HEADER_SIZE + payload_len;
}

int frame_header_write(uint8_t hdr[FRAME_HEADER_SIZE], uint8_t type, size_t len)
{
	if (len > FRAME_MAX_LIMIT)
		return -EMSGSIZE;
	put_u32(hdr, (uint32_t)(len + 2));
	hdr[4] = FRAME_VERSION;
	hdr[5] = type;
	return 0;
}

/* Makes room for need more bytes after b->len. */
static int buf_reserve(uint8_t **data, size_t *cap, size_t used, size_t need)
{
	size_t ncap = *cap ? *cap : 256;
	uint8_t *p;

	if (need <= *cap - used)
		return 0;
	if (need > SIZE_MAX - used)
		return -ENOMEM;
	while (ncap - used < need) {
		if (ncap > SIZE_MAX / 2) {
			ncap = used + need;
			break;
		}
		ncap *= 2;
	}
	p = mem_realloc(*data, ncap);
	if (p == NULL)
		return -ENOMEM;
	*data = p;
	*cap = ncap;
	return 0;
}

int frame_encode(uint8_t type, const void *payload, size_t len,
		 struct frame_buf *out)
{
	int rc;

	if (out == NULL || (payload == NULL && len > 0))
		return -EINVAL;
	if (len > FRAME_MAX_LIMIT)
		return -EMSGSIZE;
	rc = buf_reserve(&out->data, &out->cap, out->len, frame_size(len));
	if (rc < 0)
		return rc;
	frame_header_write(out->data + out->len, type, len);
	if (len > 0)
		memcpy(out->data + out->len + FRAME_HEADER_SIZE, payload, len);
	out->len += frame_size(len);
	return 0;
}

/* ---- decoder ------------------------------------------------------------ */

int frame_decoder_init(struct frame_decoder *d, size_t max_frame)
{
	if (max_frame == 0)
		max_frame = FRAME_MAX_DEFAULT;
	if (max_frame < 2 || max_frame > (size_t)FRAME_MAX_LIMIT + 2)
		return -EINVAL;
	d->buf = NULL;
	d->cap = 0;
	d->start = 0;
	d->end = 0;
	d->max = max_frame;
	d->err = 0;
	return 0;
}

void frame_decoder_fini(struct frame_decoder *d)
{
	mem_free(d->buf);
	d->buf = NULL;
	d->cap = 0;
	d->start = 0;
	d->end = 0;
}

int frame_decoder_feed(struct frame_decoder *d, const void *bytes, size_t n)
{
	int rc;

	if (d->err != 0)
		return d->err;
	if (n == 0)
		return 0;
	if (bytes == NULL)
		return -EINVAL;
	if (d->start == d->end && d->cap > FRAME_KEEP_BUFFER) {
		/* One big frame must not pin its buffer for the connection's
		 * life; the frame handed out last is invalid from here on. */
		mem_free(d->buf);
		d->buf = NULL;
		d->cap = 0;
		d->start = 0;
		d->end = 0;
	}
	if (d->start > 0) {
		memmove(d->buf, d->buf + d->start, d->end - d->start);
		d->end -= d->start;
		d->start = 0;
	}
	rc = buf_reserve(&d->buf, &d->cap, d->end, n);
	if (rc < 0) {
		d->err = rc;
		return rc;
	}
	memcpy(d->buf + d->end, bytes, n);
	d->end += n;
	return 0;
}

int frame_decoder_next(struct frame_decoder *d, struct frame *f)
{
	size_t avail;
	uint32_t len;

	if (d->err != 0)
		return d->err;
	avail = d->end - d->start;
	if (avail < 4)
		return 0;
	len = get_u32(d->buf + d->start);
	if (len < 2)
		return d->err = -EBADMSG;
	if (len > d->max)
		return d->err = -EMSGSIZE;
	if (avail < 5)
		return 0;
	if (d->buf[d->start + 4] != FRAME_VERSION)
		return d->err = -EPROTONOSUPPORT;
	if (avail - 4 < len)
		return 0;
	f->type = d->buf[d->start + 5];
	f->payload = d->buf + d->start + FRAME_HEADER_SIZE;
	f->len = len - 2;
	d->start += 4 + (size_t)len;
	if (d->start == d->end) {
		/* Nothing left: the next feed needs no move. */
		d->start = 0;
		d->end = 0;
	}
	return 1;
}

size_t frame_decoder_buffered(const struct frame_decoder *d)
{
	return d->end - d->start;
}
