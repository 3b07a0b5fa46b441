/* ops/layout.c: the data-movement ops: embedding, reshape, transpose,
 * concat and split.
 *
 * reshape and split are views: their outputs point at their input
 * (view_of) and carry their geometry, view_offset and strides in elements
 * of the root storage, so a reshape of a split view of qkv [B, S, 3D] into
 * [B, S, H, D/H] gets strides (S*3D, 3D, D/H, 1) and nothing runs. A
 * transpose is a strided copy; concat copies each part into its slice;
 * embedding gathers rows of its weight [vocab, dim]. None of them does
 * arithmetic (0 FLOPs).
 */
#include "mdlc.h"

#include <string.h>

/* ---- embedding ------------------------------------------------------------------ */

static int embedding_lower(const Call *c) {
  const Args *A = c->A;
  Ev x = A->v[0];
  if (dtype_is_float(call_val(c, x)->dtype)) {
    diag_error(x.ast->loc, "embedding takes integer ids, got %s",
               call_desc(c, x.v));
    return -1;
  }
  Shape y = call_val(c, x)->shape, ws = {2, {A->v[1].i, A->v[2].i}};
  if (y.rank >= MAX_RANK) {
    diag_error(c->loc, "embedding: the result would have more than %d "
               "dimensions", MAX_RANK);
    return -1;
  }
  y.dim[y.rank++] = A->v[2].i;
  if (!lower_shape_ok(c->L, &ws, c->loc, "the weight") ||
      !call_shape_ok(c, &y))
    return -1;
  int wt = call_weight(c, 3, &ws);
  if (wt == -1) return -1;
  const char *full = call_reserve(c, c->base);
  int in[2] = {x.v, wt >= 0 ? wt : call_param(c, full, "weight", VK_PARAM, &ws)};
  int n = call_node_named(c, OP_EMBEDDING, full, in, 2);
  c->g->nodes[n].a.embedding.vocab = A->v[1].i;
  c->g->nodes[n].a.embedding.dim = A->v[2].i;
  return call_out1(c, n, DT_F32, &y);
}

static void embedding_attrs(const Node *n, FILE *f) {
  fprintf(f, " vocab=%lld dim=%lld", (long long)n->a.embedding.vocab,
          (long long)n->a.embedding.dim);
}

/* Token ids are drawn below the vocabulary. */
static void embedding_init(const Graph *g, const Node *n, int k, int s,
                           InitKind *kind, int64_t *fan, int64_t *limit) {
  (void)kind, (void)fan;
  if (k == EMB_IDS) limit[s] = g->vals[n->in[EMB_W]].shape.dim[0];
}

static void embedding_cpu_fwd(CpuOp *c) {
  const Shape *w = &c->g->vals[c->n->in[EMB_W]].shape;
  int64_t nx = op_numel(c->g, c->n->in[EMB_IDS]);
  int64_t *ids = cpu_ints(c, EMB_IDS, false, "the ids");
  int64_t bad = cpu_embedding_fwd(ids, nx, c->x[EMB_W], w->dim[0], w->dim[1],
                                  c->y[0]);
  if (bad >= 0) cpu_data_error(c, "token id", ids[bad], w->dim[0]);
}

static void embedding_cpu_bwd(CpuOp *c) {
  const Shape *w = &c->g->vals[c->n->in[EMB_W]].shape;
  int64_t nx = op_numel(c->g, c->n->in[EMB_IDS]);
  int64_t *ids = cpu_ints(c, EMB_IDS, true, "the ids");
  if (c->dx[EMB_W])
    cpu_embedding_bwd(ids, nx, c->dy[0], w->dim[0], w->dim[1], c->dx[EMB_W]);
}

static void embedding_cuda_fwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_embedding_fwd(%s, %s, %s);\n", c->Y[0],
              c->X[EMB_IDS], c->X[EMB_W]);
}

