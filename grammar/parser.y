/* grammar/parser.y: the .mdl grammar (bison).
 *
 * A pure, located parser that builds the syntax tree (mdlc.h, frontend/
 * ast.c) and nothing else: every action is one line calling a builder, and
 * every semantic check (names, shapes, options) lives in frontend/lower.c.
 * Statements end at a newline or ';' (the scanner drops newlines inside
 * ( ) and [ ]). Syntax errors are reported in our own words by
 * yyreport_syntax_error below ("unexpected 'return', expected ')' or
 * ','"); a few deliberate `error` rules add a targeted hint, and recovery
 * resumes at the next end of line, so one run reports many errors.
 *
 * Semantic values are tree nodes and strings from the compiler's arena
 * (util.c), freed together at exit; nothing is owned by the parser stack,
 * so no %destructor is needed when bison discards values in recovery.
 */
%code requires {
#include "mdlc.h"
#ifndef YY_TYPEDEF_YY_SCANNER_T
#define YY_TYPEDEF_YY_SCANNER_T
typedef void *yyscan_t;
#endif

enum { MAX_NEST = 200 }; /* open ( and [ at once */

/* State shared by the scanner (yyextra) and the parser. */
typedef struct {
  int file;            /* source file id (src_add) */
  uint32_t off;        /* scanner: byte offset of the next token */
  int nest;            /* scanner: ( and [ open now */
  Loc open[MAX_NEST];  /* scanner: where each of them was opened */
  int nbrace;          /* scanner: { open now */
  Loc brace[MAX_NEST]; /* scanner: where each of them was opened */
  bool fatal;          /* scanner: gave up; end of file from now on */
  bool eof_nl;         /* scanner: the final end of line was sent */
  Loc unclosed;        /* scanner: a ( or [ that a } closed, file -1 if none */
  int nerrors;         /* parser: syntax errors reported */
  bool quiet;          /* parser: the last error was the scanner's: no hint */
  Ast *root;           /* parser: the whole file */
} ParseState;

/* A rule's span runs from its first symbol to its last; an empty rule sits
 * at the end of what came before. */
#define YYLLOC_DEFAULT(Cur, Rhs, N)                                          \
  do {                                                                       \
    if (N) {                                                                 \
      (Cur).file = YYRHSLOC(Rhs, 1).file;                                    \
      (Cur).begin = YYRHSLOC(Rhs, 1).begin;                                  \
      (Cur).end = YYRHSLOC(Rhs, N).end;                                      \
    } else {                                                                 \
      (Cur).file = YYRHSLOC(Rhs, 0).file;                                    \
      (Cur).begin = (Cur).end = YYRHSLOC(Rhs, 0).end;                        \
    }                                                                        \
  } while (0)
}

%code provides {
int mdl_yylex(MDL_YYSTYPE *lval, Loc *lloc, yyscan_t scanner);
void mdl_yyerror(Loc *lloc, yyscan_t scanner, ParseState *ps,
                 const char *msg);
}

%code {
#include <ctype.h>
#include <string.h>

/* A hint for the syntax error just reported by the parser (not for a bad
 * character, which the scanner reported in its own words). */
#define HINT(...) (ps->quiet ? (void)0 : diag_hint(__VA_ARGS__))
}

%define api.pure full
%define api.prefix {mdl_yy}
%define api.location.type {Loc}
%define parse.error custom
%define parse.lac full
%locations
%expect 0
%param {yyscan_t scanner}
%parse-param {ParseState *ps}
%initial-action { @$ = (Loc){ps->file, 0, 0}; }

%union {
  int64_t i;     /* integers and sizes */
  double f;      /* floats */
  const char *s; /* names */
  Ast *a;        /* everything built */
}

