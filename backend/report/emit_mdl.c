/* backend/report/emit_mdl.c: --emit-mdl, the model printed back with the
 * checkpoints that placement chose written in.
 *
 * The key idea: the forward graph's nodes come in program order, one
 * model-level statement after another, and each carries the statement
 * that made it and the call of that statement's `repeat` it came from
 * (Node.origin, stamped by the frontend; a cast carries its operand's). So
 * every statement owns a run of nodes. Those runs, and inside a
 * `NAME = repeat N B(NAME0, ...)` statement the run of each call, are the
 * *units* the source can wrap in a checkpoint; mdl_cut_points gives
 * placement exactly their boundaries. The statements themselves are read
 * from the tree the frontend parsed (Source), which also gives every byte
 * written back. The placed segments are then written back:
 *
 *   h = repeat 12 layer(h)      with layers 0-2 one segment, 3 and 4 one
 *                               each, 5-11 none, becomes
 *   h = checkpoint repeat 3 layer(h)
 *   h = repeat 2 checkpoint layer(h)
 *   h = repeat 7 layer(h)
 *
 * (block calls are numbered per scope, so the layers keep their names and
 * parameters); a segment of one block-call statement is `h = checkpoint
 * b(h)`; any other run of units is wrapped in `checkpoint { ... }`. Every
 * other byte of the file is kept, except that the `checkpoint`s the source
 * had are removed (placement replaces them) and so is a `budget` key of the
 * train block (the emitted file needs no placement to compile).
 */
#include "mdlc.h"

#include <stdlib.h>
#include <string.h>

/* One model-level statement (inside a source `checkpoint { }` too), in
 * the order the frontend numbers them (Origin.stmt). */
typedef struct {
  const Ast *ast;    /* the statement */
  uint32_t ind;      /* where its indentation is read (a source
                        `checkpoint {` it opened, which is removed) */
  const Ast *call;   /* a splittable repeat: its call, else NULL */
  const Ast *count;  /* and its count expression */
  int unit0;         /* its first unit */
  int nunits;        /* 1, or its calls for a splittable repeat */
} Stmt;

typedef struct {
  int file;          /* the source */
  const char *src;   /* its text */
  const Ast *root, *model, *train;
  Stmt *st;          /* the model's statements, source order */
  int nst, capst;
  const Ast **ckb;   /* source `checkpoint { }` statements (removed) */
  int nckb, capckb;
  int nunits;
  int *unit_of;      /* node -> unit, -1 */
  bool ok;           /* every node has a unit, units in order */
} Map;

/* ---- the statements and their nodes -------------------------------------- */

static bool is_block(const Map *mp, const char *name) {
  for (int i = 0; i < mp->root->nkid; i++) {
    const Ast *it = mp->root->kid[i];
    if (it && it->kind == AST_BLOCK && strcmp(it->str, name) == 0) return true;
  }
  return false;
}

static const Ast *strip_ck(const Ast *e) {
  return e && e->kind == AST_CHECKPOINT ? e->kid[0] : e;
}

static bool mentions(const Ast *e, const char *name) {
  if (!e) return false;
  if (e->kind == AST_NAME && strcmp(e->str, name) == 0) return true;
  for (int i = 0; i < e->nkid; i++)
    if (mentions(e->kid[i], name)) return true;
  return false;
}

static bool makes_nodes(const Ast *e) {
  if (!e) return false;
  if (e->kind == AST_CALL || e->kind == AST_REPEAT ||
      e->kind == AST_CHECKPOINT || e->kind == AST_TYPE)
    return true;
  for (int i = 0; i < e->nkid; i++)
    if (makes_nodes(e->kid[i])) return true;
  return false;
}