static void embedding_cuda_bwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_embedding_bwd(%s, %d, %s, %s);\n", c->DX[EMB_W],
              c->A[EMB_W], c->DY, c->I[EMB_IDS]);
}

const OpDef opdef_EMBEDDING = {
    "embedding(ids, vocab, dim, weight=NAME)",
    {ARG_TENSOR("ids"), {"vocab", A_I, true, 0, ARG_POS},
     {"dim", A_I, true, 0, ARG_POS}, {"weight", A_TOPT, false, 0, ARG_ANY}},
    embedding_lower, flops_none, embedding_attrs, embedding_init,
    embedding_cpu_fwd, embedding_cpu_bwd, NULL, embedding_cuda_fwd,
    embedding_cuda_bwd,
};

/* ---- reshape: a view ------------------------------------------------------------- */

/* Strides of a view of `x` reshaped to `s`: contiguous input gives
 * contiguous strides; otherwise each run of merged or split dims must be
 * contiguous within itself (PyTorch's rule). False if impossible. */
static bool view_strides(const Value *x, const Shape *s, int64_t *st) {
  const Shape *o = &x->shape;
  if (value_is_contiguous(x)) {
    int64_t k = 1;
    for (int i = s->rank - 1; i >= 0; i--) st[i] = k, k *= s->dim[i];
    return true;
  }
  int vd = s->rank - 1;
  int64_t base = o->rank ? x->stride[o->rank - 1] : 1, tn = 1, vn = 1;
  for (int td = o->rank - 1; td >= 0; td--) {
    tn *= o->dim[td];
    if (td == 0 ||
        (o->dim[td - 1] != 1 && x->stride[td - 1] != tn * base)) {
      while (vd >= 0 && (vn < tn || s->dim[vd] == 1)) {
        st[vd] = vn * base;
        vn *= s->dim[vd];
        vd--;
      }
      if (vn != tn) return false;
      if (td > 0) base = x->stride[td - 1], tn = 1, vn = 1;
    }
  }
  return vd == -1;
}

int lower_reshape_view(const Call *c, int x, const Shape *s,
                       const char *local) {
  int64_t st[MAX_RANK];
  if (!view_strides(&c->g->vals[x], s, st)) {
    char b1[160];
    diag_error(c->loc, "cannot reshape the strided view %s to %s without a "
               "copy", call_desc(c, x), shape_str(s, b1));
    diag_hint("transpose it first, which makes a contiguous copy");
    return -1;
  }
  int n = call_node(c, OP_RESHAPE, local, &x, 1);
  int v = call_out1(c, n, c->g->vals[x].dtype, s);
  Value *vv = &c->g->vals[v];
  vv->view_of = x;
  vv->view_offset = c->g->vals[x].view_of >= 0 ? c->g->vals[x].view_offset : 0;
  memcpy(vv->stride, st, sizeof st);
  return v;
}

static int reshape_lower(const Call *c) {
  const Args *A = c->A;
  Ev x = A->v[0];
  const Shape xs = call_val(c, x)->shape;
  int64_t total, known = 1;
  shape_numel(&xs, &total);
  Shape s = {0};
  int infer = -1;
  if (A->nmany > MAX_RANK) {
    diag_error(c->loc, "reshape: at most %d dimensions", MAX_RANK);
    return -1;
  }
  for (int i = 0; i < A->nmany; i++) {
    int64_t d = A->many[i].i;
    if (d == -1 && infer < 0) {
      infer = i;
      d = 1;
    } else if (d < 1) {
      diag_error(A->many[i].ast->loc, "reshape: a dimension must be at "
                 "least 1%s, got %lld", infer < 0 ? " (or one -1)" : "",
                 (long long)d);
      return -1;
    } else if (!mul_ok(known, d, &known)) {
      known = INT64_MAX;
    }
    s.dim[s.rank++] = d;
  }
  if (infer >= 0 && known <= total && total % known == 0)
    s.dim[infer] = total / known, known = total;
  if (known != total) {
    char b[160];
    if (infer >= 0) s.dim[infer] = -1;
    diag_error(c->loc, "reshape: cannot view %s (%lld elements) as %s",
               call_desc(c, x.v), (long long)total, shape_str(&s, b));
    return -1;
  }
  return lower_reshape_view(c, x.v, &s, c->base);
}

