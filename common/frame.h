/*
 * frame.h - the framed-message codec of decree's wire protocol
 * (coordinator <-> participant agent, Raft peer <-> Raft peer).
 *
 * A frame on the wire (all integers big endian; docs/wire.md has the same
 * table):
 *
 *   offset  size  field
 *   0       4     length: bytes that follow this field (2 + payload size)
 *   4       1     version: FRAME_VERSION (1)
 *   5       1     type: message type, defined by the protocol layer
 *   6       n     payload: length - 2 bytes
 *
 * The encoder writes that; the streaming decoder takes the bytes of a
 * connection in chunks of any size and hands back whole frames in order.
 * A frame whose length field is below 2, above the decoder's limit, or
 * whose version is not 1 is an error: the decoder stays failed for good and
 * the owner must close the connection (DESIGN.md section 7).
 *
 * Ownership: the caller owns struct frame_buf and struct frame_decoder
 * (usually embedded in a connection) and releases them with
 * frame_buf_fini() / frame_decoder_fini().  A struct frame handed out by
 * frame_decoder_next() points into the decoder's buffer and is valid until
 * the next call on that decoder.  (Part of common/; include common/common.h.)
 */
#ifndef DECREE_COMMON_FRAME_H
#define DECREE_COMMON_FRAME_H

#include <stddef.h>
#include <stdint.h>

/* Codes frame returns, with the message frame_strerror() gives them. */
#define FRAME_ERRORS(X)                                                        \
	X(EMSGSIZE, "frame larger than the size limit")                        \
	X(EPROTONOSUPPORT, "unsupported frame version")                        \
	X(EBADMSG, "frame length too small to hold version and type")          \
	X(ENOMEM, "out of memory")                                             \
	X(EINVAL, "invalid argument")

/* Text for a negative code from this module; "unknown frame error" else. */
const char *frame_strerror(int err);

#define FRAME_VERSION	  1
#define FRAME_HEADER_SIZE 6		    /* length + version + type */
#define FRAME_MAX_DEFAULT (16u << 20)	    /* default limit: 16 MiB */
#define FRAME_MAX_LIMIT	  (UINT32_MAX - 2u) /* largest payload encodable */

/* A decoded frame.  payload points into the decoder (see above). */
struct frame {
	uint8_t type;
	const uint8_t *payload;
	size_t len; /* payload bytes */
};

/* A growable output buffer; frames are appended to it. */
struct frame_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

void frame_buf_init(struct frame_buf *b);
/* Frees the bytes; the buffer is empty and reusable afterwards. */
void frame_buf_fini(struct frame_buf *b);
/* Forgets the contents, keeps the memory. */
void frame_buf_reset(struct frame_buf *b);

/* Bytes a frame with a payload of len bytes takes on the wire. */
size_t frame_size(size_t payload_len);

/*
 * Writes the 6-byte header of a frame with a payload of len bytes into hdr,
 * for callers that send header and payload as two buffers.  -EMSGSIZE if
 * len > FRAME_MAX_LIMIT.
 */
int frame_header_write(uint8_t hdr[FRAME_HEADER_SIZE], uint8_t type,
		       size_t len);

/*
 * Appends one frame (header + len bytes of payload; payload may be NULL
 * when len is 0) to out.  -EMSGSIZE if len > FRAME_MAX_LIMIT, -ENOMEM;
 * out is unchanged on error.  The receiver's limit is its own business:
 * a sender should keep payloads under FRAME_MAX_DEFAULT unless both ends
 * were configured otherwise.
 */
int frame_encode(uint8_t type, const void *payload, size_t len,
		 struct frame_buf *out);

struct frame_decoder {
	/* private */
	uint8_t *buf;
	size_t cap;
	size_t start; /* first byte not yet handed out */
	size_t end;   /* one past the last byte fed */
	size_t max;   /* largest accepted value of the length field */
	int err;      /* 0, or the error the decoder is stuck in */
};

/*
 * Prepares d.  max_frame limits the length field (version + type +
 * payload); 0 means FRAME_MAX_DEFAULT.  -EINVAL if max_frame is below 2 or
 * above FRAME_MAX_LIMIT + 2 (d is then unusable and needs no fini).
 */
int frame_decoder_init(struct frame_decoder *d, size_t max_frame);
void frame_decoder_fini(struct frame_decoder *d);

/*
 * Copies n bytes received from the peer into d.  Returns 0, -ENOMEM (the
 * decoder then fails for good, since bytes were lost), or the error d is
 * already stuck in.  Call frame_decoder_next() until it returns 0 after
 * every feed: the decoder buffers whatever it is given.
 */
int frame_decoder_feed(struct frame_decoder *d, const void *bytes, size_t n);

/*
 * The next complete frame.  Returns 1 and fills *f; 0 when more bytes are
 * needed; or a negative code (-EMSGSIZE, -EPROTONOSUPPORT, -EBADMSG, or
 * -ENOMEM from a feed), found as soon as the header bytes that show it have
 * arrived, after every good frame before it was handed out.  Once it has
 * returned an error it returns the same error forever.
 */
int frame_decoder_next(struct frame_decoder *d, struct frame *f);

/* Bytes fed and not yet handed out as frames. */
size_t frame_decoder_buffered(const struct frame_decoder *d);

#endif