%token T_LET "'let'" T_BLOCK "'block'" T_MODEL "'model'" T_INPUT "'input'"
%token T_SHARED "'shared'"
%token T_OUTPUT "'output'" T_RETURN "'return'" T_LOSS "'loss'"
%token T_REPEAT "'repeat'" T_CHECKPOINT "'checkpoint'" T_TRAIN "'train'"
%token T_TRUE "'true'" T_FALSE "'false'"
%token <s> T_NAME "name"
%token <i> T_INT "integer"
%token <f> T_FLOAT "number"
%token <i> T_SIZE "size"
%token T_NL "end of line"
%token T_BAD "invalid character"

%type <a> top_items top_item body stmts stmt names params params_opt
%type <a> train_items train_value type dims_opt dims rhs call args_opt args
%type <a> arg expr primary chain

%left '+' '-'
%left '*' '/' '%'
%precedence UMINUS

%%

file:
  top_items                        { ps->root = $1; }
  ;

top_items:
  %empty                           { $$ = ast_new(AST_FILE, @$); }
  | top_items T_NL                 { $$ = $1; }
  | top_items ';'                  { $$ = $1; }
  | top_items top_item T_NL        { $$ = ast_push($1, $2); }
  | top_items top_item ';'         { $$ = ast_push($1, $2); }
  | top_items error T_NL           { $$ = $1; yyerrok; }
  ;

top_item:
  T_LET T_NAME '=' expr            { $$ = ast_node(AST_LET, @$, $2, @2, $4, NULL); }
  | T_BLOCK T_NAME '(' params_opt ')' nls '{' body '}'
                                   { $$ = ast_node(AST_BLOCK, @$, $2, @2, $4, $8); }
  | T_BLOCK T_NAME error           { $$ = NULL; HINT("a block is written 'block NAME(ARG, ...) { ... return EXPR }'"); }
  | T_SHARED T_BLOCK T_NAME '(' params_opt ')' nls '{' body '}'
                                   { $$ = ast_shared(ast_node(AST_BLOCK, @$, $3, @3, $5, $9)); }
  | T_SHARED error                 { $$ = NULL; HINT("'shared' comes before a block: 'shared block NAME(ARG, ...) { ... }'"); }
  | T_MODEL T_NAME nls '{' body '}'
                                   { $$ = ast_node(AST_MODEL, @$, $2, @2, $5, NULL); }
  | T_TRAIN nls '{' train_items '}'
                                   { $$ = ast_retag($4, AST_TRAIN, @$, "train", @1); }
  ;

nls:
  %empty
  | nls T_NL
  ;

params_opt:
  %empty                           { $$ = ast_new(AST_LIST, @$); }
  | params                         { $$ = $1; }
  ;

params:
  T_NAME                           { $$ = ast_push(ast_new(AST_LIST, @$), ast_leaf_str(AST_NAME, @1, $1)); }
  | params ',' T_NAME              { $$ = ast_push($1, ast_leaf_str(AST_NAME, @3, $3)); }
  ;

/* A statement list; the last statement may end at the closing brace. */
body:
  stmts                            { $$ = $1; }
  | stmts stmt                     { $$ = ast_push($1, $2); }
  ;

stmts:
  %empty                           { $$ = ast_new(AST_LIST, @$); }
  | stmts T_NL                     { $$ = $1; }
  | stmts ';'                      { $$ = $1; }
  | stmts stmt T_NL                { $$ = ast_push($1, $2); }
  | stmts stmt ';'                 { $$ = ast_push($1, $2); }
  | stmts error T_NL               { $$ = $1; yyerrok; }
  ;