/* A view only runs if the plan gave it storage: then it is a copy. */
static void view_cuda_fwd(EmitOp *c) {
  emit_printf(c, "  /* a view: nothing runs */\n");
}

static void view_cuda_bwd(EmitOp *c) {
  emit_printf(c, "  /* a view: its gradient is its place in the base's "
              "gradient */\n");
}

static void reshape_cpu_fwd(CpuOp *c) {
  memcpy(c->y[0], c->x[0],
         (size_t)op_numel(c->g, c->n->in[0]) * sizeof *c->x[0]);
}

static void reshape_cpu_bwd(CpuOp *c) {
  if (c->dx[0])
    memcpy(c->dx[0], c->dy[0],
           (size_t)op_numel(c->g, c->n->in[0]) * sizeof *c->dx[0]);
}

const OpDef opdef_RESHAPE = {
    "reshape(x, d0, d1, ...)",
    {ARG_TENSOR("x"), {"dims", A_IS, true, 0, ARG_ANY}},
    reshape_lower, flops_none, NULL, NULL,
    reshape_cpu_fwd, reshape_cpu_bwd, NULL, view_cuda_fwd, view_cuda_bwd,
};

/* ---- transpose: a strided copy ------------------------------------------------------ */

int lower_transpose(const Call *c, int x, int a, int b, const char *local) {
  Shape s = c->g->vals[x].shape;
  int64_t t = s.dim[a];
  s.dim[a] = s.dim[b], s.dim[b] = t;
  int n = call_node(c, OP_TRANSPOSE, local, &x, 1);
  c->g->nodes[n].a.transpose.a = a;
  c->g->nodes[n].a.transpose.b = b;
  return call_out1(c, n, c->g->vals[x].dtype, &s);
}

static int transpose_lower(const Call *c) {
  const Args *A = c->A;
  Ev x = A->v[0];
  int r = call_val(c, x)->shape.rank;
  int a = call_axis(c, A->v[1].i, r, A->where[1]);
  int b = a < 0 ? -1 : call_axis(c, A->v[2].i, r, A->where[2]);
  if (b < 0) return -1;
  return lower_transpose(c, x.v, a, b, c->base);
}

static void transpose_attrs(const Node *n, FILE *f) {
  fprintf(f, " a=%d b=%d", n->a.transpose.a, n->a.transpose.b);
}

static void transpose_cpu_fwd(CpuOp *c) {
  cpu_transpose(&c->g->vals[c->n->in[0]].shape, c->n->a.transpose.a,
                c->n->a.transpose.b, c->x[0], c->y[0]);
}

static void transpose_cpu_bwd(CpuOp *c) {
  if (c->dx[0])
    cpu_transpose(&c->g->vals[c->n->out[0]].shape, c->n->a.transpose.a,
                  c->n->a.transpose.b, c->dy[0], c->dx[0]);
}

/* v's geometry with dims a and b swapped. */
static Geom swapped(const Graph *g, int v, int a, int b) {
  Geom m = emit_geom(g, v);
  int64_t t = m.dim[a]; m.dim[a] = m.dim[b]; m.dim[b] = t;
  t = m.st[a]; m.st[a] = m.st[b]; m.st[b] = t;
  return m;
}

/* y = x read through swapped dims. */
static void transpose_cuda_fwd(EmitOp *c) {
  int a = c->n->a.transpose.a, b = c->n->a.transpose.b;
  Geom m = swapped(c->g, c->n->in[0], a, b);
  emit_printf(c, "  mdlrt_copy(%s, %s, 0);\n", c->Y[0],
              emit_ref_geom(c, c->in->in[0], xsprintf("_T%d%d", a, b), &m,
                            xsprintf("%%%d with dims %d and %d swapped",
                                     c->n->in[0], a, b)));
}

