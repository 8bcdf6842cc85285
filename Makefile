# decree — one top-level Makefile.
#
# Components (DESIGN.md section 4) are folders; every .c in a component folder
# goes into build/lib<component>.a.  The binary build/decree is cmd/*.c linked
# against every component library.  Tests are discovered by file name:
#   tests/unit/test_*.c, tests/sim/test_*.c, tests/integration/test_*.c  (Check)
#   tests/integration/*.sh, tests/drills/*.sh                            (shell)
# so adding a test or a source file needs no edit here.

.DEFAULT_GOAL := all

CC      ?= cc
PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build

PKGS    := libuv libpq jansson liburing
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -g -O2 -Wall -Wextra -Wpedantic -Wshadow \
               -Wno-unused-parameter -I. $(shell pkg-config --cflags $(PKGS) 2>/dev/null) \
               -I$(shell pg_config --includedir 2>/dev/null || echo /usr/include/postgresql)
ifeq ($(CI),true)
CFLAGS_BASE += -Werror
endif
SANFLAGS ?=
CFLAGS  += $(CFLAGS_BASE) $(SANFLAGS)
LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser -lpthread -lm
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null)

# Dependency order, lowest first; link order is the reverse.
COMPONENTS := common wal raft coordinator participant recovery sim
PRESENT    := $(foreach c,$(COMPONENTS),$(if $(wildcard $(c)/*.c),$(c)))
LINKORDER  := $(foreach c,$(shell echo $(PRESENT) | tr ' ' '\n' | tac),$(BUILD)/lib$(c).a)

define component
$(1)_SRC := $$(wildcard $(1)/*.c)
$(1)_OBJ := $$(patsubst %.c,$(BUILD)/%.o,$$($(1)_SRC))
$(BUILD)/lib$(1).a: $$($(1)_OBJ)
	@mkdir -p $$(@D)
	$$(AR) rcs $$@ $$^
endef
$(foreach c,$(PRESENT),$(eval $(call component,$(c))))

CMD_SRC := $(wildcard cmd/*.c)
CMD_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(CMD_SRC))

UNIT_SRC  := $(wildcard tests/unit/test_*.c)
SIM_SRC   := $(wildcard tests/sim/test_*.c)
INTEG_SRC := $(wildcard tests/integration/test_*.c)
TESTLIB_SRC := $(wildcard tests/lib/*.c)
TESTLIB_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(TESTLIB_SRC))
TEST_BINS := $(patsubst %.c,$(BUILD)/%,$(UNIT_SRC) $(SIM_SRC) $(INTEG_SRC))

BENCH_SRC  := $(wildcard bench/*/*.c)
BENCH_BINS := $(patsubst %.c,$(BUILD)/%,$(BENCH_SRC))

.PHONY: all deps check test asan ubsan bench install clean demo soak format tests
all: $(BUILD)/decree

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/decree: $(CMD_OBJ) $(LINKORDER)
	$(CC) $(CFLAGS) -o $@ $(CMD_OBJ) $(LINKORDER) $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(TESTLIB_OBJ) $(LINKORDER)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -MP -o $@ $< $(TESTLIB_OBJ) $(LINKORDER) $(LDLIBS) $(CHECK_LIBS)

$(BUILD)/bench/%: bench/%.c $(LINKORDER)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $< $(LINKORDER) $(LDLIBS)

deps:
	@scripts/deps.sh

tests: $(TEST_BINS) $(BUILD)/decree

# make check: install what is missing, build, run every test layer.
check: deps
	@$(MAKE) --no-print-directory tests
	@BUILD=$(BUILD) tests/run

test: tests
	@BUILD=$(BUILD) tests/run

# Sanitized code runs 5-20x slower: the randomized Raft safety runs use fewer
# seeds there (make check runs the full 2,000; make soak many more).
SAN_RAFT_SEEDS ?= 200

asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan \
	  SANFLAGS="-fsanitize=address -fno-omit-frame-pointer" tests
	@BUILD=build-asan ASAN_OPTIONS=detect_leaks=1 RAFT_SEEDS=$(SAN_RAFT_SEEDS) tests/run

ubsan: deps
	@$(MAKE) --no-print-directory BUILD=build-ubsan \
	  SANFLAGS="-fsanitize=undefined -fno-sanitize-recover=undefined" tests
	@BUILD=build-ubsan UBSAN_OPTIONS=print_stacktrace=1 RAFT_SEEDS=$(SAN_RAFT_SEEDS) tests/run

bench: deps $(BENCH_BINS) $(BUILD)/decree
	@for b in bench/*/run; do [ -x "$$b" ] && BUILD=$(BUILD) "$$b"; done

# one benchmark: make bench-wal, make bench-2pc, make bench-raft, ...
bench-%: deps $(BENCH_BINS) $(BUILD)/decree
	@test -x bench/$*/run || { echo "no benchmark bench/$*" >&2; exit 2; }
	@BUILD=$(BUILD) bench/$*/run

demo: deps $(BUILD)/decree
	@BUILD=$(BUILD) scripts/demo.sh

install: $(BUILD)/decree
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BUILD)/decree $(DESTDIR)$(PREFIX)/bin/decree

soak: tests
	@BUILD=$(BUILD) RAFT_SEEDS=$${RAFT_SEEDS:-100000} TEST_TIMEOUT=$${TEST_TIMEOUT:-86400} \
	  TESTS='test_raft_random' tests/run

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-ubsan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