static void flatten(Map *mp, const Ast *list, uint32_t ind0) {
  for (int i = 0; i < list->nkid; i++) {
    const Ast *s = list->kid[i];
    if (!s) continue;
    uint32_t ind = i == 0 && list->kind == AST_CKBLOCK ? ind0 : s->loc.begin;
    if (s->kind == AST_CKBLOCK) {
      *VEC_PUSH(mp->ckb, mp->nckb, mp->capckb) = s;
      flatten(mp, s, ind);
      continue;
    }
    Stmt *t = VEC_PUSH(mp->st, mp->nst, mp->capst);
    memset(t, 0, sizeof *t);
    t->ast = s;
    t->ind = ind;
  }
}

/* Whether `NAME = repeat N B(NAME0, args)` can be split into consecutive
 * repeats: one name bound, the first argument a name, the others no calls
 * and not NAME (which the pieces rebind). */
static const Ast *split_call(const Map *mp, const Ast *s, const Ast **count) {
  if (s->kind != AST_BIND || s->nkid != 2) return NULL;
  const Ast *r = strip_ck(s->kid[1]);
  if (!r || r->kind != AST_REPEAT) return NULL;
  const Ast *call = strip_ck(r->kid[1]);
  if (!call || call->kind != AST_CALL || !is_block(mp, call->str) ||
      call->nkid < 1 || !call->kid[0] || call->kid[0]->kind != AST_NAME)
    return NULL;
  for (int i = 1; i < call->nkid; i++)
    if (mentions(call->kid[i], s->kid[0]->str) || makes_nodes(call->kid[i]))
      return NULL;
  *count = r->kid[0];
  return call;
}

/* The statements and their units, and each node's unit from its origin.
 * A splittable repeat has a unit per call: as many as its nodes name
 * (calls that make no node are all alike, and units without nodes take
 * the segment around them, so their number does not matter). */
static Map *map_build(const Graph *g, const Source *src) {
  Map *mp = xalloc(sizeof *mp);
  mp->file = src->file;
  mp->src = src_text(mp->file);
  mp->root = src->root;
  mp->unit_of = xalloc(sizeof(int) * (size_t)(g->nnodes ? g->nnodes : 1));
  for (int i = 0; i < g->nnodes; i++) mp->unit_of[i] = -1;
  for (int i = 0; mp->root && i < mp->root->nkid; i++) {
    const Ast *it = mp->root->kid[i];
    if (it && it->kind == AST_MODEL) mp->model = it;
    if (it && it->kind == AST_TRAIN) mp->train = it;
  }
  if (!mp->model) return mp;
  flatten(mp, mp->model->kid[0], 0);
  int *ncalls = xalloc(sizeof(int) * (size_t)(mp->nst ? mp->nst : 1));
  for (int i = 0; i < g->nnodes; i++) {
    Origin o = g->nodes[i].origin;
    if (o.stmt >= 0 && o.stmt < mp->nst && o.call >= ncalls[o.stmt])
      ncalls[o.stmt] = o.call + 1;
  }
  for (int s = 0; s < mp->nst; s++) {
    Stmt *t = &mp->st[s];
    t->unit0 = mp->nunits;
    t->nunits = 1;
    if (t->ast->kind != AST_LET) t->call = split_call(mp, t->ast, &t->count);
    if (t->call && ncalls[s] > 1) t->nunits = ncalls[s];
    mp->nunits += t->nunits;
  }
  mp->ok = true;
  int last = -1;
  for (int i = 0; i < g->nnodes; i++) {
    Origin o = g->nodes[i].origin;
    int u = -1;
    if (o.stmt >= 0 && o.stmt < mp->nst) {
      const Stmt *t = &mp->st[o.stmt];
      u = t->unit0 + (t->call ? o.call : 0);
    }
    mp->unit_of[i] = u;
    if (u < 0 || u < last) mp->ok = false;
    last = u;
  }
  return mp;
}

/* Per node: whether a segment may start or end right before it. */
bool *mdl_cut_points(const Graph *g, const Source *src) {
  Map *mp = map_build(g, src);
  bool *cut = xalloc(sizeof(bool) * (size_t)(g->nnodes + 1));
  for (int i = 1; i < g->nnodes && mp->ok; i++)
    cut[i] = mp->unit_of[i] != mp->unit_of[i - 1];
  return cut;
}

