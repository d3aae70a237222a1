# naflops: build, test, install. See README.md.
CC ?= cc
PREFIX ?= /usr/local
BUILD ?= build

# CUPTI's headers (compile time only: libcupti is dlopen'd at run time). Without them the
# GPU part builds as stubs that say why it is off. hooks/cuda/cupti_shim holds an empty
# <string>: CUDA 13's cupti_profiler_host.h includes that C++ header around plain C
# declarations; only C is compiled with these flags.
CUDA_HOME ?= /usr/local/cuda
CUPTI_HEADER := $(firstword $(wildcard $(CUDA_HOME)/include/cupti_profiler_host.h \
                  $(CUDA_HOME)/extras/CUPTI/include/cupti_profiler_host.h))
CUPTI_CFLAGS := -DNF_CUDA_HOME=\"$(CUDA_HOME)\"
ifneq ($(CUPTI_HEADER),)
CUPTI_CFLAGS += -DNF_HAVE_CUPTI=1 -Ihooks/cuda/cupti_shim -I$(dir $(CUPTI_HEADER)) -I$(CUDA_HOME)/include
endif

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
CFLAGS ?= -O2 -g
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE -fPIC -fvisibility=hidden $(WARN) $(CFLAGS)

CORE_SRC := $(wildcard src/*.c)
HOOK_SRC := $(wildcard hooks/*.c hooks/*/*.c)
LIB := $(BUILD)/libnaflops.so
BOOTSTRAP_H := $(BUILD)/gen/py_bootstrap.h

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/unit/%,$(UNIT_SRC))
ASAN_BIN := $(patsubst tests/unit/%.c,$(BUILD)/unit-asan/%,$(UNIT_SRC))
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

PYTHON ?= $(shell scripts/setup-test-env --python)
PYTHON_017 ?= $(shell scripts/setup-test-env --python-017)
PYTHON_NEWEST ?= $(shell scripts/setup-test-env --python-newest)
PYTEST_ARGS ?=

# Fuzzing: a libFuzzer target for the NAFLOPS_* parser, an atheris one for the CLI's
# dump reader. Each runs FUZZ_TIME seconds; new corpus entries stay under $(BUILD)/fuzz.
FUZZ_CC ?= clang
FUZZ_TIME ?= 20
FUZZ_CONFIG := $(BUILD)/fuzz/fuzz_config

.PHONY: all unit unit-asan unit-valgrind integration test demo install clean env \
        fuzz fuzz-config fuzz-dump
all: $(LIB) observer-default

# The whole-model observer for the python3 on PATH, when it has torch (naflops run
# builds one for any other torch a program uses, once, into ~/.cache/naflops).
OBSERVER_PYTHON ?= python3
.PHONY: observer-default
observer-default: $(LIB)
	@if $(OBSERVER_PYTHON) -c 'import importlib.util as u, sys; sys.exit(u.find_spec("torch") is None)' \
	    2>/dev/null; then scripts/build-observer $(OBSERVER_PYTHON) $(BUILD); \
	else echo "$(OBSERVER_PYTHON) has no torch: libnaflops.so only (naflops run builds the" \
	  "whole-model observer for a program's torch when it first runs it)"; fi

# The bootstrap Python source, as one C string literal.
# In this order: one private namespace, each piece using the names of those before it.
# The finder (the last) is a second string, compiled as importlib's own file.
BOOTSTRAP_PY := hooks/python/py_bootstrap.py hooks/python/py_bootstrap_dynamo.py hooks/python/py_bootstrap_traced.py \
                hooks/python/py_bootstrap_wrap.py hooks/python/py_bootstrap_step.py \
                hooks/python/py_bootstrap_aot.py hooks/python/py_bootstrap_flex.py
BOOTSTRAP_IMPORT_PY := hooks/python/py_bootstrap_finder.py
EMBED = awk 'BEGIN { print "static const char $(1)[] =" } \
	     { gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); print "    \"" $$0 "\\n\"" } \
	     END { print ";" }'
$(BOOTSTRAP_H): $(BOOTSTRAP_PY) $(BOOTSTRAP_IMPORT_PY)
	@mkdir -p $(dir $@)
	$(call EMBED,nf_py_bootstrap_source) $(BOOTSTRAP_PY) > $@
	$(call EMBED,nf_py_bootstrap_import_source) $(BOOTSTRAP_IMPORT_PY) >> $@

