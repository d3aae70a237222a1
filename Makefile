# naflops: build, test, install. See README.md.
CC ?= cc
PREFIX ?= /usr/local
BUILD ?= build

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
CFLAGS ?= -O2 -g
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE -fPIC -fvisibility=hidden $(WARN) $(CFLAGS)

CORE_SRC := $(wildcard src/*.c)
HOOK_SRC := $(wildcard hooks/*.c)
LIB := $(BUILD)/libnaflops.so
BOOTSTRAP_H := $(BUILD)/gen/py_bootstrap.h

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/unit/%,$(UNIT_SRC))
ASAN_BIN := $(patsubst tests/unit/%.c,$(BUILD)/unit-asan/%,$(UNIT_SRC))
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

PYTHON ?= $(shell scripts/setup-test-env --python)
PYTEST_ARGS ?=

# Fuzzing: a libFuzzer target for the NAFLOPS_* parser, an atheris one for the CLI's
# dump reader. Each runs FUZZ_TIME seconds; new corpus entries stay under $(BUILD)/fuzz.
FUZZ_CC ?= clang
FUZZ_TIME ?= 20
FUZZ_CONFIG := $(BUILD)/fuzz/fuzz_config

.PHONY: all unit unit-asan unit-valgrind integration test demo install clean env \
        fuzz fuzz-config fuzz-dump
all: $(LIB)

# The bootstrap Python source, as a C string literal.
$(BOOTSTRAP_H): hooks/py_bootstrap.py
	@mkdir -p $(dir $@)
	awk 'BEGIN { print "static const char nf_py_bootstrap_source[] =" } \
	     { gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); print "    \"" $$0 "\\n\"" } \
	     END { print ";" }' $< > $@

# -z defs: every symbol must resolve against libc alone, so that the library loads
# into any process (no libpython, no CUDA), even with LD_BIND_NOW=1.
$(LIB): $(CORE_SRC) $(HOOK_SRC) $(wildcard src/*.h hooks/*.h) $(BOOTSTRAP_H)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -I$(BUILD)/gen -shared -Wl,-z,defs -o $@ $(CORE_SRC) $(HOOK_SRC) -ldl -lpthread

$(BUILD)/unit/%: tests/unit/%.c tests/unit/nf_unit.h $(CORE_SRC) $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(CORE_SRC) -lcmocka -lpthread

$(BUILD)/unit-asan/%: tests/unit/%.c tests/unit/nf_unit.h $(CORE_SRC) $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -O1 $(SAN_FLAGS) -o $@ $< $(CORE_SRC) -lcmocka -lpthread

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

unit-asan: $(ASAN_BIN)
	@set -e; for t in $(ASAN_BIN); do echo "== $$t (asan+ubsan)"; $$t; done

unit-valgrind: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t (valgrind)"; \
	  valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite $$t; done

env:
	scripts/setup-test-env

integration: $(LIB) env
	NAFLOPS_LIB=$(abspath $(LIB)) $(PYTHON) -m pytest -q tests $(PYTEST_ARGS)

test: unit unit-asan unit-valgrind integration

demo: $(LIB) env
	LD_PRELOAD=$(abspath $(LIB)) $(PYTHON) scripts/demo.py

# Overhead of the counter against FlopCounterMode, torch.profiler and fvcore on the CPU
# (a few minutes); BENCH_ARGS=--quick for a short run. Table on stdout, JSON in $(BUILD).
.PHONY: bench
bench: $(LIB) env
	scripts/bench --lib $(abspath $(LIB)) --out $(BUILD)/bench.json $(BENCH_ARGS)

$(FUZZ_CONFIG): tests/fuzz/fuzz_config.c src/nf_config.c src/nf_config.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=c11 -D_GNU_SOURCE $(WARN) -g -O1 -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=all -Isrc -o $@ tests/fuzz/fuzz_config.c src/nf_config.c

fuzz-config: $(FUZZ_CONFIG)
	@mkdir -p $(BUILD)/fuzz/corpus-config
	$(FUZZ_CONFIG) -max_total_time=$(FUZZ_TIME) -dict=tests/fuzz/config.dict \
	  -artifact_prefix=$(BUILD)/fuzz/ $(BUILD)/fuzz/corpus-config

fuzz-dump: env
	@mkdir -p $(BUILD)/fuzz/corpus-dump
	$(PYTHON) tests/fuzz/fuzz_dump.py -max_total_time=$(FUZZ_TIME) -dict=tests/fuzz/dump.dict \
	  -artifact_prefix=$(BUILD)/fuzz/ $(BUILD)/fuzz/corpus-dump tests/fuzz/seeds/dump

fuzz: fuzz-config fuzz-dump

install: $(LIB)
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(LIB) $(DESTDIR)$(PREFIX)/lib/libnaflops.so
	install -m 0755 scripts/naflops $(DESTDIR)$(PREFIX)/bin/naflops

clean:
	rm -rf $(BUILD)
