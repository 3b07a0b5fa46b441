/* tests/unit/cpu_scan.c: the CPU reference of selective_scan and conv1d
 * (backend/cpu/scan.c) against values computed another way here.
 *
 * Scan forward: the closed form, in double,
 *   y_t = sum_s sum_{u<=t} c_t exp(A sum_{r=u+1..t} dt_r) dt_u b_u x_u
 *         + Dskip x_t,
 * which never runs the recurrence. Scan backward: every gradient (x, dt, b,
 * c, A_log, Dskip) against central finite differences of the closed form's
 * L = sum_i r_i y_i (random fixed r, h = 1e-5, all in double), with dy = r.
 * conv1d: a case worked by hand, then causal, grouped, strided and dilated
 * cases against a direct formula over an explicitly padded input, and their
 * gradients by finite differences of that formula.
 * Tolerance: |got - want| <= 2e-5 + 2e-4 |want| (the reference rounds to
 * f32 once). Prints the worst element of each check; exits 1 on failure.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static uint64_t rng = 88172645463325252ull;
static double urand(void) { /* xorshift64, in [0, 1) */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (double)(rng >> 11) * (1.0 / 9007199254740992.0);
}

static float *rnd(int64_t n, double lo, double hi) {
  float *p = malloc((size_t)n * sizeof *p);
  if (!p) abort();
  for (int64_t i = 0; i < n; i++) p[i] = (float)(lo + (hi - lo) * urand());
  return p;
}

static double *dcopy(const float *f, int64_t n) {
  double *p = malloc((size_t)n * sizeof *p);
  if (!p) abort();
  for (int64_t i = 0; i < n; i++) p[i] = f[i];
  return p;
}

/* Compares got[0..n) with want[0..n); prints the largest error and the
 * element nearest its tolerance (or furthest past it). */
static void compare(const char *what, const float *got, const double *want,
                    int64_t n) {
  double worst = 0, maxerr = 0;
  int64_t at = 0;
  for (int64_t i = 0; i < n; i++) {
    double err = fabs(got[i] - want[i]);
    double over = err - (2e-5 + 2e-4 * fabs(want[i]));
    if (over > worst || i == 0) worst = over, at = i;
    if (err > maxerr) maxerr = err;
  }
  CHECK(worst <= 0, "%s: element %lld: got %.9g, want %.9g", what,
        (long long)at, got[at], want[at]);
  printf("%-30s %-4s max|err| %.2e (worst element %lld: %.6g)\n", what,
         worst <= 0 ? "ok" : "FAIL", maxerr, (long long)at, want[at]);
}

/* ---- selective scan ---------------------------------------------------- */

typedef struct {
  int64_t n, d, s, l;
  double *in[6]; /* x, dt, b, c, A_log, Dskip */
} Scan;

static const char *const scan_names[6] = {"x", "dt", "b", "c", "A_log",
                                          "Dskip"};

static int64_t scan_size(const Scan *p, int k) {
  switch (k) {
  case 0: case 1: return p->n * p->d * p->l;
  case 2: case 3: return p->n * p->s * p->l;
  case 4: return p->d * p->s;
  default: return p->d;
  }
}

/* y by the closed form (no recurrence), in double. */
static void scan_closed(const Scan *p, double *y) {
  const double *x = p->in[0], *dt = p->in[1], *b = p->in[2], *c = p->in[3];
  const double *Al = p->in[4], *Ds = p->in[5];
  int64_t n = p->n, d = p->d, s = p->s, l = p->l;
  for (int64_t in = 0; in < n; in++)
    for (int64_t id = 0; id < d; id++)
      for (int64_t t = 0; t < l; t++) {
        int64_t xt = (in * d + id) * l + t;
        double sum = Ds[id] * x[xt];
        for (int64_t is = 0; is < s; is++) {
          double A = -exp(Al[id * s + is]);
          int64_t ct = (in * s + is) * l + t;
          for (int64_t u = 0; u <= t; u++) {
            double decay = 0; /* sum of dt over (u, t] */
            for (int64_t r = u + 1; r <= t; r++)
              decay += dt[(in * d + id) * l + r];
            int64_t xu = (in * d + id) * l + u, bu = (in * s + is) * l + u;
            sum += c[ct] * exp(A * decay) * dt[xu] * b[bu] * x[xu];
          }
        }
        y[xt] = sum;
      }
}

