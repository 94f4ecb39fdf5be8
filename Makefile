# taskring - one GNU Makefile builds the library, the tools, the tests and the benchmarks.
#
#   make            libtaskring.a, libtaskring.so.$(MAJOR), taskring.pc, tools
#   make check      all tests (cmocka), each in its own process with a timeout
#   make check SANITIZE=address,undefined   (or SANITIZE=thread): the same, instrumented
#   make demo       build everything (installing packages if needed) and run the demo
#   make bench      benchmarks; one JSON object per scenario per line
#   make bench-peers   taskring beside beanstalkd, redis, SQLite and the transport
#                   floors (installs and starts the peers; bench/peers/run.sh)
#   make fuzz / fuzz-seeds   libFuzzer runs / rewrite the region target's seed
#   make deps       install the Debian packages the build and the tests need
#   make install / uninstall   honour PREFIX and DESTDIR (the library, the header,
#                   taskring.pc, the tool and the manual pages)
#   V=1             show the commands

MAJOR := 0
MINOR := 1
PATCH := 0
VERSION := $(MAJOR).$(MINOR).$(PATCH)

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
MANDIR ?= $(PREFIX)/share/man

CC ?= cc
PKG_CONFIG ?= pkg-config
# libncurses-dev: `taskring top`. The CLI's test drives the tool with
# python3, parses its metrics with python3-prometheus-client, runs `top`
# under tmux, and lints the manual pages with mandoc and groff.
DEB_PACKAGES := liburing-dev libxxhash-dev libcmocka-dev pkg-config python3 strace libncurses-dev \
	python3-prometheus-client tmux mandoc groff-base
# What `make bench-peers` needs besides: the real peers, their client
# libraries, and gnuplot for the latency plot.
PEER_PACKAGES := beanstalkd redis-server redis-tools libhiredis-dev libsqlite3-dev gnuplot-nox

ifeq ($(V),1)
Q :=
else
Q := @
endif

# A sanitizer build lives in its own directory so it never mixes objects with
# the normal one.
ifneq ($(SANITIZE),)
BUILD ?= build-$(subst $(comma),-,$(SANITIZE))
SAN_FLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -g
# UBSan reports and carries on by default: make every finding fail its test.
ifneq ($(findstring undefined,$(SANITIZE)),)
SAN_FLAGS += -fno-sanitize-recover=undefined
endif
else
BUILD ?= build
SAN_FLAGS :=
endif
comma := ,

# Required flags; user CFLAGS/LDFLAGS add to them, never replace them.
REQ_CFLAGS := -std=gnu11 -D_GNU_SOURCE -Iinclude -Isrc -fPIC -fvisibility=hidden \
	-Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter \
	-pthread $(SAN_FLAGS)
OPT_CFLAGS ?= -O2 -g
REQ_LDFLAGS := -pthread $(SAN_FLAGS)
DEPS_CFLAGS = $(shell $(PKG_CONFIG) --cflags liburing libxxhash 2>/dev/null)
DEPS_LIBS = $(shell $(PKG_CONFIG) --libs liburing libxxhash 2>/dev/null || echo -luring -lxxhash)
LIBS = $(DEPS_LIBS) -lrt

override ALL_CFLAGS = $(REQ_CFLAGS) $(DEPS_CFLAGS) $(OPT_CFLAGS) $(CFLAGS)
override ALL_LDFLAGS = $(REQ_LDFLAGS) $(LDFLAGS)