/* dx (+)= dy written through swapped dims. */
static void transpose_cuda_bwd(EmitOp *c) {
  Ref r = c->in->out[0];
  if (r.buf < 0) return;
  int a = c->n->a.transpose.a, b = c->n->a.transpose.b;
  Geom m = swapped(c->g, r.value, a, b);
  emit_printf(c, "  mdlrt_copy(%s, %s, %d);\n",
              emit_ref_geom(c, r, xsprintf("_T%d%d", a, b), &m,
                            xsprintf("d%%%d with dims %d and %d swapped",
                                     r.value, a, b)),
              c->DY, c->A[0]);
}

const OpDef opdef_TRANSPOSE = {
    "transpose(x, a, b)",
    {ARG_TENSOR("x"), {"a", A_I, true, 0, ARG_ANY},
     {"b", A_I, true, 0, ARG_ANY}},
    transpose_lower, flops_none, transpose_attrs, NULL,
    transpose_cpu_fwd, transpose_cpu_bwd, NULL, transpose_cuda_fwd,
    transpose_cuda_bwd,
};

/* ---- concat: each part copied into its slice ------------------------------------------- */

static int concat_lower(const Call *c) {
  const Args *A = c->A;
  if (A->nmany < 2) {
    diag_error(c->loc, "concat takes at least two tensors");
    return -1;
  }
  const Shape s0 = call_val(c, A->many[0])->shape;
  int axis = call_axis(c, A->v[1].i, s0.rank,
                       A->given[1] ? A->where[1] : c->loc);
  if (axis < 0) return -1;
  Shape y = s0;
  DType dt = call_val(c, A->many[0])->dtype;
  int *in = xalloc(sizeof(int) * (size_t)A->nmany);
  for (int i = 0; i < A->nmany; i++) {
    const Value *v = call_val(c, A->many[i]);
    bool same = v->shape.rank == s0.rank;
    for (int d = 0; same && d < s0.rank; d++)
      same = d == axis || v->shape.dim[d] == s0.dim[d];
    if (!same) {
      diag_error(A->many[i].ast->loc, "concat along axis %d: %s does not "
                 "match %s", axis, call_desc(c, A->many[i].v),
                 call_desc(c, A->many[0].v));
      return -1;
    }
    if (dtype_is_float(v->dtype) != dtype_is_float(dt)) {
      diag_error(A->many[i].ast->loc, "concat: cannot join %s and %s",
                 call_desc(c, A->many[i].v), call_desc(c, A->many[0].v));
      return -1;
    }
    if (v->dtype != dt) dt = DT_F32;
    if (i && !add_ok(y.dim[axis], v->shape.dim[axis], &y.dim[axis]))
      y.dim[axis] = INT64_MAX;
    in[i] = A->many[i].v;
  }
  if (!call_shape_ok(c, &y)) return -1;
  int n = call_node(c, OP_CONCAT, c->base, in, A->nmany);
  c->g->nodes[n].a.concat.axis = axis;
  return call_out1(c, n, dt, &y);
}

static void concat_attrs(const Node *n, FILE *f) {
  fprintf(f, " axis=%d", n->a.concat.axis);
}

static void concat_cpu_fwd(CpuOp *c) {
  Shape parts[8];
  for (int k = 0; k < c->n->nin; k++) parts[k] = c->g->vals[c->n->in[k]].shape;
  cpu_concat(c->n->nin, parts, (const float *const *)c->x,
             c->n->a.concat.axis, c->y[0]);
}

static void concat_cpu_bwd(CpuOp *c) {
  Shape parts[8];
  for (int k = 0; k < c->n->nin; k++) parts[k] = c->g->vals[c->n->in[k]].shape;
  cpu_unconcat(c->n->nin, parts, c->dy[0], c->n->a.concat.axis, c->dx);
}