stmt:
  T_LET T_NAME '=' expr            { $$ = ast_node(AST_LET, @$, $2, @2, $4, NULL); }
  | T_INPUT T_NAME ':' type        { $$ = ast_node(AST_INPUT, @$, $2, @2, $4, NULL); }
  | T_INPUT error                  { $$ = NULL; HINT("declare an input as 'input NAME : DTYPE[DIM, ...]', e.g. 'input x : f32[8, 784]'"); }
  | names '=' rhs                  { $$ = ast_push(ast_retag($1, AST_BIND, @$, NULL, @1), $3); }
  | T_LOSS rhs                     { $$ = ast_node(AST_LOSS, @$, "loss", @1, $2, NULL); }
  | T_OUTPUT rhs                   { $$ = ast_node(AST_OUTPUT, @$, "output", @1, $2, NULL); }
  | T_RETURN rhs                   { $$ = ast_node(AST_RETURN, @$, "return", @1, $2, NULL); }
  | T_CHECKPOINT nls '{' body '}'  { $$ = ast_retag($4, AST_CKBLOCK, @$, "checkpoint", @1); }
  ;

names:
  T_NAME                           { $$ = ast_push(ast_new(AST_LIST, @$), ast_leaf_str(AST_NAME, @1, $1)); }
  | names ',' T_NAME               { $$ = ast_push($1, ast_leaf_str(AST_NAME, @3, $3)); }
  ;

train_items:
  %empty                           { $$ = ast_new(AST_LIST, @$); }
  | train_items T_NL               { $$ = $1; }
  | train_items ';'                { $$ = $1; }
  | train_items T_NAME train_value { $$ = ast_push($1, ast_node(AST_OPTION, @$, $2, @2, $3, NULL)); }
  | train_items error T_NL         { $$ = $1; yyerrok; HINT("the train block holds 'KEY VALUE' pairs, e.g. 'optimizer adamw'"); }
  ;

train_value:
  T_NAME                           { $$ = ast_leaf_str(AST_NAME, @1, $1); }
  | T_INT                          { $$ = ast_new(AST_INT, @1); $$->ival = $1; }
  | T_SIZE                         { $$ = ast_new(AST_SIZE, @1); $$->ival = $1; }
  | T_FLOAT                        { $$ = ast_new(AST_FLOAT, @1); $$->fval = $1; }
  | T_TRUE                         { $$ = ast_new(AST_BOOL, @1); $$->ival = 1; }
  | T_FALSE                        { $$ = ast_new(AST_BOOL, @1); $$->ival = 0; }
  ;

type:
  T_NAME '[' dims_opt ']'          { $$ = ast_retag($3, AST_TYPE, @$, $1, @1); }
  ;

dims_opt:
  %empty                           { $$ = ast_new(AST_LIST, @$); }
  | dims                           { $$ = $1; }
  | dims ','                       { $$ = $1; }
  ;

dims:
  expr                             { $$ = ast_push(ast_new(AST_LIST, @$), $1); }
  | dims ',' expr                  { $$ = ast_push($1, $3); }
  ;

/* What a binding, loss, output or return takes. */
rhs:
  expr                             { $$ = $1; }
  ;

/* A block call with repeat and checkpoint, in either order. */
chain:
  T_REPEAT expr call             { $$ = ast_node(AST_REPEAT, @$, "repeat", @1, $2, $3); }
  | T_REPEAT expr T_CHECKPOINT call
      { $$ = ast_node(AST_REPEAT, @$, "repeat", @1, $2, ast_node(AST_CHECKPOINT, @$, "checkpoint", @3, $4, NULL)); }
  | T_CHECKPOINT call              { $$ = ast_node(AST_CHECKPOINT, @$, "checkpoint", @1, $2, NULL); }
  | T_CHECKPOINT T_REPEAT expr call
      { $$ = ast_node(AST_CHECKPOINT, @$, "checkpoint", @1, ast_node(AST_REPEAT, @$, "repeat", @2, $3, $4), NULL); }
  ;

call:
  T_NAME '(' args_opt ')'          { $$ = ast_retag($3, AST_CALL, @$, $1, @1); }
  ;

args_opt:
  %empty                           { $$ = ast_new(AST_LIST, @$); }
  | args                           { $$ = $1; }
  | args ','                       { $$ = $1; }
  ;

