#!/bin/sh
# bench/placement.sh: builds bench/placement.c against mdlc's objects (as
# the unit tests are) and prints its table. BUILD=build-x sh bench/placement.sh
BUILD=${BUILD:-build}
objs=$(ls $BUILD/*.o $BUILD/*/*.o $BUILD/backend/*/*.o | grep -v '/driver.o$')
${CC:-cc} -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -I. -I$BUILD \
  bench/placement.c $objs -lm -o $BUILD/bench_placement && $BUILD/bench_placement
