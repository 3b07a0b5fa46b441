/* diag.c: source files and diagnostics.
 *
 * Every source text is registered once (src_add) and kept with a table of
 * line starts, so a Loc (file id and byte span) turns into `line:col` by a
 * binary search. Errors print in GNU format with the source line, a line
 * number gutter, a caret under the first byte of the span and `~` under the
 * rest of it (up to the end of that line):
 *
 *   gpt.mdl:14:9: error: conv2d expects a 4-D input, got 3-D [8, 1024, 768]
 *      14 |   y = conv2d(h, 64, kernel = 3)
 *         |              ^
 *   gpt.mdl:9:3: note: 'h' defined here
 *
 * Columns count bytes from 1. Very long lines are shown as a window around
 * the span, and bytes other than printable ASCII print as '?', so no input
 * can flood or garble the terminal. Errors are counted; the 20th stops the compiler (exit 1).
 */
#include "mdlc.h"

#include <stdlib.h>
#include <string.h>

enum { MAX_ERRORS = 20, WINDOW = 120 };

typedef struct {
  const char *path;   /* as given on the command line */
  const char *text;   /* the whole source, NUL-terminated */
  size_t len;         /* bytes of text */
  uint32_t *line_at;  /* byte offset of the start of each line */
  int nlines;         /* entries of line_at */
} SrcFile;

/* The registry of source files: the one piece of global state of the
 * diagnostics, since every stage reports against the same files. */
static SrcFile *files;
static int nfiles, capfiles;
static int nerrors;

int src_add(const char *path, const char *text, size_t len) {
  SrcFile *f = VEC_PUSH(files, nfiles, capfiles);
  f->path = xstrdup(path);
  char *copy = xalloc(len + 1);
  memcpy(copy, text, len);
  f->text = copy;
  f->len = len;
  int nl = 1;
  for (size_t i = 0; i < len; i++) nl += text[i] == '\n';
  f->line_at = xalloc((size_t)nl * sizeof *f->line_at);
  f->line_at[f->nlines++] = 0;
  for (size_t i = 0; i < len; i++)
    if (text[i] == '\n') f->line_at[f->nlines++] = (uint32_t)(i + 1);
  return nfiles - 1;
}

const char *src_path(int file) {
  return file >= 0 && file < nfiles ? files[file].path : "<unknown>";
}

const char *src_text(int file) {
  return file >= 0 && file < nfiles ? files[file].text : "";
}

size_t src_len(int file) {
  return file >= 0 && file < nfiles ? files[file].len : 0;
}

/* Index of the line holding byte `off` (0-based). */
static int line_index(const SrcFile *f, uint32_t off) {
  int lo = 0, hi = f->nlines - 1;
  while (lo < hi) {
    int mid = lo + (hi - lo + 1) / 2;
    if (f->line_at[mid] <= off) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

void src_linecol(int file, uint32_t off, int *line, int *col) {
  if (file < 0 || file >= nfiles) {
    *line = 0, *col = 0;
    return;
  }
  const SrcFile *f = &files[file];
  if (off > f->len) off = (uint32_t)f->len;
  int li = line_index(f, off);
  *line = li + 1;
  *col = (int)(off - f->line_at[li]) + 1;
}

/* A byte as shown in the echoed source line: ASCII as is, anything else
 * as '?', so each byte is one column and the caret lines up. */
static int shown(unsigned char c) {
  return (c < 0x20 && c != '\t') || c >= 0x7f ? '?' : c;
}

/* The source line of `loc` with a gutter, then the caret line. */
static void show_line(Loc loc) {
  const SrcFile *f = &files[loc.file];
  uint32_t b = loc.begin > f->len ? (uint32_t)f->len : loc.begin;
  int li = line_index(f, b);
  uint32_t ls = f->line_at[li], le = ls;
  while (le < f->len && f->text[le] != '\n') le++;
  if (le > ls && f->text[le - 1] == '\r') le--;
  uint32_t e = loc.end > le ? le : loc.end;
  if (e <= b) e = b + 1;   /* at least the caret */
  /* The window shown: the whole line if short, else around the span. */
  uint32_t ws = ls, we = le;
  bool cut_l = false, cut_r = false;
  if (le - ls > 2 * WINDOW) {
    if (b - ls > WINDOW / 2) ws = b - WINDOW / 2, cut_l = true;
    if (le - ws > 2 * WINDOW) we = ws + 2 * WINDOW, cut_r = true;
    if (e > we) e = we;
  }
  fprintf(stderr, "%5d | %s", li + 1, cut_l ? "..." : "");
  for (uint32_t i = ws; i < we; i++)
    fputc(shown((unsigned char)f->text[i]), stderr);
  fprintf(stderr, "%s\n      | %s", cut_r ? "..." : "", cut_l ? "   " : "");
  /* Pad with the same whitespace as the source so tabs line up. */
  for (uint32_t i = ws; i < b; i++)
    fputc(f->text[i] == '\t' ? '\t' : ' ', stderr);
  fputc('^', stderr);
  for (uint32_t i = b + 1; i < e; i++) fputc('~', stderr);
  fputc('\n', stderr);
}

static void vreport(Loc loc, const char *kind, bool with_line,
                    const char *fmt, va_list ap) {
  if (loc.file >= 0 && loc.file < nfiles) {
    int line, col;
    src_linecol(loc.file, loc.begin, &line, &col);
    fprintf(stderr, "%s:%d:%d: %s: ", files[loc.file].path, line, col, kind);
  } else {
    fprintf(stderr, "mdlc: %s: ", kind);
  }
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  if (with_line && loc.file >= 0 && loc.file < nfiles) show_line(loc);
}

void diag_error(Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vreport(loc, "error", true, fmt, ap);
  va_end(ap);
  if (++nerrors >= MAX_ERRORS) {
    fprintf(stderr, "mdlc: too many errors (%d), stopping\n", nerrors);
    fflush(stderr);
    exit(1);
  }
}

void diag_note(Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vreport(loc, "note", false, fmt, ap);
  va_end(ap);
}

void diag_hint(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("      = hint: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

int diag_errors(void) { return nerrors; }

/* "mdlc: error: ..." on stderr, then exit with `status`. */
static _Noreturn void vdie(int status, const char *fmt, va_list ap) {
  fputs("mdlc: error: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  exit(status);
}

_Noreturn void die_usage(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vdie(2, fmt, ap);
}

_Noreturn void die_machine(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vdie(3, fmt, ap);
}

_Noreturn void internal_error(const char *file, int line, const char *fmt,
                              ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "mdlc: internal error at %s:%d: ", file, line);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  fflush(stderr);
  abort();
}

const char *loc_str(Loc l, const char *none) {
  if (l.file < 0) return none;
  int line, col;
  src_linecol(l.file, l.begin, &line, &col);
  return xsprintf("%s:%d:%d", src_path(l.file), line, col);
}