args:
  arg                              { $$ = ast_push(ast_new(AST_LIST, @$), $1); }
  | args ',' arg                   { $$ = ast_push($1, $3); }
  ;

arg:
  expr                             { $$ = $1; }
  | T_NAME '=' expr                { $$ = ast_node(AST_OPTION, @$, $1, @1, $3, NULL); }
  ;

expr:
  expr '+' expr                    { $$ = ast_node(AST_BINOP, @$, "+", @2, $1, $3); $$->op = '+'; }
  | expr '-' expr                  { $$ = ast_node(AST_BINOP, @$, "-", @2, $1, $3); $$->op = '-'; }
  | expr '*' expr                  { $$ = ast_node(AST_BINOP, @$, "*", @2, $1, $3); $$->op = '*'; }
  | expr '/' expr                  { $$ = ast_node(AST_BINOP, @$, "/", @2, $1, $3); $$->op = '/'; }
  | expr '%' expr                  { $$ = ast_node(AST_BINOP, @$, "%", @2, $1, $3); $$->op = '%'; }
  | '-' expr %prec UMINUS          { $$ = ast_node(AST_NEG, @$, "-", @1, $2, NULL); }
  | primary                        { $$ = $1; }
  ;

primary:
  T_INT                            { $$ = ast_new(AST_INT, @1); $$->ival = $1; }
  | T_FLOAT                        { $$ = ast_new(AST_FLOAT, @1); $$->fval = $1; }
  | T_SIZE                         { $$ = ast_new(AST_SIZE, @1); $$->ival = $1; }
  | T_TRUE                         { $$ = ast_new(AST_BOOL, @1); $$->ival = 1; }
  | T_FALSE                        { $$ = ast_new(AST_BOOL, @1); $$->ival = 0; }
  | T_NAME                         { $$ = ast_leaf_str(AST_NAME, @1, $1); }
  | call                           { $$ = $1; }
  | chain                          { $$ = $1; }
  | type                           { $$ = $1; }
  | '(' expr ')'                   { $$ = $2; }
  ;

%%