/* ---- writing ------------------------------------------------------------- */

/* An edit of the source: [begin, end) becomes text; depth +1 opens a
 * checkpoint block (what follows is indented two more), -1 closes one
 * (applied before its text). */
typedef struct {
  uint32_t begin, end;
  const char *text;
  int depth;
  int order;         /* ties: insertions before deletions at one offset */
} Edit;

typedef struct {
  FILE *f;
  int depth;         /* checkpoint blocks opened by the edits */
  bool at_bol;       /* the last character written was a newline */
} Out;

static void put(Out *o, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (o->at_bol && o->depth > 0 && s[i] != '\n') fputs("  ", o->f);
    fputc(s[i], o->f);
    o->at_bol = s[i] == '\n';
  }
}

static int edit_cmp(const void *pa, const void *pb) {
  const Edit *a = pa, *b = pb;
  if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
  return (a->order > b->order) - (a->order < b->order);
}

typedef struct {
  Edit *e;
  int n, cap;
  int seq;
} Edits;

static void edit(Edits *es, uint32_t b, uint32_t e, const char *text,
                 int depth) {
  *VEC_PUSH(es->e, es->n, es->cap) =
      (Edit){b, e, text, depth, es->seq++ + (e > b ? 1 << 30 : 0)};
}

/* The whitespace that starts the line holding offset `at`. */
static const char *indent_at(const Map *mp, uint32_t at) {
  uint32_t ls = at;
  while (ls > 0 && mp->src[ls - 1] != '\n') ls--;
  uint32_t le = ls;
  while (mp->src[le] == ' ' || mp->src[le] == '\t') le++;
  return xstrndup(mp->src + ls, le - ls);
}

/* Where a closing brace goes after a statement ending at `end`: after a
 * comment on the rest of its line, else right there. */
static uint32_t close_at(const Map *mp, uint32_t end) {
  uint32_t p = end;
  while (mp->src[p] == ' ' || mp->src[p] == '\t') p++;
  if (mp->src[p] != '#') return end;
  while (mp->src[p] && mp->src[p] != '\n') p++;
  return p;
}

static const char *text(const Map *mp, uint32_t b, uint32_t e) {
  return xstrndup(mp->src + b, e - b);
}

/* Removes a `checkpoint { ... }` around statements, keeping them. */
static void unwrap(const Map *mp, Edits *es, const Ast *e) {
  if (e->nkid == 0) {
    edit(es, e->loc.begin, e->loc.end, "", 0);
    return;
  }
  edit(es, e->loc.begin, e->kid[0]->loc.begin, "", 0);
  uint32_t p = e->loc.end - 1; /* the '}', and the blanks and newline before */
  while (p > 0 && (mp->src[p - 1] == ' ' || mp->src[p - 1] == '\t')) p--;
  if (p > e->kid[e->nkid - 1]->loc.end && mp->src[p - 1] == '\n') p--;
  edit(es, p, e->loc.end, "", 0);
}

/* Removes the `checkpoint` keywords of an expression or statement list. */
static void strip(const Map *mp, Edits *es, const Ast *e) {
  if (!e) return;
  if (e->kind == AST_CHECKPOINT && e->kid[0]) {
    const Ast *k = e->kid[0];
    uint32_t to = k->kind == AST_REPEAT ? k->name_loc.begin : k->loc.begin;
    edit(es, e->name_loc.begin, to, "", 0);
  }
  if (e->kind == AST_CKBLOCK) unwrap(mp, es, e);
  for (int i = 0; i < e->nkid; i++) strip(mp, es, e->kid[i]);
}

/* The segment of each unit (-1 none): that of its nodes; a unit without
 * nodes takes the segment around it, if the units on both sides share it. */
