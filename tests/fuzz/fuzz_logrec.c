/*
 * fuzz_logrec.c - log records from a damaged or hostile disk: the decoder
 * never reads outside what it is given, and what it accepts is exactly a
 * record: encoding the decoded record again gives back the same bytes.
 * The input's first 8 bytes are the sequence number the record must have,
 * the rest the bytes at that place (the salt is fixed, so mutations of a
 * committed valid record explore the checks after the checksum too: the
 * corpus holds records whose checksums were computed for this salt).
 */
#include <errno.h>
#include <string.h>

#include "log.h"
#include "fuzz.h"

#define SALT 0x5eed5a17u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 8)
		return 0;
	uint64_t seq;
	memcpy(&seq, data, 8);
	/* A copy of exactly the bytes given, so reading past them is caught. */
	size_t n = size - 8;
	uint8_t *buf = malloc(n ? n : 1);
	if (!buf)
		return 0;
	memcpy(buf, data + 8, n);
	struct tr_logrec r;
	uint32_t len = 0;
	int rc = tr__logrec_decode(buf, n, SALT, seq, &r, &len);
	FUZZ_CHECK(rc == 0 || rc == TR_LOG_DEC_END || rc == -EBADMSG);
	if (rc == 0) {
		FUZZ_CHECK(len >= TR_LOG_REC_MIN && len <= n);
		FUZZ_CHECK(tr__logrec_spec(r.type) != NULL);
		FUZZ_CHECK(tr__logrec_size(&r) == len);
		uint8_t *again = malloc(len);
		FUZZ_CHECK(again && tr__logrec_encode(&r, again, len, SALT) == len);
		FUZZ_CHECK(memcmp(again, buf, len) == 0);
		free(again);
	}
	free(buf);
	return 0;
}