/* The text of a token, for messages: at most 40 bytes, on one line. */
static const char *token_text(const ParseState *ps, Loc loc, char *buf) {
  const char *src = src_text(ps->file);
  size_t n = 0;
  for (uint32_t i = loc.begin; i < loc.end && n < 40; i++) {
    unsigned char c = (unsigned char)src[i];
    buf[n++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
  }
  if (loc.end - loc.begin > 40) memcpy(buf + n, "...", 3), n += 3;
  buf[n] = 0;
  return buf;
}

static bool is_keyword(yysymbol_kind_t k) {
  return k >= YYSYMBOL_T_LET && k <= YYSYMBOL_T_FALSE;
}

/* The word just before byte `at` (skipping blanks), into buf. */
static const char *word_before(const ParseState *ps, uint32_t at, char *buf) {
  const char *src = src_text(ps->file);
  uint32_t e = at;
  while (e > 0 && (src[e - 1] == ' ' || src[e - 1] == '\t')) e--;
  uint32_t b = e;
  while (b > 0 && e - b < 16 &&
         (isalnum((unsigned char)src[b - 1]) || src[b - 1] == '_'))
    b--;
  memcpy(buf, src + b, e - b);
  buf[e - b] = 0;
  return buf;
}

static bool expected(const yypcontext_t *ctx, yysymbol_kind_t k) {
  yysymbol_kind_t all[YYNTOKENS];
  int n = yypcontext_expected_tokens(ctx, all, YYNTOKENS);
  for (int i = 0; i < n; i++)
    if (all[i] == k) return true;
  return false;
}

/* Character tokens by their spelling, "'='". */
static bool is_sym(yysymbol_kind_t k, const char *name) {
  return strcmp(yysymbol_name(k), name) == 0;
}

static yysymbol_kind_t sym_of(const char *name) {
  for (int k = 0; k < YYNTOKENS; k++)
    if (is_sym((yysymbol_kind_t)k, name)) return (yysymbol_kind_t)k;
  return YYSYMBOL_YYUNDEF;
}

static const char *const keywords[] = {
    "let", "block", "shared", "model", "input", "output", "return", "loss",
    "repeat", "checkpoint", "train", "true", "false"};

/* "unexpected 'x', expected ')' or ','", then a hint where one is clear. */
static int yyreport_syntax_error(const yypcontext_t *ctx, yyscan_t scanner,
                                 ParseState *ps) {
  (void)scanner;
  yysymbol_kind_t tok = yypcontext_token(ctx);
  ps->quiet = tok == YYSYMBOL_T_BAD || ps->fatal;
  if (ps->quiet) return 0; /* the scanner reported it */
  if (tok == YYSYMBOL_YYEOF && ps->nerrors > 0) return 0; /* a cascade */
  ps->nerrors++;
  Loc loc = *yypcontext_location(ctx);
  char tb[48];
  const char *what = tok == YYSYMBOL_YYEOF ? "end of file"
                     : tok == YYSYMBOL_T_NL ? "end of line"
                                            : NULL;
  StrBuf msg = {0};
  if (what) sb_printf(&msg, "unexpected %s", what);
  else sb_printf(&msg, "unexpected '%s'", token_text(ps, loc, tb));
  enum { MAXEXP = 5 };
  yysymbol_kind_t exp[MAXEXP];
  int n = yypcontext_expected_tokens(ctx, NULL, 0);
  bool expects_name = false;
  if (n > 0 && n <= MAXEXP) {
    yypcontext_expected_tokens(ctx, exp, MAXEXP);
    for (int i = 0; i < n; i++) {
      sb_printf(&msg, "%s%s", i == 0 ? ", expected " : i == n - 1 ? " or " : ", ",
                yysymbol_name(exp[i]));
      expects_name |= exp[i] == YYSYMBOL_T_NAME;
    }
  }
  diag_error(loc, "%s", msg.s);
  char wb[20];
  const char *prev = word_before(ps, loc.begin, wb);
  bool prev_kw = false;
  for (size_t i = 0; i < sizeof keywords / sizeof *keywords; i++)
    prev_kw |= strcmp(prev, keywords[i]) == 0;
  if (is_keyword(tok) && expects_name)
    diag_hint("'%s' is a keyword and cannot be used as a name", tb);
  else if (prev_kw && is_sym(tok, "'='"))
    diag_hint("'%s' is a keyword and cannot be used as a name", prev);
  else if (is_sym(tok, "'('") && expected(ctx, sym_of("'='")))
    diag_hint("a statement binds a name, 'NAME = EXPR'; to keep a result "
              "to the end, write 'output EXPR'");
  else if (tok != YYSYMBOL_T_NL && tok != YYSYMBOL_YYEOF &&
           expected(ctx, YYSYMBOL_T_NL))
    diag_hint("end the statement before this with a newline or ';'");
  if (tok == YYSYMBOL_YYEOF && ps->nest > 0)
    diag_note(ps->open[ps->nest - 1], "'%c' opened here is never closed",
              src_text(ps->file)[ps->open[ps->nest - 1].begin]);
  else if (is_sym(tok, "'}'") && ps->unclosed.file >= 0)
    diag_note(ps->unclosed, "'%c' opened here is never closed",
              src_text(ps->file)[ps->unclosed.begin]);
  else if (tok == YYSYMBOL_YYEOF && ps->nbrace > 0)
    diag_note(ps->brace[ps->nbrace - 1], "'{' opened here is never closed");
  return 0;
}

void mdl_yyerror(Loc *lloc, yyscan_t scanner, ParseState *ps,
                 const char *msg) {
  (void)scanner;
  (void)ps;
  if (strcmp(msg, "memory exhausted") == 0)
    diag_error(*lloc, "the file is nested too deeply to parse");
  else
    diag_error(*lloc, "%s", msg);
}