/* Part k's slice of v's geometry along the concat axis, at `at`. */
static Geom part_geom(const Graph *g, const Node *n, int k, int64_t at) {
  Geom m = emit_geom(g, n->out[0]);
  int ax = n->a.concat.axis;
  m.off += at * m.st[ax];
  m.dim[ax] = g->vals[n->in[k]].shape.dim[ax];
  return m;
}

static void concat_cuda_fwd(EmitOp *c) {
  const Node *n = c->n;
  int64_t at = 0;
  for (int k = 0; k < n->nin; k++) {
    Geom part = part_geom(c->g, n, k, at);
    emit_printf(c, "  mdlrt_copy(%s, %s, 0);\n",
                emit_ref_geom(c, c->in->out[0],
                              xsprintf("_at%lld", (long long)at), &part,
                              xsprintf("part %d of %%%d", k, n->out[0])),
                emit_ref(c, c->in->in[k]));
    at += part.dim[n->a.concat.axis];
  }
}

static void concat_cuda_bwd(EmitOp *c) {
  const Node *n = c->n;
  Ref dyr = c->in->in[n->nin + n->nout];
  int64_t at = 0;
  for (int k = 0; k < n->nin; k++) {
    Geom part = part_geom(c->g, n, k, at);
    if (c->in->out[k].buf >= 0)
      emit_printf(c, "  mdlrt_copy(%s, %s, %d);\n",
                  emit_ref(c, c->in->out[k]),
                  emit_ref_geom(c, dyr, xsprintf("_at%lld", (long long)at),
                                &part,
                                xsprintf("part %d of d%%%d", k, n->out[0])),
                  c->in->accum[k]);
    at += part.dim[n->a.concat.axis];
  }
}

const OpDef opdef_CONCAT = {
    "concat(a, b, ..., axis=0)",
    {{"tensors", A_TS, true, 0, ARG_ANY}, {"axis", A_I, false, 0, ARG_ANY}},
    concat_lower, flops_none, concat_attrs, NULL,
    concat_cpu_fwd, concat_cpu_bwd, NULL, concat_cuda_fwd, concat_cuda_bwd,
};

/* ---- split: views ------------------------------------------------------------------------ */

/* A view of x: shape s, starting `at` elements along axis (x's strides). */
static void set_view(Graph *g, int v, int x, int axis, int64_t at) {
  const Value *xv = &g->vals[x];
  Value *o = &g->vals[v];
  o->view_of = x;
  memcpy(o->stride, xv->stride, sizeof o->stride);
  o->view_offset = (xv->view_of >= 0 ? xv->view_offset : 0) +
                   at * xv->stride[axis];
}

int lower_split_sizes(const Call *c, int x, int n, const int64_t *sizes,
                      int axis, const char *local, const char *const *names,
                      int *outs) {
  int nd = call_node(c, OP_SPLIT, local, &x, 1);
  c->g->nodes[nd].a.split.n = n;
  c->g->nodes[nd].a.split.axis = axis;
  int64_t at = 0;
  for (int i = 0; i < n; i++) {
    Shape s = c->g->vals[x].shape;
    s.dim[axis] = sizes[i];
    outs[i] = call_out(c, nd, names[i], c->g->vals[x].dtype, &s, false);
    set_view(c->g, outs[i], x, axis, at);
    at += sizes[i];
  }
  return nd;
}

int lower_split_views(const Call *c, int x, int n, int axis,
                      const char *local, const char *const *names,
                      int *outs) {
  const Shape s = c->g->vals[x].shape;
  if (s.dim[axis] % n) {
    diag_error(c->loc, "split: dimension %d of %s is not divisible by %d",
               axis, call_desc(c, x), n);
    return -1;
  }
  int64_t *sizes = xalloc(sizeof(int64_t) * (size_t)n);
  for (int i = 0; i < n; i++) sizes[i] = s.dim[axis] / n;
  return lower_split_sizes(c, x, n, sizes, axis, local, names, outs);
}

