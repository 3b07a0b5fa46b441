/* tests/unit/size_parse.c: sizes as the command line reads them (util.c's
 * size_parse), each expected value written as the arithmetic it stands for:
 * decimal units are powers of 1000, binary ones powers of 1024, any case,
 * a decimal fraction allowed, a fraction of a byte dropped (toward zero);
 * negative, overflowing and malformed sizes refused with the reason. */
#include "check.h"

#include <string.h>

static void ok(const char *s, int64_t want) {
  int64_t got = -1;
  const char *why = "";
  bool r = size_parse(s, &got, &why);
  CHECK(r && got == want, "'%s': got %s %lld (%s), want %lld", s,
        r ? "ok" : "refused", (long long)got, r ? "" : why, (long long)want);
}

static void bad(const char *s, const char *reason) {
  int64_t got = -1;
  const char *why = "";
  bool r = size_parse(s, &got, &why);
  CHECK(!r && strstr(why, reason), "'%s': got %s %lld (%s), want refused: %s",
        s, r ? "ok" : "refused", (long long)got, why, reason);
}

int main(void) {
  const int64_t K = 1000, Ki = 1024;
  ok("1234", 1234);
  ok("100B", 100);
  ok("4_096", 4096);
  ok("1.5GiB", 3 * (Ki * Ki * Ki / 2));
  ok("47.4GB", 474 * K * K * K / 10);
  ok("14.3GB", 143 * K * K * K / 10);
  ok("15gb", 15 * K * K * K);
  ok("512mib", 512 * Ki * Ki);
  ok("8GIB", 8 * Ki * Ki * Ki);
  ok("64kib", 64 * Ki);
  ok("2.5TiB", 5 * Ki * Ki * Ki * Ki / 2);
  ok("1 GiB", Ki * Ki * Ki);
  ok("1_024KiB", Ki * Ki);
  ok("0.1KiB", 102);     /* 102.4 B: the fraction of a byte is dropped */
  ok("1.999B", 1);
  ok("1.0001KB", 1000);  /* 1000.1 B */
  ok("0.5", 0);
  ok("0B", 0);
  ok("0.000000000001TiB", 1);         /* 2^40 / 10^12 = 1.0995 B */
  ok("0.000000000000000001TiB", 0);   /* 18 decimals: 1.1e-6 B */
  ok("9223372036854775807", INT64_MAX);
  /* (2^33 - 1) GiB + floor(0.99999999999 GiB) = 2^63 - 2^30 + 2^30 - 1 */
  ok("8589934591.99999999999GiB", INT64_MAX);
  bad("-1GiB", "negative");
  bad("-0.5GB", "negative");
  bad("9223372036854775808", "too large");
  bad("8589934592GiB", "too large");      /* 2^63 */
  bad("99999999999999999999999", "too large");
  bad("", "not a size");
  bad("GiB", "not a size");
  bad("1.", "not a size");
  bad(".5GiB", "not a size");
  bad("15G", "unknown unit 'G'");
  bad("6GB5", "unknown unit 'GB5'");
  bad("1e9", "unknown unit 'e9'");
  bad("1.5 GiBs", "unknown unit");
  bad("0.0000000000000000001B", "more than 18 decimals");
  if (failures) return 1;
  printf("size_parse: all cases as written\n");
  return 0;
}
