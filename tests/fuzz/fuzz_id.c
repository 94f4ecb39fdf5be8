/*
 * fuzz_id.c - job ids from anywhere: the parser accepts exactly the
 * canonical form (36 characters, hyphens at 8, 13, 18 and 23, lower- or
 * upper-case hex), and what it accepts formats back to the same id; a
 * lookup of any string in a live store returns a job or an error, never
 * something in between.
 */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "taskring.h"
#include "internal.h"
#include "fuzz.h"

static struct taskring_store *store;

static int canonical(const char *t)
{
	if (strlen(t) != 36)
		return 0;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (t[i] != '-')
				return 0;
		} else if (!isxdigit((unsigned char)t[i])) {
			return 0;
		}
	}
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!store) {
		struct taskring_store_opts o;
		memset(&o, 0, sizeof(o));
		o.slots = 64;
		o.max_payload = 256;
		o.arena_bytes = 1 << 16;
		if (taskring_store_open(NULL, &o, &store) || taskring_task_declare(store, "t"))
			abort();
		for (int i = 0; i < 8; i++)
			taskring_enqueue(store, "t", "x", 1, NULL, NULL);
	}
	char text[128];
	size_t n = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
	memcpy(text, data, n);
	text[n] = 0;

	uint8_t u[16];
	int rc = tr__uuid_parse(text, u);
	FUZZ_CHECK((rc == 0) == canonical(text));
	if (rc == 0) {
		char back[40];
		tr__uuid_format(u, back);
		for (int i = 0; i < 36; i++)
			FUZZ_CHECK(back[i] == tolower((unsigned char)text[i]));
	}
	struct taskring_job j;
	memset(&j, 0x5a, sizeof(j));
	rc = taskring_job_lookup(store, text, &j);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOENT);
	if (rc == 0) {
		char id[TASKRING_ID_LEN + 1], json[4096];
		FUZZ_CHECK(taskring_job_id(&j, id) == 0 && !strcasecmp(id, text));
		FUZZ_CHECK(taskring_job_status(&j) >= 0);
		FUZZ_CHECK(taskring_job_to_json(&j, json, sizeof(json)) > 0);
	}
	return 0;
}
