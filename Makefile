# remex — top-level build.
#
#   make                 libremex + every binary under cmd/
#   make test            unit tests, then integration tests (SAN=1: sanitizer build)
#   make sanitize        same as make test SAN=1
#   make lint            clang-format check, banned-function checker, cppcheck
#   make fuzz            libFuzzer targets, FUZZ_SECONDS each (default 30)
#   make bench           benchmark drivers in bench/
#   make run             plane + worker + example DAGs on this machine (RUN_ONCE=1: one run)
#   make install         PREFIX=/usr/local DESTDIR= [SYSTEMDUNITDIR=/lib/systemd/system]
#
# Layout rules that keep this file stable:
#   lib/*.c              -> build/libremex.a
#   cmd/<name>/*.c       -> build/bin/<name>
#   test/unit/test_*.c   -> build/test/test_*   (cmocka, linked with libremex.a)
#   test/fuzz/fuzz_*.c   -> build/fuzz/fuzz_*   (clang, libFuzzer)
#   bench/*.c            -> build/bench/*
#   cmd/remex-plane/ui/* -> build/gen/ui_assets.c (mk/ui-embed.py), linked into remex-plane

SHELL := /bin/bash
.DEFAULT_GOAL := all

SAN ?= 0
PREFIX ?= /usr/local
DESTDIR ?=
# Where make install puts the systemd units (their ExecStart names $(PREFIX)/bin); set it to
# /lib/systemd/system for systemd to find them.
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
FUZZ_SECONDS ?= 30

ifeq ($(SAN),1)
BUILD ?= build/san
else
BUILD ?= build
endif

CC ?= cc
PKGS := libcurl jansson yaml-0.1 openssl libgit2 libjwt libmicrohttpd gnutls sqlite3
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_LIBS = $(shell pkg-config --libs cmocka 2>/dev/null)

WARN := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral -Wno-format-truncation \
	-Wmissing-prototypes -Wstrict-prototypes -Wvla
CPPFLAGS += -Iinclude -D_GNU_SOURCE
CFLAGS ?= -O2 -g
CFLAGS += -std=c11 $(WARN) -fno-strict-aliasing -pipe
LDLIBS += -lpthread -lm
# Each binary records only the libraries it calls (gcc adds this by default
# except with -fsanitize; clang never does): the worker loads no SQLite,
# libmicrohttpd or libjwt.
LDFLAGS += -Wl,--as-needed

ifeq ($(SAN),1)
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
CFLAGS := $(filter-out -O2,$(CFLAGS)) -O1 $(SANFLAGS)
LDFLAGS += $(SANFLAGS)
endif