# -z defs: every symbol must resolve against libc alone, so that the library loads
# into any process (no libpython, no CUDA), even with LD_BIND_NOW=1.
$(LIB): $(CORE_SRC) $(HOOK_SRC) $(wildcard src/*.h hooks/*.h hooks/*/*.h) $(BOOTSTRAP_H)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CUPTI_CFLAGS) -I$(BUILD)/gen -shared -Wl,-z,defs -o $@ $(CORE_SRC) $(HOOK_SRC) -ldl -lpthread

$(BUILD)/unit/%: tests/unit/%.c tests/unit/nf_unit.h $(CORE_SRC) $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(CORE_SRC) $(UNIT_EXTRA) -lcmocka -lpthread

$(BUILD)/unit-asan/%: tests/unit/%.c tests/unit/nf_unit.h $(CORE_SRC) $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -O1 $(SAN_FLAGS) -o $@ $< $(CORE_SRC) $(UNIT_EXTRA) -lcmocka -lpthread

# test_cupti_metrics and test_cupti_layout also build hooks/cuda/cupti_metrics.c and
# hooks/cuda/cupti_layout.c against CUPTI's headers (the toolkit's, under CUDA_HOME).
CUPTI_TESTS := $(foreach t,test_cupti_metrics test_cupti_layout,$(BUILD)/unit/$(t) $(BUILD)/unit-asan/$(t))
$(CUPTI_TESTS): UNIT_EXTRA = hooks/cuda/cupti_metrics.c hooks/cuda/cupti_layout.c $(CUPTI_CFLAGS) -ldl
$(CUPTI_TESTS): $(wildcard hooks/cuda/cupti_*.c hooks/cuda/cupti_*.h)

# The CUPTI adapter against each CUPTI header set users' torch brings (12.4, 12.8 and
# 13.2 from PyPI wheels, which scripts/fetch-cupti-headers caches in
# ~/.cache/naflops/cupti) and the toolkit's own (13.0): hooks/cuda/cupti_*.c compile with
# each (warnings are errors), and test_cupti_layout built with each checks the layout
# table against those headers and plans for every cached libcupti. Only those headers
# and the C library's are searched (-nostdinc): /usr/local/include may hold another
# CUDA's headers. Part of `make test`; needs the network the first time.
CUPTI_SYS_INC := $(shell $(CC) -xc -E -v /dev/null 2>&1 | sed -n '/search starts here:/,/End of search/p' | grep '^ /' | grep -v '^ /usr/local/include')
CUPTI_ISOLATED := -nostdinc $(addprefix -isystem ,$(CUPTI_SYS_INC))
.PHONY: cupti-versions
cupti-versions:
	@set -e; sets=$$(scripts/fetch-cupti-headers); \
	libs=$$(echo "$$sets" | while read v dir; do printf '%s=%s:' $$v $$(ls $$dir/lib/libcupti.so.* | head -1); done)13.0=$(CUDA_HOME)/lib64/libcupti.so; \
	printf '%s\n13.0 %s\n' "$$sets" "$(CUDA_HOME)" | while read v dir; do inc=$$dir/include; out=$(BUILD)/cupti-$$v; mkdir -p $$out; \
	  echo "== CUPTI $$v: hooks/cuda/cupti_*.c and test_cupti_layout with $$inc"; \
	  for f in hooks/cuda/cupti_hooks.c hooks/cuda/cupti_metrics.c hooks/cuda/cupti_layout.c; do \
	    $(CC) $(ALL_CFLAGS) $(CUPTI_ISOLATED) -DNF_HAVE_CUPTI=1 -Ihooks/cuda/cupti_shim -I$$inc -c $$f -o $$out/$$(basename $$f .c).o; done; \
	  $(CC) $(ALL_CFLAGS) $(CUPTI_ISOLATED) -DNF_HAVE_CUPTI=1 -Ihooks/cuda/cupti_shim -I$$inc -DNF_CUPTI_LIBS="\"$$libs\"" \
	    -o $$out/test_cupti_layout tests/unit/test_cupti_layout.c hooks/cuda/cupti_layout.c hooks/cuda/cupti_metrics.c $(CORE_SRC) -lcmocka -lpthread -ldl; \
	  $$out/test_cupti_layout; done

