/*
 * fuzz_region.c - a region file written by someone else (or scribbled on):
 * opening it either refuses it with an error, or gives a store whose every
 * read call (store and queue counts, listing, each job's state, info, JSON,
 * payload, result, errors, dependencies and dependents) returns a value or
 * an error, reading nothing outside the mapping. The input is the whole
 * file; the committed corpus holds a small valid store with jobs in every
 * state, so mutations reach the slot table and the arena.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "taskring.h"
#include "fuzz.h"

static void read_job(const struct taskring_job *j)
{
	char buf[8192];
	size_t len;
	struct taskring_job_info in;
	struct taskring_error_record er[4];
	struct taskring_job many[8];
	int st = taskring_job_status(j);
	FUZZ_CHECK(st == -ENOENT || st == -EINVAL || (st >= 0 && st < TASKRING_STATUS_COUNT));
	taskring_job_info(j, &in);
	taskring_job_to_json(j, buf, sizeof(buf));
	taskring_job_payload(j, buf, sizeof(buf), &len);
	taskring_job_result(j, 0, buf, sizeof(buf), &len);
	taskring_job_error(j, buf, sizeof(buf));
	taskring_job_errors(j, er, 4);
	taskring_job_dependencies(j, many, 8);
	taskring_job_dependents(j, many, 8);
	taskring_job_progress(j);
	char id[TASKRING_ID_LEN + 1];
	if (taskring_job_id(j, id) == 0) {
		struct taskring_job again;
		taskring_job_lookup(j->store, id, &again);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	if (!path[0])
		snprintf(path, sizeof(path), "/dev/shm/taskring-fuzz-%d", (int)getpid());
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return 0;
	if (size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	close(fd);
	struct taskring_store_opts o;
	memset(&o, 0, sizeof(o));
	o.flags = TASKRING_STORE_NOCREATE;
	struct taskring_store *st = NULL;
	int rc = taskring_store_open(path, &o, &st);
	if (rc == 0) {
		struct taskring_store_info si;
		struct taskring_queue_stats qs;
		taskring_store_info(st, &si);
		taskring_queue_stats(st, NULL, &qs);
		taskring_queue_stats(st, "default", &qs);
		uint64_t cur = 0;
		struct taskring_job j;
		for (int k = 0; k < 64 && taskring_job_next(st, 0, NULL, NULL, &cur, &j) == 1; k++)
			read_job(&j);
		FUZZ_CHECK(taskring_store_close(st) == 0);
	} else {
		FUZZ_CHECK(rc < 0);
	}
	unlink(path);
	return 0;
}