LIB_SRCS := $(wildcard src/*.c)
LIB_OBJS := $(patsubst src/%.c,$(BUILD)/src/%.o,$(LIB_SRCS))
LIB_HDRS := include/taskring.h $(wildcard src/*.h)

STATIC := $(BUILD)/libtaskring.a
SHARED := $(BUILD)/libtaskring.so.$(VERSION)
SONAME := libtaskring.so.$(MAJOR)

TOOLS := $(BUILD)/taskring
TOOL_SRCS := $(wildcard tools/*.c)
NCURSES_CFLAGS = $(shell $(PKG_CONFIG) --cflags ncursesw 2>/dev/null)
NCURSES_LIBS = $(shell $(PKG_CONFIG) --libs ncursesw 2>/dev/null || echo -lncursesw -ltinfo)
# Manual pages: taskring(1), taskring(7), one taskring_*(3) per public function.
MAN_PAGES := $(wildcard man/man1/*.1 man/man3/*.3 man/man7/*.7)
# Test programs that are not cmocka programs: the CLI's (Python, driving
# $(BUILD)/taskring with $(BUILD)/tests/cli_worker) and the manual pages'.
SCRIPT_TESTS := tests/test_cli.py tests/test_man.sh
TEST_SRCS := $(wildcard tests/test_*.c)
TESTS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRCS))
# Fuzz targets (tests/fuzz/fuzz_NAME.c): `make check` replays each one's
# committed corpus (tests/fuzz/corpus/NAME) with any compiler; `make fuzz`
# runs each under clang's libFuzzer for FUZZ_SECONDS.
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_REPLAYS := $(patsubst %,$(BUILD)/tests/fuzz_%_replay,$(FUZZ_TARGETS))
FUZZ_SECONDS ?= 300
FUZZ_BUILD ?= build-fuzz
BENCH_SRCS := $(wildcard bench/*.c)
BENCHES := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRCS))

CMOCKA_CFLAGS = $(shell $(PKG_CONFIG) --cflags cmocka 2>/dev/null)
CMOCKA_LIBS = $(shell $(PKG_CONFIG) --libs cmocka 2>/dev/null || echo -lcmocka)

.PHONY: all lib tools tests benches check demo bench bench-peers peers deps deps-peers install uninstall clean fuzz fuzz-seeds FORCE
FORCE:
.DEFAULT_GOAL := all

all: lib tools $(BUILD)/taskring.pc

lib: $(STATIC) $(SHARED)

$(BUILD)/src/%.o: src/%.c $(LIB_HDRS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(STATIC): $(LIB_OBJS)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(SHARED): $(LIB_OBJS) src/taskring.map
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=src/taskring.map -Wl,-z,defs \
		$(ALL_LDFLAGS) -o $@ $(LIB_OBJS) $(LIBS)
	$(Q)ln -sf libtaskring.so.$(VERSION) $(BUILD)/$(SONAME)
	$(Q)ln -sf $(SONAME) $(BUILD)/libtaskring.so

# Regenerated on every run: PREFIX may differ between `make` and
# `make install PREFIX=...`.
$(BUILD)/taskring.pc: taskring.pc.in Makefile FORCE
	@mkdir -p $(dir $@)
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
		-e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' $< > $@

tools: $(TOOLS)

$(BUILD)/taskring: $(TOOL_SRCS) tools/cli.h $(STATIC) include/taskring.h
	@$(if $(Q),echo "  CCLD    $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(NCURSES_CFLAGS) -o $@ $(TOOL_SRCS) $(STATIC) $(ALL_LDFLAGS) $(LIBS) $(NCURSES_LIBS) -lm

# Tests link the static library (so internal symbols are reachable through
# src/*.h) and cmocka.
tests: $(TESTS)

$(BUILD)/tests/%: tests/%.c tests/testutil.h tests/logsim.h tests/invariants.h $(STATIC) include/taskring.h
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CCLD    $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(CMOCKA_CFLAGS) -o $@ $< $(STATIC) $(ALL_LDFLAGS) $(CMOCKA_LIBS) $(LIBS) -lm

$(BUILD)/tests/fuzz_%_replay: tests/fuzz/fuzz_%.c tests/fuzz/replay.c tests/fuzz/fuzz.h $(STATIC) include/taskring.h
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CCLD    $@")
	$(Q)$(CC) $(ALL_CFLAGS) -Itests/fuzz -DFUZZ_CORPUS='"tests/fuzz/corpus/$*"' -o $@ $< tests/fuzz/replay.c \
		$(STATIC) $(ALL_LDFLAGS) $(LIBS)

check: all tests $(FUZZ_REPLAYS) $(BUILD)/tests/cli_worker
	$(Q)BUILD=$(BUILD) SANITIZE=$(SANITIZE) tests/run.sh $(TESTS) $(FUZZ_REPLAYS) $(SCRIPT_TESTS)

# Each target under libFuzzer (clang, with ASan and UBSan) for FUZZ_SECONDS;
# new inputs go to $(FUZZ_BUILD)/corpus-NAME (copy the useful ones into
# tests/fuzz/corpus/NAME to keep them). Needs clang and Debian's
# libclang-rt-14-dev (`make deps` does not install them: CI does not fuzz).
fuzz:
	$(Q)set -e; mkdir -p $(FUZZ_BUILD); for t in $(FUZZ_TARGETS); do \
		echo "  FUZZ    $$t ($(FUZZ_SECONDS) s)"; \
		clang -std=gnu11 -D_GNU_SOURCE -Iinclude -Isrc -Itests/fuzz -pthread -g -O1 \
			-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined $(DEPS_CFLAGS) \
			-o $(FUZZ_BUILD)/fuzz_$$t tests/fuzz/fuzz_$$t.c $(LIB_SRCS) $(LIBS); \
		mkdir -p $(FUZZ_BUILD)/corpus-$$t; \
		$(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=4096 \
			$(FUZZ_BUILD)/corpus-$$t tests/fuzz/corpus/$$t; \
	done

# The region target's seed store, written anew (after a region format change).
fuzz-seeds: $(STATIC)
	$(Q)$(CC) $(ALL_CFLAGS) -o $(BUILD)/region_seed tests/fuzz/seeds/region_seed.c $(STATIC) $(ALL_LDFLAGS) $(LIBS)
	$(Q)$(BUILD)/region_seed tests/fuzz/corpus/region/store

benches: $(BENCHES)

$(BUILD)/bench/%: bench/%.c bench/common.h bench/clock.h $(STATIC) include/taskring.h
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CCLD    $@")
	$(Q)$(CC) $(ALL_CFLAGS) -O2 -o $@ $< $(STATIC) $(ALL_LDFLAGS) $(LIBS) -lm

bench: benches
	$(Q)BUILD=$(BUILD) bench/run.sh

# bench/peers links hiredis and SQLite, which only `make deps-peers`
# installs: it is built by its own target, never by `make benches`, and its
# flags are read when the recipe runs (after the install).
PEERS_SRCS := $(wildcard bench/peers/*.c)
peers: $(BUILD)/bench/peers

$(BUILD)/bench/peers: $(PEERS_SRCS) bench/peers/peer.h bench/common.h bench/clock.h $(STATIC) include/taskring.h
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CCLD    $@")
	$(Q)$(CC) $(ALL_CFLAGS) $$($(PKG_CONFIG) --cflags hiredis sqlite3) -O2 -o $@ $(PEERS_SRCS) $(STATIC) \
		$(ALL_LDFLAGS) $(LIBS) $$($(PKG_CONFIG) --libs hiredis sqlite3) -lm

bench-peers: deps-peers
	$(Q)$(MAKE) --no-print-directory peers
	$(Q)BUILD=$(BUILD) bench/peers/run.sh

demo:
	$(Q)$(MAKE) --no-print-directory deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(BUILD)/taskring demo

# Installs the Debian packages only when one is missing, so it is quick and
# needs no root on a machine that has them.
deps:
	$(Q)$(call install_debs,$(DEB_PACKAGES))

deps-peers: deps
	$(Q)$(call install_debs,$(PEER_PACKAGES))

define install_debs
	missing=""; for p in $(1); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
endef

install: all
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 644 include/taskring.h $(DESTDIR)$(INCLUDEDIR)/taskring.h
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/libtaskring.a
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/libtaskring.so.$(VERSION)
	ln -sf libtaskring.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libtaskring.so
	install -m 644 $(BUILD)/taskring.pc $(DESTDIR)$(PKGCONFIGDIR)/taskring.pc
	install -m 755 $(BUILD)/taskring $(DESTDIR)$(BINDIR)/taskring
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3 $(DESTDIR)$(MANDIR)/man7
	install -m 644 $(filter man/man1/%,$(MAN_PAGES)) $(DESTDIR)$(MANDIR)/man1
	install -m 644 $(filter man/man3/%,$(MAN_PAGES)) $(DESTDIR)$(MANDIR)/man3
	install -m 644 $(filter man/man7/%,$(MAN_PAGES)) $(DESTDIR)$(MANDIR)/man7

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/taskring.h $(DESTDIR)$(LIBDIR)/libtaskring.a \
		$(DESTDIR)$(LIBDIR)/libtaskring.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME) \
		$(DESTDIR)$(LIBDIR)/libtaskring.so $(DESTDIR)$(PKGCONFIGDIR)/taskring.pc \
		$(DESTDIR)$(BINDIR)/taskring $(addprefix $(DESTDIR)$(MANDIR)/,$(MAN_PAGES:man/%=%))

clean:
	rm -rf build build-*