static int *unit_segments(const Map *mp, const Graph *g) {
  int *seg = xalloc(sizeof(int) * (size_t)(mp->nunits + 1));
  bool *has = xalloc(sizeof(bool) * (size_t)(mp->nunits + 1));
  for (int u = 0; u < mp->nunits; u++) seg[u] = -1;
  for (int i = 0; i < g->nnodes; i++) {
    int u = mp->unit_of[i];
    if (u < 0) continue;
    if (has[u] && seg[u] != g->nodes[i].segment)
      ICE("--emit-mdl: a segment boundary inside unit %d", u);
    seg[u] = g->nodes[i].segment;
    has[u] = true;
  }
  for (int u = 0; u < mp->nunits; u++) {
    if (has[u]) continue;
    int a = u - 1, b = u + 1;
    while (a >= 0 && !has[a]) a--;
    while (b < mp->nunits && !has[b]) b++;
    if (a >= 0 && b < mp->nunits && seg[a] >= 0 && seg[a] == seg[b])
      seg[u] = seg[a];
  }
  return seg;
}

/* A split repeat statement, written as consecutive statements: one per
 * run of calls in one segment (or none); a run of one-call segments is
 * `repeat k checkpoint B(...)`. A segment that reaches past the statement
 * opens or closes a `checkpoint {` block between the pieces. */
static void write_repeat(const Map *mp, Edits *es, const Stmt *t,
                         const int *seg) {
  const Ast *s = t->ast, *call = t->call, *a0 = call->kid[0];
  const char *ind = indent_at(mp, t->ind);
  const char *lhs = text(mp, s->loc.begin, s->kid[1]->loc.begin);
  const char *head = text(mp, call->loc.begin, a0->loc.begin);
  const char *tail = text(mp, a0->loc.end, call->loc.end);
  const char *count = text(mp, t->count->loc.begin, t->count->loc.end);
  int u0 = t->unit0, n = t->nunits, N = mp->nunits;
  uint32_t at = s->loc.begin;
  for (int c = 0; c < n;) {
    int sg = seg[u0 + c], e = c;
    while (e + 1 < n && seg[u0 + e + 1] == sg) e++;
    bool opens = sg >= 0 && (u0 + c == 0 || seg[u0 + c - 1] != sg);
    bool closes = sg >= 0 && (u0 + e + 1 >= N || seg[u0 + e + 1] != sg);
    bool own = opens && closes, each = false;
    if (own && e == c) /* more one-call segments after it */
      while (e + 1 < n && seg[u0 + e + 1] >= 0 &&
             (u0 + e + 2 >= N || seg[u0 + e + 2] != seg[u0 + e + 1])) {
        e++;
        each = true;
      }
    if (c > 0) edit(es, at, at, xsprintf("\n%s", ind), 0);
    if (opens && !own)
      edit(es, at, at, xsprintf("checkpoint {\n%s  ", ind), 1);
    const char *k = c == 0 && e == n - 1 ? count : xsprintf("%d", e - c + 1);
    const char *form = !own ? "repeat %s " : each ? "repeat %s checkpoint "
                                                  : "checkpoint repeat %s ";
    edit(es, at, at, xsprintf("%s%s%s%s%s", lhs, xsprintf(form, k), head,
                              c == 0 ? a0->str : s->kid[0]->str, tail), 0);
    if (closes && !own) edit(es, at, at, xsprintf("\n%s}", ind), -1);
    c = e + 1;
  }
  edit(es, at, s->loc.end, "", 0);
}

/* Prints the model's source with g's segments written in (see the top of
 * this file). g must have been placed with mdl_cut_points' boundaries. */
