/* frontend/ast.c: building the syntax tree.
 *
 * The parser's actions are one line each, calling these builders. One
 * generic node type (kind, span, a string, a number, children) keeps the
 * grammar small; mdlc.h says, per kind, which fields mean what. Every
 * builder bounds the tree's height: a tree that would be deeper than
 * AST_MAX_DEPTH becomes one AST_ERROR (reported once), so the recursive
 * walks of the lowering can never exhaust the stack, whatever the input.
 */
#include "mdlc.h"

static const char *const kind_names[] = {
    [AST_INT] = "integer",       [AST_FLOAT] = "number",
    [AST_SIZE] = "size",         [AST_BOOL] = "boolean",
    [AST_NAME] = "name",         [AST_BINOP] = "expression",
    [AST_NEG] = "expression",    [AST_CALL] = "call",
    [AST_OPTION] = "option",     [AST_TYPE] = "tensor type",
    [AST_REPEAT] = "repeat",     [AST_CHECKPOINT] = "checkpoint",
    [AST_LET] = "let",           [AST_INPUT] = "input",
    [AST_BIND] = "binding",      [AST_LOSS] = "loss",
    [AST_OUTPUT] = "output",     [AST_RETURN] = "return",
    [AST_CKBLOCK] = "checkpoint block", [AST_BLOCK] = "block",
    [AST_MODEL] = "model",       [AST_TRAIN] = "train block",
    [AST_LIST] = "list",         [AST_FILE] = "file",
    [AST_ERROR] = "error",
};

const char *ast_kind_name(AstKind k) { return kind_names[k]; }

static bool is_expr(AstKind k) { return k <= AST_CHECKPOINT; }

Ast *ast_new(AstKind k, Loc loc) {
  Ast *a = xalloc(sizeof *a);
  a->kind = k;
  a->loc = loc;
  a->name_loc = loc;
  return a;
}

Ast *ast_leaf_str(AstKind k, Loc loc, const char *str) {
  Ast *a = ast_new(k, loc);
  a->str = str;
  return a;
}

/* Applies the depth rule to a node whose children are all in place:
 * returns the node, or the AST_ERROR that replaces it. */
static Ast *bound_depth(Ast *a) {
  int d = 0;
  for (int i = 0; i < a->nkid; i++) {
    Ast *k = a->kid[i];
    if (!k) continue;
    if (k->kind == AST_ERROR && k->ival == 1 && is_expr(a->kind)) return k;
    if (k->depth > d) d = k->depth;
  }
  a->depth = d + 1;
  if (a->depth <= AST_MAX_DEPTH || !is_expr(a->kind)) return a;
  diag_error(a->loc, "expression nested too deeply (more than %d levels)",
             AST_MAX_DEPTH);
  Ast *e = ast_new(AST_ERROR, a->loc);
  e->ival = 1; /* "too deep": parents take this node instead of reporting */
  return e;
}

Ast *ast_push(Ast *list, Ast *kid) {
  if (!kid) return list;
  if (list->nkid >= list->capkid) {
    int nc = list->capkid ? 2 * list->capkid : 4;
    list->kid = xrealloc_array(list->kid, (size_t)list->capkid, (size_t)nc,
                               sizeof *list->kid);
    list->capkid = nc;
  }
  list->kid[list->nkid++] = kid;
  if (kid->loc.file >= 0) {
    if (list->loc.file < 0) list->loc = kid->loc;
    if (kid->loc.begin < list->loc.begin) list->loc.begin = kid->loc.begin;
    if (kid->loc.end > list->loc.end) list->loc.end = kid->loc.end;
  }
  if (kid->depth + 1 > list->depth) list->depth = kid->depth + 1;
  return list;
}

Ast *ast_prepend(Ast *list, Ast *kid) {
  if (!kid) return list;
  ast_push(list, kid);
  for (int i = list->nkid - 1; i > 0; i--) list->kid[i] = list->kid[i - 1];
  list->kid[0] = kid;
  return list;
}

Ast *ast_node(AstKind k, Loc loc, const char *str, Loc name_loc, Ast *a,
              Ast *b) {
  Ast *n = ast_new(k, loc);
  n->str = str;
  n->name_loc = name_loc.file >= 0 ? name_loc : loc;
  if (a) ast_push(n, a);
  if (b) ast_push(n, b);
  n->loc = loc; /* the rule's span, not just the children's */
  return bound_depth(n);
}

Ast *ast_retag(Ast *list, AstKind k, Loc loc, const char *str, Loc name_loc) {
  list->kind = k;
  list->loc = loc;
  list->str = str;
  list->name_loc = name_loc.file >= 0 ? name_loc : loc;
  return bound_depth(list);
}

Ast *ast_shared(Ast *block) {
  if (block) block->ival = 1;
  return block;
}
