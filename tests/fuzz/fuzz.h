/*
 * fuzz.h - what the fuzz targets share. Each fuzz_*.c defines
 * LLVMFuzzerTestOneInput(): built with clang's libFuzzer by `make fuzz`, and
 * with replay.c (a main that feeds it every file of its committed corpus)
 * by `make check`. A target aborts (FUZZ_CHECK) when a property fails, so a
 * violation is a crash either way.
 */
#ifndef TASKRING_FUZZ_H
#define TASKRING_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                  \
	do {                                                                              \
		if (!(cond)) {                                                            \
			fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                          \
		}                                                                         \
	} while (0)

#endif