/* split(x, n): n equal parts; split(x, s0, s1, ...): parts of those sizes. */
static int split_lower(const Call *c) {
  const Args *A = c->A;
  Ev x = A->v[0];
  int r = call_val(c, x)->shape.rank;
  if (!call_need_rank(c, x, 1, MAX_RANK, "a tensor")) return -1;
  int axis = call_axis(c, A->v[2].i, r, A->given[2] ? A->where[2] : c->loc);
  if (axis < 0) return -1;
  int64_t total = 0, ext = call_val(c, x)->shape.dim[axis];
  for (int i = 0; i < A->nmany; i++) {
    if (A->many[i].i < 1) {
      diag_error(A->many[i].ast->loc, "'%s' of split must be at least 1, "
                 "got %lld", A->nmany > 1 ? "sizes" : "n",
                 (long long)A->many[i].i);
      return -1;
    }
    if (!add_ok(total, A->many[i].i, &total)) total = INT64_MAX;
  }
  if (A->nmany > 1 && total != ext) {
    diag_error(c->loc, "split: sizes add up to %lld, but dimension %d of %s "
               "is %lld", (long long)total, axis, call_desc(c, x.v),
               (long long)ext);
    return -1;
  }
  if (A->nmany > 1 && A->nmany > 4096) {
    diag_error(c->loc, "split: at most 4096 parts");
    return -1;
  }
  int64_t k = A->nmany > 1 ? A->nmany : A->many[0].i;
  if (!c->outnames || c->nout != k) {
    diag_error(c->loc, "split into %lld gives %lld tensors; bind %s",
               (long long)k, (long long)k, k == 1 ? "it to one name" :
               "each to a name: 'a, b, ... = split(...)'");
    if (c->outnames) diag_hint("%d name%s on the left", c->nout,
                               c->nout == 1 ? "" : "s");
    return -1;
  }
  const char **full = xalloc(sizeof(char *) * (size_t)k);
  for (int i = 0; i < k; i++) full[i] = call_reserve(c, c->outnames[i]);
  int *outs = xalloc(sizeof(int) * (size_t)k);
  if (A->nmany > 1) {
    int64_t *sizes = xalloc(sizeof(int64_t) * (size_t)k);
    for (int i = 0; i < k; i++) sizes[i] = A->many[i].i;
    lower_split_sizes(c, x.v, (int)k, sizes, axis, c->base, full, outs);
  } else if (lower_split_views(c, x.v, (int)k, axis, c->base, full, outs) <
             0) {
    return -1;
  }
  c->tuple->k = EV_TUPLE;
  c->tuple->vs = outs;
  c->tuple->nv = (int)k;
  return outs[0];
}

static void split_attrs(const Node *n, FILE *f) {
  fprintf(f, " n=%d axis=%d", n->a.split.n, n->a.split.axis);
}

static void split_cpu_fwd(CpuOp *c) {
  Shape parts[8];
  for (int o = 0; o < c->n->nreal; o++)
    parts[o] = c->g->vals[c->n->out[o]].shape;
  cpu_unconcat(c->n->nreal, parts, c->x[0], c->n->a.split.axis, c->y);
}

static void split_cpu_bwd(CpuOp *c) {
  Shape parts[8];
  for (int o = 0; o < c->n->nreal; o++)
    parts[o] = c->g->vals[c->n->out[o]].shape;
  if (c->dx[0])
    cpu_concat(c->n->nreal, parts, (const float *const *)c->dy,
               c->n->a.split.axis, c->dx[0]);
}