static double dot(const double *a, const double *b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

static void test_scan(const char *name, int64_t n, int64_t d, int64_t s,
                      int64_t l) {
  Scan p = {n, d, s, l, {0}};
  float *f[6];
  static const double lo[6] = {-1, 0.02, -1, -1, -1, -1};
  static const double hi[6] = {1, 0.6, 1, 1, 1.2, 1};
  for (int k = 0; k < 6; k++) {
    f[k] = rnd(scan_size(&p, k), lo[k], hi[k]);
    p.in[k] = dcopy(f[k], scan_size(&p, k));
  }
  int64_t ny = n * d * l;
  float *y = malloc((size_t)ny * sizeof *y), *r = rnd(ny, -1, 1);
  double *want = malloc((size_t)ny * sizeof *want), *rd = dcopy(r, ny);
  char what[64];

  cpu_scan_fwd(n, d, s, l, f[0], f[1], f[2], f[3], f[4], f[5], y);
  scan_closed(&p, want);
  snprintf(what, sizeof what, "%s y", name);
  compare(what, y, want, ny);

  float *g[6];
  for (int k = 0; k < 6; k++) g[k] = malloc((size_t)scan_size(&p, k) * 4);
  cpu_scan_bwd(n, d, s, l, f[0], f[1], f[2], f[3], f[4], f[5], r, g[0], g[1],
               g[2], g[3], g[4], g[5]);
  for (int k = 0; k < 6; k++) {
    int64_t m = scan_size(&p, k);
    double *num = malloc((size_t)m * sizeof *num), h = 1e-5;
    for (int64_t i = 0; i < m; i++) {
      double v = p.in[k][i];
      p.in[k][i] = v + h;
      scan_closed(&p, want);
      double up = dot(rd, want, ny);
      p.in[k][i] = v - h;
      scan_closed(&p, want);
      double dn = dot(rd, want, ny);
      p.in[k][i] = v;
      num[i] = (up - dn) / (2 * h);
    }
    snprintf(what, sizeof what, "%s d%s", name, scan_names[k]);
    compare(what, g[k], num, m);
    free(num);
  }
  /* NULL outputs are skipped, the others unchanged */
  float *dx2 = malloc((size_t)ny * sizeof *dx2);
  cpu_scan_bwd(n, d, s, l, f[0], f[1], f[2], f[3], f[4], f[5], r, dx2, NULL,
               NULL, NULL, NULL, NULL);
  CHECK(memcmp(dx2, g[0], (size_t)ny * 4) == 0, "%s: dx alone differs", name);
  for (int k = 0; k < 6; k++) free(f[k]), free(g[k]), free(p.in[k]);
  free(y), free(r), free(want), free(rd), free(dx2);
}

/* ---- conv1d ------------------------------------------------------------ */

typedef struct {
  CpuConv1d c;
  double *x, *w, *b; /* b NULL: no bias */
} Conv;

/* y by a direct formula over an explicitly padded copy of x, in double. */
static void conv_direct(const Conv *p, double *y) {
  const CpuConv1d *c = &p->c;
  int64_t lp = c->pad_left + c->l + c->pad_right;
  int64_t cg = c->c / c->groups, og = c->out / c->groups;
  double *xp = calloc((size_t)(c->n * c->c * lp), sizeof *xp);
  for (int64_t q = 0; q < c->n * c->c; q++)
    for (int64_t t = 0; t < c->l; t++)
      xp[q * lp + c->pad_left + t] = p->x[q * c->l + t];
  for (int64_t n = 0; n < c->n; n++)
    for (int64_t o = 0; o < c->out; o++)
      for (int64_t j = 0; j < c->ol; j++) {
        double sum = p->b ? p->b[o] : 0;
        for (int64_t ci = 0; ci < cg; ci++)
          for (int64_t u = 0; u < c->k; u++)
            sum += p->w[(o * cg + ci) * c->k + u] *
                   xp[(n * c->c + (o / og) * cg + ci) * lp + j * c->stride +
                      u * c->dil];
        y[(n * c->out + o) * c->ol + j] = sum;
      }
  free(xp);
}

static void conv_by_hand(void) {
  /* x = 1 2 3 4, w = 10 1, b = 0.5, causal (pad_left 1):
   * y_j = 10 x_{j-1} + x_j + 0.5 */
  CpuConv1d c = {1, 1, 4, 1, 2, 1, 1, 0, 1, 1, 0};
  cpu_conv1d_out(&c);
  float x[4] = {1, 2, 3, 4}, w[2] = {10, 1}, b[1] = {0.5f}, y[4];
  double want[4] = {1.5, 12.5, 23.5, 34.5};
  CHECK(c.ol == 4, "causal conv1d: ol %lld, want 4", (long long)c.ol);
  cpu_conv1d_fwd(&c, x, w, b, y);
  compare("conv1d by hand y", y, want, 4);
  /* dy = 1 1 1 1: dx_t = w1 + (t < 3 ? w0 : 0), dw0 = 1+2+3, dw1 = 10 */
  float dy[4] = {1, 1, 1, 1}, dx[4], dw[2], db[1];
  double wdx[4] = {11, 11, 11, 1}, wdw[2] = {6, 10}, wdb[1] = {4};
  cpu_conv1d_bwd(&c, x, w, dy, dx, dw, db);
  compare("conv1d by hand dx", dx, wdx, 4);
  compare("conv1d by hand dw", dw, wdw, 2);
  compare("conv1d by hand db", db, wdb, 1);
}

static void test_conv(const char *name, CpuConv1d c, int bias) {
  cpu_conv1d_out(&c);
  int64_t nx = c.n * c.c * c.l, nw = c.out * (c.c / c.groups) * c.k;
  int64_t ny = c.n * c.out * c.ol;
  float *x = rnd(nx, -1, 1), *w = rnd(nw, -1, 1), *b = rnd(c.out, -1, 1);
  float *y = malloc((size_t)ny * 4), *r = rnd(ny, -1, 1);
  Conv p = {c, dcopy(x, nx), dcopy(w, nw), bias ? dcopy(b, c.out) : NULL};
  double *want = malloc((size_t)ny * sizeof *want), *rd = dcopy(r, ny);
  char what[64];
  cpu_conv1d_fwd(&c, x, w, bias ? b : NULL, y);
  conv_direct(&p, want);
  snprintf(what, sizeof what, "%s y", name);
  compare(what, y, want, ny);

  float *dx = malloc((size_t)nx * 4), *dw = malloc((size_t)nw * 4);
  float *db = malloc((size_t)c.out * 4);
  cpu_conv1d_bwd(&c, x, w, r, dx, dw, db);
  struct { const char *n; double *v; int64_t m; float *g; } in[3] = {
      {"dx", p.x, nx, dx}, {"dw", p.w, nw, dw}, {"db", p.b, c.out, db}};
  for (int k = 0; k < (bias ? 3 : 2); k++) {
    double *num = malloc((size_t)in[k].m * sizeof *num), h = 1e-5;
    for (int64_t i = 0; i < in[k].m; i++) {
      double v = in[k].v[i];
      in[k].v[i] = v + h;
      conv_direct(&p, want);
      double up = dot(rd, want, ny);
      in[k].v[i] = v - h;
      conv_direct(&p, want);
      double dn = dot(rd, want, ny);
      in[k].v[i] = v;
      num[i] = (up - dn) / (2 * h);
    }
    snprintf(what, sizeof what, "%s %s", name, in[k].n);
    compare(what, in[k].g, num, in[k].m);
    free(num);
  }
  free(x), free(w), free(b), free(y), free(r), free(p.x), free(p.w);
  free(p.b), free(want), free(rd), free(dx), free(dw), free(db);
}

int main(void) {
  test_scan("scan 1x1x1x5", 1, 1, 1, 5);
  test_scan("scan 2x3x4x7", 2, 3, 4, 7);
  test_scan("scan 1x2x16x9", 1, 2, 16, 9);
  conv_by_hand();
  /*                    n  c  l  out k  st pl pr dil groups */
  test_conv("conv1d depthwise causal k4",
            (CpuConv1d){2, 6, 11, 6, 4, 1, 3, 0, 1, 6, 0}, 1);
  test_conv("conv1d grouped s2 d2 pad1",
            (CpuConv1d){2, 6, 13, 4, 3, 2, 1, 1, 2, 2, 0}, 1);
  test_conv("conv1d dense causal dil3",
            (CpuConv1d){1, 3, 10, 5, 2, 1, 3, 0, 3, 1, 0}, 0);
  test_conv("conv1d grouped s3 pad2/1",
            (CpuConv1d){2, 4, 12, 8, 3, 3, 2, 1, 1, 4, 0}, 1);
  if (failures) printf("cpu_scan: %d failure(s)\n", failures);
  return failures != 0;
}
