/*
 * replay.c - runs a fuzz target over every file of its committed corpus
 * (FUZZ_CORPUS, a directory relative to the repository root), so that
 * `make check` replays, with any compiler, every input the fuzzers kept.
 * Fails when the corpus is missing or empty: a replay of nothing is no test.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

int main(void)
{
	DIR *d = opendir(FUZZ_CORPUS);
	if (!d) {
		fprintf(stderr, "replay: cannot open the corpus %s\n", FUZZ_CORPUS);
		return 1;
	}
	int n = 0;
	for (struct dirent *e; (e = readdir(d));) {
		if (e->d_name[0] == '.')
			continue;
		char path[1024];
		snprintf(path, sizeof(path), "%s/%s", FUZZ_CORPUS, e->d_name);
		FILE *f = fopen(path, "rb");
		if (!f)
			continue;
		fseek(f, 0, SEEK_END);
		long len = ftell(f);
		fseek(f, 0, SEEK_SET);
		uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
		if (!buf || (len > 0 && fread(buf, 1, (size_t)len, f) != (size_t)len)) {
			fprintf(stderr, "replay: cannot read %s\n", path);
			return 1;
		}
		fclose(f);
		LLVMFuzzerTestOneInput(buf, (size_t)len);
		free(buf);
		n++;
	}
	closedir(d);
	printf("# %d inputs of %s replayed\n", n, FUZZ_CORPUS);
	return n > 0 ? 0 : 1;
}
