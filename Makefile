# mdlc: a static-analysis compiler for neural-network training steps.
# `make` builds build/mdlc; `make demo`, `make test`, `make check` (ASan and
# UBSan), `make gpu-test` (on a GPU machine), `make bench`, `make clean`.

CC        ?= gcc
NVCC      ?= $(CUDA_HOME)/bin/nvcc
CUDA_HOME ?= /usr/local/cuda
CUDNN_HOME ?=
CUDA_ARCH ?= sm_90
BUILD     ?= build
FLEX      ?= flex
BISON     ?= bison

WARN    := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes \
           -Wmissing-prototypes -Wno-unused-parameter -Wswitch-enum
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_POSIX_C_SOURCE=200809L $(WARN) -I. -I$(BUILD)
LDLIBS  += -lm

# Sources: every .c under these folders is part of mdlc.
SRC_DIRS := ir ops frontend passes backend/report backend/cpu backend/cuda
SRCS     := driver.c max_batch.c util.c diag.c $(foreach d,$(SRC_DIRS),$(wildcard $(d)/*.c))
GEN_SRCS := $(BUILD)/grammar/parser.c $(BUILD)/grammar/lexer.c
OBJS     := $(SRCS:%.c=$(BUILD)/%.o) $(GEN_SRCS:.c=.o)

all: $(BUILD)/mdlc

# ---- flex and bison: found, installed (root) or explained -------------
tools:
	@command -v $(FLEX) >/dev/null && command -v $(BISON) >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing flex and bison (apt-get)"; \
	    apt-get update -qq && apt-get install -y -qq flex bison >/dev/null; \
	  else \
	    echo "mdlc needs flex and bison: sudo apt-get install -y flex bison"; \
	    exit 1; \
	  fi; }

$(BUILD)/grammar/parser.c $(BUILD)/grammar/parser.h &: grammar/parser.y | tools
	@mkdir -p $(dir $@)
	$(BISON) -Wall -Werror --defines=$(BUILD)/grammar/parser.h \
	  -o $(BUILD)/grammar/parser.c $<

$(BUILD)/grammar/lexer.c $(BUILD)/grammar/lexer.h &: grammar/lexer.l \
    $(BUILD)/grammar/parser.h | tools
	@mkdir -p $(dir $@)
	$(FLEX) --header-file=$(BUILD)/grammar/lexer.h -o $(BUILD)/grammar/lexer.c $<

# Generated code is not held to our warning set.
$(BUILD)/grammar/%.o: $(BUILD)/grammar/%.c
	$(CC) $(CFLAGS) -Wno-unused-function -Wno-sign-compare \
	  -Wno-missing-prototypes -Wno-shadow -Wno-switch-enum -MMD -MP -c -o $@ $<

$(BUILD)/%.o: %.c | $(BUILD)/grammar/parser.h $(BUILD)/grammar/lexer.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/mdlc: $(OBJS)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

# ---- the CUDA runtime library (runtime/), built with nvcc -------------
CUDNN_INC := $(firstword $(CUDNN_HOME:%=%/include) \
  $(wildcard $(CUDA_HOME)/include/cudnn.h:%/cudnn.h=%) \
  $(wildcard /usr/include/x86_64-linux-gnu/cudnn.h))
RT_SRCS := $(wildcard runtime/*.cu)
RT_OBJS := $(RT_SRCS:%.cu=$(BUILD)/%.o)
NVFLAGS ?= -O3 -arch=$(CUDA_ARCH) -std=c++17 -Iruntime \
  -I/usr/include/x86_64-linux-gnu -Xcompiler -Wall

$(BUILD)/runtime/%.o: runtime/%.cu runtime/mdlrt.h runtime/mdlrt_dev.cuh \
    runtime/mdlrt_rng.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c -o $@ $<

$(BUILD)/libmdlrt.a: $(RT_OBJS)
	ar rcs $@ $^

runtime: $(BUILD)/libmdlrt.a

# ---- demo, tests, sanitizers -------------------------------------------
demo: $(BUILD)/mdlc
	$(BUILD)/mdlc --peak examples/gpt2_small.mdl

# Unit tests are built with the flags mdlc was built with.
TEST_ENV = BUILD=$(BUILD) NVCC=$(NVCC) CC="$(CC)" CFLAGS="$(CFLAGS)" \
  LDFLAGS="$(LDFLAGS)"

test: $(BUILD)/mdlc
	@$(TEST_ENV) sh tests/run.sh

# Rewrites tests/golden/*.out from the current mdlc: review them as a diff.
golden: $(BUILD)/mdlc
	@$(TEST_ENV) sh tests/run.sh --golden

# CFLAGS and LDFLAGS go through the environment, not the command line, so
# that the Makefile's `CFLAGS += ...` (standard, warnings, -I) still applies.
check:
	CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -DMDLC_VERIFY" \
	LDFLAGS="-fsanitize=address,undefined" $(MAKE) BUILD=build-check test

gpu-test: $(BUILD)/mdlc $(BUILD)/libmdlrt.a
	@BUILD=$(BUILD) sh tests/gpu/run.sh

bench: $(BUILD)/mdlc
	@BUILD=$(BUILD) sh bench/run.sh

clean:
	rm -rf build build-check build-*

.PHONY: all tools runtime demo test golden check gpu-test bench clean

-include $(OBJS:.o=.d)