# test_natten_release also builds the target table and release classifier.
RELEASE_TESTS := $(BUILD)/unit/test_natten_release $(BUILD)/unit-asan/test_natten_release
$(RELEASE_TESTS): UNIT_EXTRA = hooks/python/natten_release.c hooks/python/natten_targets.c
$(RELEASE_TESTS): hooks/python/natten_release.c hooks/python/natten_release.h hooks/python/natten_targets.c hooks/python/natten_targets.h

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

unit-asan: $(ASAN_BIN)
	@set -e; for t in $(ASAN_BIN); do echo "== $$t (asan+ubsan)"; $$t; done

unit-valgrind: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t (valgrind)"; \
	  valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
	    --suppressions=tests/unit/valgrind.supp $$t; done

env:
	scripts/setup-test-env

# The libtorch observer (whole-model count), built against a Python's torch as
# $(BUILD)/naflops-torch-<version>.so: `make observer PYTHON=...` for any Python with
# torch; `observers` for both test environments.
.PHONY: observer observers
observer: $(LIB)
	scripts/build-observer $(PYTHON) $(BUILD)

observers: $(LIB) env
	scripts/build-observer $(PYTHON) $(BUILD)
	scripts/build-observer $(PYTHON_017) $(BUILD)
	scripts/build-observer $(PYTHON_NEWEST) $(BUILD)

integration: $(LIB) env observers
	NAFLOPS_LIB=$(abspath $(LIB)) $(PYTHON) -m pytest -q tests $(PYTEST_ARGS)

test: unit unit-asan unit-valgrind cupti-versions integration

# The demo needs one environment only (torch 2.8 + NATTEN 0.21, the first of `env`'s,
# which `make test` completes): a few minutes on a fresh machine, most of it torch.
.PHONY: demo-env
demo-env:
	scripts/setup-test-env --demo-only

demo: $(LIB) demo-env
	scripts/build-observer $(PYTHON) $(BUILD)
	LD_PRELOAD=$(abspath $(LIB)) $(PYTHON) scripts/demo.py

# A hostile job, 20 rounds in at most 5 minutes (threads, a fork worker, periodic
# flushes, SIGTERM at a random moment): every dump valid, no count lost beyond the
# documented bound. Not part of `make test`.
.PHONY: soak
soak: $(LIB) env
	scripts/soak --lib $(abspath $(LIB)) $(SOAK_ARGS)

# Overhead of the counter against FlopCounterMode, torch.profiler and fvcore on the CPU
# (a few minutes): the NA transformer step (NATTEN 0.17), the op-heavy Flex step and
# single aten ops (NATTEN 0.21, torch 2.8), then the wrapper's own cost per call
# (bench-call), a step's, modules', a compiled graph run's and an exported Flex call's
# (bench-step, bench-modules, bench-compiled-run, bench-exported-flex); BENCH_ARGS=--quick
# for a short run. Table on stdout, JSON in $(BUILD).
.PHONY: bench
bench: $(LIB) env observers
	scripts/bench --lib $(abspath $(LIB)) --out $(BUILD)/bench.json $(BENCH_ARGS)
	scripts/bench-call --lib $(abspath $(LIB))
	scripts/bench-step --lib $(abspath $(LIB))
	scripts/bench-modules --lib $(abspath $(LIB))
	scripts/bench-compiled-run --lib $(abspath $(LIB))
	scripts/bench-exported-flex --lib $(abspath $(LIB)) --python $(PYTHON_NEWEST)

# The observer compiled (not linked) against the headers of every torch minor release
# from 2.5 to the newest on PyPI, fetched with range requests; a Markdown table on
# stdout and in $(BUILD)/compat.md. Needs the network; not in CI.
.PHONY: compat
compat:
	scripts/compat-observer --out $(BUILD)/compat.md

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
	for so in $(wildcard $(BUILD)/naflops-torch-*.so); do \
	  install -m 0755 "$$so" $(DESTDIR)$(PREFIX)/lib/; done
	install -m 0755 scripts/naflops $(DESTDIR)$(PREFIX)/bin/naflops
	cd python && find naflops -name '*.py' | while read -r f; do \
	  install -D -m 0644 "$$f" "$(DESTDIR)$(PREFIX)/lib/naflops/python/$$f"; done

clean:
	rm -rf $(BUILD)
