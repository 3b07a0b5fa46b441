/* backend/report/timeline.c: live memory over the schedule, as a picture (.svg)
 * or a Chrome trace (.json, opens in Perfetto or chrome://tracing).
 *
 * The SVG is a step chart of live bytes after each instruction's
 * allocations, with the forward, recomputation, backward and optimizer
 * spans shaded, the persistent floor drawn, the peak marked and the
 * largest tensors alive at the peak labelled: something to paste in a bug
 * report. The trace has one counter track of live bytes per category and
 * one slice per instruction (one instruction = one microsecond).
 */
#include "mdlc.h"

#include <errno.h>
#include <string.h>

static const char *const phase_color[] = {
    [IK_FWD] = "#e8f1fb", [IK_RECOMPUTE] = "#fdf1dc", [IK_SEED] = "#fbe9e9",
    [IK_BWD] = "#fbe9e9", [IK_OPT] = "#eaf6ea", [IK_REDUCE] = "#fbe9e9"};
_Static_assert(sizeof phase_color / sizeof *phase_color == IK_COUNT, "one entry an instruction kind");

static void xml_text(FILE *f, const char *s) {
  for (; *s; s++) {
    if (*s == '<') fputs("&lt;", f);
    else if (*s == '>') fputs("&gt;", f);
    else if (*s == '&') fputs("&amp;", f);
    else if (*s == '"') fputs("&quot;", f);
    else fputc(*s, f);
  }
}

static bool same_phase(InstrKind a, InstrKind b) {
  return strcmp(instr_phase[a], instr_phase[b]) == 0;
}

static void write_svg(const Graph *g, FILE *f) {
  const double W = 1000, H = 560, L = 90, R = 20, T = 60, B = 160;
  const double pw = W - L - R, ph = H - T - B;
  int n = g->nins ? g->nins : 1;
  double ymax = (double)(g->peak ? g->peak : 1) * 1.08;
  char u[32];
#define X(i) (L + pw * (double)(i) / n)
#define Y(v) (T + ph - ph * (double)(v) / ymax)
  fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
             "height=\"%.0f\" font-family=\"sans-serif\" font-size=\"12\">\n",
          W, H);
  fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
  fprintf(f, "<text x=\"%.0f\" y=\"22\" font-size=\"16\">", L);
  xml_text(f, xsprintf("%s: live device memory over one %s step (%s, %s)",
                       g->model_name ? g->model_name : "?",
                       g->cfg.infer ? "inference" : "training",
                       precision_name[g->cfg.precision],
                       optimizer_name[g->cfg.optimizer]));
  fprintf(f, "</text>\n");
  /* phase bands */
  for (int i = 0; i < g->nins;) {
    int j = i;
    while (j < g->nins && same_phase(g->ins[j].kind, g->ins[i].kind)) j++;
    fprintf(f, "<rect x=\"%.2f\" y=\"%.0f\" width=\"%.2f\" height=\"%.0f\" "
               "fill=\"%s\"/>\n",
            X(i), T, X(j) - X(i), ph, phase_color[g->ins[i].kind]);
    if (X(j) - X(i) > 60)
      fprintf(f, "<text x=\"%.2f\" y=\"%.0f\" fill=\"#666\">%s</text>\n",
              X(i) + 4, T + 14, instr_phase[g->ins[i].kind]);
    i = j;
  }
  /* persistent floor */
  fprintf(f, "<rect x=\"%.0f\" y=\"%.2f\" width=\"%.0f\" height=\"%.2f\" "
             "fill=\"#cfd8dc\"/>\n",
          L, Y(g->persistent_bytes), pw, T + ph - Y(g->persistent_bytes));
  fprintf(f, "<text x=\"%.0f\" y=\"%.2f\" fill=\"#455a64\">persistent %s"
             "</text>\n",
          L + 6, Y(g->persistent_bytes) - 4, fmt_bytes(g->persistent_bytes, u));
  /* the step chart */
  fprintf(f, "<path fill=\"none\" stroke=\"#1565c0\" stroke-width=\"1.5\" d=\"M%.2f %.2f",
          X(0), Y(g->persistent_bytes));
  int64_t prev = g->persistent_bytes;
  for (int i = 0; i < g->nins; i++) {
    const Instr *in = &g->ins[i];
    fprintf(f, " L%.2f %.2f L%.2f %.2f", X(i), Y(prev), X(i), Y(in->live));
    int64_t after = in->live;
    for (int k = 0; k < in->nfree; k++) after -= g->bufs[in->free[k]].bytes;
    fprintf(f, " L%.2f %.2f", X(i + 1), Y(in->live));
    prev = after;
  }
  fprintf(f, "\"/>\n");
  /* axes */
  for (int k = 0; k <= 4; k++) {
    double v = ymax * k / 4;
    fprintf(f, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.2f\" y2=\"%.2f\" "
               "stroke=\"#ddd\"/>\n<text x=\"%.0f\" y=\"%.2f\" "
               "text-anchor=\"end\">%s</text>\n",
            L, L + pw, Y(v), Y(v), L - 6, Y(v) + 4,
            fmt_bytes((int64_t)v, u));
  }
  fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">instruction "
             "(1..%d)</text>\n",
          L + pw / 2, T + ph + 22, g->nins);
  /* the peak */
  if (g->peak_at >= 0) {
    double px = X(g->peak_at) + (X(g->peak_at + 1) - X(g->peak_at)) / 2;
    fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"4\" fill=\"#c62828\"/>\n",
            px, Y(g->peak));
    fprintf(f, "<line x1=\"%.2f\" x2=\"%.2f\" y1=\"%.0f\" y2=\"%.2f\" "
               "stroke=\"#c62828\" stroke-dasharray=\"3,3\"/>\n",
            px, px, T, Y(g->peak));
    fprintf(f, "<text x=\"%.0f\" y=\"44\" fill=\"#c62828\">", L);
    xml_text(f, xsprintf("peak %lld B (%s) at instruction %d: %s",
                         (long long)g->peak, fmt_bytes(g->peak, u),
                         g->peak_at + 1, instr_describe(g, g->peak_at)));
    fprintf(f, "</text>\n");
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-weight=\"bold\">largest "
               "tensors alive at the peak</text>\n",
            L, T + ph + 50);
    /* the largest tensors alive there */
    int top[5];
    int ntop = largest_at_peak(g, top, 5);
    for (int k = 0; k < ntop; k++) {
      const Buf *x = &g->bufs[top[k]];
      fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" fill=\"#333\">", L,
              T + ph + 68 + 16.0 * k);
      xml_text(f, xsprintf("%s  %s (%s)", fmt_bytes(x->bytes, u), x->name,
                           category_name[x->cat]));
      fprintf(f, "</text>\n");
    }
  }
  fprintf(f, "</svg>\n");