void mdl_emit(const Graph *g, const Source *source, const char *header,
              FILE *f) {
  Map *mp = map_build(g, source);
  if (!mp->model) ICE("--emit-mdl: no model in the source");
  if (!mp->ok && g->nsegments > 0)
    ICE("--emit-mdl: segments placed where the source cannot write them");
  int *seg = unit_segments(mp, g);
  Edits es = {0};
  /* the checkpoints the source had, in blocks and in the model */
  for (int i = 0; i < mp->root->nkid; i++) {
    const Ast *it = mp->root->kid[i];
    if (it && it->kind == AST_BLOCK) strip(mp, &es, it->kid[1]);
  }
  for (int c = 0; c < mp->nckb; c++) unwrap(mp, &es, mp->ckb[c]);
  /* the budget: the emitted file compiles without placement */
  for (int i = 0; mp->train && i < mp->train->nkid; i++) {
    const Ast *kv = mp->train->kid[i];
    if (!kv || strcmp(kv->str, "budget") != 0 || !kv->kid[0]) continue;
    const char *src = mp->src;
    uint32_t b = kv->name_loc.begin, e = kv->kid[0]->loc.end, ls = b, le = e;
    while (ls > 0 && (src[ls - 1] == ' ' || src[ls - 1] == '\t')) ls--;
    while (src[le] == ' ' || src[le] == '\t') le++;
    if (src[le] == '#')
      while (src[le] && src[le] != '\n') le++;
    if ((ls == 0 || src[ls - 1] == '\n') && src[le] == '\n') {
      b = ls; /* the whole line */
      e = le + 1;
    }
    edit(&es, b, e, "", 0);
  }
  /* the statements */
  for (int s = 0; s < mp->nst; s++) {
    const Stmt *t = &mp->st[s];
    int u0 = t->unit0, u1 = t->unit0 + t->nunits - 1;
    bool split = false; /* the calls of a repeat in different segments */
    for (int u = u0 + 1; t->call && u <= u1; u++) split |= seg[u] != seg[u - 1];
    if (split) {
      write_repeat(mp, &es, t, seg);
      continue;
    }
    strip(mp, &es, t->ast);
    int sg = seg[u0];
    bool opens = sg >= 0 && (u0 == 0 || seg[u0 - 1] != sg);
    bool closes = sg >= 0 && (u1 + 1 >= mp->nunits || seg[u1 + 1] != sg);
    const Ast *rhs = t->ast->kind == AST_BIND && t->ast->nkid == 2
                         ? strip_ck(t->ast->kid[1]) : NULL;
    if (opens && closes && rhs && ((rhs->kind == AST_CALL &&
                                    is_block(mp, rhs->str)) ||
                                   rhs->kind == AST_REPEAT)) {
      /* `h = checkpoint b(h)`, `h = checkpoint repeat N b(h)` */
      uint32_t at = rhs->kind == AST_REPEAT ? rhs->name_loc.begin
                                            : rhs->loc.begin;
      edit(&es, at, at, "checkpoint ", 0);
      continue;
    }
    const char *ind = indent_at(mp, t->ind);
    if (opens)
      edit(&es, t->ast->loc.begin, t->ast->loc.begin,
           xsprintf("checkpoint {\n%s  ", ind), 1);
    if (closes)
      edit(&es, close_at(mp, t->ast->loc.end), close_at(mp, t->ast->loc.end),
           xsprintf("\n%s}", ind), -1);
  }
  if (es.n) qsort(es.e, (size_t)es.n, sizeof *es.e, edit_cmp);
  Out o = {f, 0, true};
  if (header) fputs(header, f);
  uint32_t pos = 0, len = (uint32_t)src_len(mp->file);
  for (int i = 0; i < es.n; i++) {
    const Edit *e = &es.e[i];
    if (e->begin < pos) {
      if (e->end <= pos && !*e->text) continue; /* inside a deletion */
      ICE("--emit-mdl: overlapping edits at byte %u", e->begin);
    }
    put(&o, mp->src + pos, e->begin - pos);
    if (e->depth < 0) o.depth += e->depth;
    put(&o, e->text, strlen(e->text));
    if (e->depth > 0) o.depth += e->depth;
    pos = e->end;
  }
  put(&o, mp->src + pos, len - pos);
}