LIB_SRC := $(sort $(wildcard lib/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
LIB := $(BUILD)/libremex.a

CMDS := $(sort $(notdir $(patsubst %/,%,$(dir $(wildcard cmd/*/main.c)))))
BINS := $(CMDS:%=$(BUILD)/bin/%)

UNIT_SRC := $(sort $(wildcard test/unit/test_*.c))
UNIT_BINS := $(UNIT_SRC:test/unit/%.c=$(BUILD)/test/%)
UNIT_HELPER_SRC := $(sort $(wildcard test/unit/helper_*.c))
UNIT_HELPER_OBJ := $(UNIT_HELPER_SRC:%.c=$(BUILD)/obj/%.o)

BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCH_BINS := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

FUZZ_SRC := $(sort $(wildcard test/fuzz/fuzz_*.c))
FUZZ_TARGETS := $(FUZZ_SRC:test/fuzz/%.c=%)
FUZZ_BUILD := build/fuzz
FUZZ_CC ?= clang
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-std=c11 -Iinclude -D_GNU_SOURCE -DREMEX_FUZZ=1
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o)

DEPFILES := $(shell find $(BUILD) $(FUZZ_BUILD) -name '*.d' 2>/dev/null)

.PHONY: all deps lib bins unit test prism helm-tools s3rver azurite sanitize lint format fuzz fuzz-build bench install clean run

all: bins

# deps: verifies the Debian packages (installs them as root); order-only everywhere below.
deps:
	@bash mk/deps.sh

lib: $(LIB)
bins: $(BINS) $(LIB)

$(BUILD)/obj/%.o: %.c | deps
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(@D)
	@rm -f $@
	$(AR) rcs $@ $^

# Each binary: every .c in cmd/<name>/ (secondary expansion lists them).
.SECONDARY:
.SECONDEXPANSION:
$(BUILD)/bin/%: $$(addprefix $(BUILD)/obj/,$$(subst .c,.o,$$(wildcard cmd/$$*/*.c))) $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LIB) $(PKG_LIBS) $(LDLIBS)

# The web UI's files, compiled into remex-plane as static arrays.
UI_FILES := $(sort $(wildcard cmd/remex-plane/ui/*))
UI_GEN := $(BUILD)/gen/ui_assets.c
$(UI_GEN): $(UI_FILES) mk/ui-embed.py
	@mkdir -p $(@D)
	python3 mk/ui-embed.py cmd/remex-plane/ui $@
$(BUILD)/obj/gen/ui_assets.o: $(UI_GEN) cmd/remex-plane/ui_assets.h | deps
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Icmd/remex-plane $(CFLAGS) -c $< -o $@
$(BUILD)/bin/remex-plane: $(BUILD)/obj/gen/ui_assets.o

$(BUILD)/test/%: $(BUILD)/obj/test/unit/%.o $(UNIT_HELPER_OBJ) $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(UNIT_HELPER_OBJ) $(LIB) $(CMOCKA_LIBS) $(PKG_LIBS) $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(PKG_LIBS) $(LDLIBS)

unit: $(UNIT_BINS)

test: bins unit prism helm-tools s3rver azurite
	@python3 test/run.py --build $(BUILD) --san $(SAN)

# The pinned Prism CLI of the OpenAPI contract test (build/node/prism/).
prism:
	@bash mk/prism.sh

# Helm 3.17 and the Kubernetes schema validators of the chart tests (build/tools/helm/,
# build/node/kmodels/).
helm-tools:
	@bash mk/helm.sh
# The pinned S3 server of the S3 object-store tests (build/node/s3rver/).
s3rver:
	@bash mk/s3rver.sh

# The pinned Azure Storage emulator of the Azure Blob tests (build/node/azurite/).
azurite:
	@bash mk/azurite.sh

sanitize:
	@$(MAKE) --no-print-directory test SAN=1

valgrind: unit
	@bash mk/valgrind.sh $(BUILD)

lint: | deps
	@bash mk/lint.sh

format:
	@clang-format -i $$(git ls-files -co --exclude-standard '*.c' '*.h')

$(FUZZ_BUILD)/obj/%.o: %.c | deps
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(PKG_CFLAGS) -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/%: test/fuzz/%.c $(FUZZ_LIB_OBJ)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(PKG_CFLAGS) -o $@ $< $(FUZZ_LIB_OBJ) $(PKG_LIBS) -lpthread -lm

fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/%)

fuzz: fuzz-build
	@bash mk/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# The whole system on this machine (see mk/run.sh); RUN_ONCE=1 exits after the example run.
run: bins
	@bash mk/run.sh

bench: bins $(BENCH_BINS)
	@bash mk/bench.sh $(BUILD)

install: bins
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/remex
	$(if $(BINS),install -m 0755 $(BINS) $(DESTDIR)$(PREFIX)/bin/)
	install -m 0644 $(LIB) $(DESTDIR)$(PREFIX)/lib/
	install -m 0644 include/remex/*.h $(DESTDIR)$(PREFIX)/include/remex/
	install -d $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(PREFIX)/share/doc/remex
	for u in deploy/systemd/*.service; do \
		sed -e 's|/usr/local/bin/|$(PREFIX)/bin/|g' \
		    -e 's|/usr/local/share/doc/|$(PREFIX)/share/doc/|g' "$$u" \
		    > $(DESTDIR)$(SYSTEMDUNITDIR)/$${u##*/} && \
		chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$${u##*/} || exit 1; \
	done
	install -m 0644 README.md docs/*.md $(DESTDIR)$(PREFIX)/share/doc/remex/

clean:
	rm -rf build

-include $(DEPFILES)