#undef X
#undef Y
}

static void write_trace(const Graph *g, FILE *f) {
  fprintf(f, "{\"displayTimeUnit\": \"ns\", \"traceEvents\": [\n");
  fprintf(f, "{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": 1, "
             "\"args\": {\"name\": \"mdlc step\"}}");
  int64_t cat[CAT_COUNT] = {0};
  for (int b = 0; b < g->nbufs; b++)
    if (g->bufs[b].persistent) cat[g->bufs[b].cat] += g->bufs[b].bytes;
  for (int i = 0; i < g->nins; i++) {
    const Instr *in = &g->ins[i];
    for (int k = 0; k < in->nalloc; k++)
      cat[g->bufs[in->alloc[k]].cat] += g->bufs[in->alloc[k]].bytes;
    fprintf(f, ",\n{\"name\": \"live bytes\", \"ph\": \"C\", \"pid\": 1, "
               "\"ts\": %d, \"args\": {",
            i);
    for (int c = 0; c < CAT_COUNT; c++)
      fprintf(f, "%s\"%s\": %lld", c ? ", " : "", category_name[c],
              (long long)cat[c]);
    fprintf(f, "}}");
    fprintf(f, ",\n{\"name\": ");
    const char *d = instr_describe(g, i);
    fputc('"', f);
    for (const char *p = d; *p; p++) {
      if (*p == '"' || *p == '\\') fputc('\\', f);
      fputc(*p, f);
    }
    fprintf(f, "\", \"ph\": \"X\", \"pid\": 1, \"tid\": 1, \"ts\": %d, "
               "\"dur\": 1, \"args\": {\"live\": %lld}}",
            i, (long long)in->live);
    for (int k = 0; k < in->nfree; k++)
      cat[g->bufs[in->free[k]].cat] -= g->bufs[in->free[k]].bytes;
  }
  fprintf(f, "\n]}\n");
}

void timeline_write(const Graph *g, const char *path) {
  size_t n = strlen(path);
  bool svg = n > 4 && strcmp(path + n - 4, ".svg") == 0;
  bool json = n > 5 && strcmp(path + n - 5, ".json") == 0;
  if (!svg && !json)
    die_usage("--timeline: '%s' must end in .svg or .json", path);
  FILE *f = fopen(path, "w");
  if (!f) die_usage("--timeline: cannot write '%s': %s", path, strerror(errno));
  if (svg) write_svg(g, f);
  else write_trace(g, f);
  if (fclose(f) != 0) die_usage("--timeline: writing '%s' failed", path);
}