const OpDef opdef_SPLIT = {
    "split(x, n, axis=-1) or split(x, s0, s1, ..., axis=-1)",
    {ARG_TENSOR("x"), {"n", A_IS, true, 0, ARG_POS},
     {"axis", A_I, false, -1, ARG_ANY}},
    split_lower, flops_none, split_attrs, NULL,
    split_cpu_fwd, split_cpu_bwd, NULL, view_cuda_fwd, view_cuda_bwd,
};

/* ---- slice: a view of [start, end) along one axis ------------------------------------- */

static int slice_lower(const Call *c) {
  const Args *A = c->A;
  Ev x = A->v[0];
  if (!call_need_rank(c, x, 1, MAX_RANK, "a tensor")) return -1;
  const Shape xs = call_val(c, x)->shape;
  int axis = call_axis(c, A->v[3].i, xs.rank,
                       A->given[3] ? A->where[3] : c->loc);
  if (axis < 0) return -1;
  int64_t n = xs.dim[axis], lo = A->v[1].i, hi = A->v[2].i;
  int64_t s = lo < 0 ? lo + n : lo, e = hi < 0 ? hi + n : hi;
  if (s < 0 || e > n || s >= e) {
    diag_error(c->loc, "slice: [%lld, %lld) is not a non-empty range of "
               "dimension %d of %s (extent %lld)", (long long)lo,
               (long long)hi, axis, call_desc(c, x.v), (long long)n);
    diag_hint("negative indices count from the end");
    return -1;
  }
  Shape y = xs;
  y.dim[axis] = e - s;
  int nd = call_node(c, OP_SLICE, c->base, &x.v, 1);
  Node *node = &c->g->nodes[nd];
  node->a.slice.start = s, node->a.slice.end = e, node->a.slice.axis = axis;
  int v = call_out1(c, nd, call_val(c, x)->dtype, &y);
  set_view(c->g, v, x.v, axis, s);
  return v;
}

static void slice_attrs(const Node *n, FILE *f) {
  fprintf(f, " start=%lld end=%lld axis=%d", (long long)n->a.slice.start,
          (long long)n->a.slice.end, n->a.slice.axis);
}

/* x viewed as [outer, n, inner]: rows [start, end) of the middle axis. */
static void slice_geom(const CpuOp *c, int64_t *outer, int64_t *n,
                       int64_t *inner) {
  const Shape *s = &c->g->vals[c->n->in[0]].shape;
  int axis = c->n->a.slice.axis;
  *outer = *inner = 1;
  for (int d = 0; d < axis; d++) *outer *= s->dim[d];
  for (int d = axis + 1; d < s->rank; d++) *inner *= s->dim[d];
  *n = s->dim[axis];
}

static void slice_cpu_fwd(CpuOp *c) {
  int64_t outer, n, inner, a = c->n->a.slice.start, m;
  slice_geom(c, &outer, &n, &inner);
  m = c->n->a.slice.end - a;
  for (int64_t o = 0; o < outer; o++)
    memcpy(c->y[0] + o * m * inner, c->x[0] + (o * n + a) * inner,
           sizeof(float) * (size_t)(m * inner));
}

static void slice_cpu_bwd(CpuOp *c) {
  int64_t outer, n, inner, a = c->n->a.slice.start, m;
  if (!c->dx[0]) return;
  slice_geom(c, &outer, &n, &inner);
  m = c->n->a.slice.end - a;
  for (int64_t o = 0; o < outer; o++)
    memcpy(c->dx[0] + (o * n + a) * inner, c->dy[0] + o * m * inner,
           sizeof(float) * (size_t)(m * inner));
}

const OpDef opdef_SLICE = {
    "slice(x, start, end, axis=-1)",
    {ARG_TENSOR("x"), {"start", A_I, true, 0, ARG_ANY},
     {"end", A_I, true, 0, ARG_ANY}, {"axis", A_I, false, -1, ARG_ANY}},
    slice_lower, flops_none, slice_attrs, NULL,
    slice_cpu_fwd, slice_cpu_bwd, NULL, view_cuda_fwd, view_cuda_bwd,
};
