/* Backtracking regex: pattern -> syntax tree -> program -> a matcher with an
 * explicit backtracking stack (no recursion except into lookaheads), so a
 * long run of letters does not grow the C stack. */
#include "text_regex.h"
#include "text_unicode.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { RX_MAX_REPEAT = 1000, RX_MAX_PROGRAM = 1 << 20 };

/* ---- classes ---------------------------------------------------------------- */

enum item_kind { IT_RANGE, IT_CATS, IT_SPACE, IT_WORD, IT_CLASS };

struct rx_item {
    uint8_t kind;
    bool neg;           /* \S, \P{..}, \W, \D */
    uint32_t lo, hi;    /* IT_RANGE */
    uint32_t mask;      /* IT_CATS: bits over enum uc_category */
    int sub;            /* IT_CLASS: a nested class */
};

struct rx_class {
    bool neg, icase;
    struct rx_item *items;
    int n, cap;
};

/* ---- program ------------------------------------------------------------------ */

enum op {
    OP_CHAR, OP_CHAR_I, OP_ANY, OP_CLASS, OP_SPLIT, OP_JMP, OP_LOOK, OP_NLOOK,
    OP_BOL, OP_EOL, OP_BOS, OP_EOS, OP_MATCH
};

struct rx_inst {
    uint8_t op;
    uint32_t c;      /* OP_CHAR*: code point; OP_CLASS: class index */
    int32_t x, y;    /* OP_SPLIT: first, second choice; OP_JMP: x; OP_*LOOK: body x, continue y */
};

struct rx_regex {
    struct rx_inst *prog;
    int n, cap;
    struct rx_class *classes;
    int n_classes, cap_classes;
};

/* ---- syntax tree ----------------------------------------------------------------- */

enum node_kind { N_EMPTY, N_CHAR, N_ANY, N_CLASS, N_CAT, N_ALT, N_REPEAT, N_LOOK, N_BOL, N_EOL, N_BOS, N_EOS };

struct node {
    uint8_t kind;
    bool icase, greedy, neg;
    uint32_t c;         /* N_CHAR code point, N_CLASS class index */
    int min, max;       /* N_REPEAT; max < 0: unbounded */
    int kid, next;      /* first child, next sibling (indices, -1 none) */
};

struct parser {
    const char *s;
    size_t pos, len;
    bool icase;
    struct node *nodes;
    int n, cap;
    struct rx_regex *re;
    char *err;
    size_t err_size;
    bool failed;
};

static int fail(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct parser *p, const char *fmt, ...) {
    if (p->failed) return -1;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(p->err, p->err_size, "regex /%s/ at offset %zu: %s", p->s, p->pos, msg);
    p->failed = true;
    return -1;
}

static int new_node(struct parser *p, enum node_kind kind) {
    if (p->n == p->cap) {
        int nc = p->cap ? p->cap * 2 : 32;
        struct node *nn = realloc(p->nodes, (size_t)nc * sizeof *nn);
        if (!nn) return fail(p, "out of memory");
        p->nodes = nn;
        p->cap = nc;
    }
    p->nodes[p->n] = (struct node){.kind = (uint8_t)kind, .icase = p->icase, .kid = -1, .next = -1};
    return p->n++;
}

static int new_class(struct parser *p) {
    struct rx_regex *re = p->re;
    if (re->n_classes == re->cap_classes) {
        int nc = re->cap_classes ? re->cap_classes * 2 : 8;
        struct rx_class *ncl = realloc(re->classes, (size_t)nc * sizeof *ncl);
        if (!ncl) return fail(p, "out of memory");
        re->classes = ncl;
        re->cap_classes = nc;
    }
    re->classes[re->n_classes] = (struct rx_class){.icase = p->icase};
    return re->n_classes++;
}

static bool class_add(struct parser *p, int cls, struct rx_item it) {
    struct rx_class *c = &p->re->classes[cls];
    if (c->n == c->cap) {
        int nc = c->cap ? c->cap * 2 : 8;
        struct rx_item *ni = realloc(c->items, (size_t)nc * sizeof *ni);
        if (!ni) return fail(p, "out of memory") == 0;
        c->items = ni;
        c->cap = nc;
    }
    c->items[c->n++] = it;
    return true;
}

static bool at_end(const struct parser *p) { return p->pos >= p->len; }
static char peek(const struct parser *p) { return at_end(p) ? 0 : p->s[p->pos]; }

static uint32_t next_cp(struct parser *p) {
    uint32_t cp;
    p->pos += uc_decode(p->s, p->pos, &cp);
    return cp;
}

/* General category names for \p{..}: short and long forms. */
static const struct { const char *name; uint32_t mask; } category_names[] = {
    {"L", UC_MASK_L}, {"Letter", UC_MASK_L}, {"M", UC_MASK_M}, {"Mark", UC_MASK_M},
    {"N", UC_MASK_N}, {"Number", UC_MASK_N}, {"P", UC_MASK_P}, {"Punctuation", UC_MASK_P},
    {"S", UC_MASK_S}, {"Symbol", UC_MASK_S}, {"Z", UC_MASK_Z}, {"Separator", UC_MASK_Z},
    {"C", UC_MASK_C}, {"Other", UC_MASK_C},
    {"LC", UC_BIT(UC_LU) | UC_BIT(UC_LL) | UC_BIT(UC_LT)}, {"L&", UC_BIT(UC_LU) | UC_BIT(UC_LL) | UC_BIT(UC_LT)},
    {"Lu", UC_BIT(UC_LU)}, {"Uppercase_Letter", UC_BIT(UC_LU)}, {"Ll", UC_BIT(UC_LL)},
    {"Lowercase_Letter", UC_BIT(UC_LL)}, {"Lt", UC_BIT(UC_LT)}, {"Titlecase_Letter", UC_BIT(UC_LT)},
    {"Lm", UC_BIT(UC_LM)}, {"Modifier_Letter", UC_BIT(UC_LM)}, {"Lo", UC_BIT(UC_LO)},
    {"Other_Letter", UC_BIT(UC_LO)}, {"Mn", UC_BIT(UC_MN)}, {"Nonspacing_Mark", UC_BIT(UC_MN)},
    {"Mc", UC_BIT(UC_MC)}, {"Spacing_Mark", UC_BIT(UC_MC)}, {"Me", UC_BIT(UC_ME)},
    {"Enclosing_Mark", UC_BIT(UC_ME)}, {"Nd", UC_BIT(UC_ND)}, {"Decimal_Number", UC_BIT(UC_ND)},
    {"Nl", UC_BIT(UC_NL)}, {"Letter_Number", UC_BIT(UC_NL)}, {"No", UC_BIT(UC_NO)},
    {"Other_Number", UC_BIT(UC_NO)}, {"Pc", UC_BIT(UC_PC)}, {"Connector_Punctuation", UC_BIT(UC_PC)},
    {"Pd", UC_BIT(UC_PD)}, {"Dash_Punctuation", UC_BIT(UC_PD)}, {"Ps", UC_BIT(UC_PS)},
    {"Open_Punctuation", UC_BIT(UC_PS)}, {"Pe", UC_BIT(UC_PE)}, {"Close_Punctuation", UC_BIT(UC_PE)},
    {"Pi", UC_BIT(UC_PI)}, {"Initial_Punctuation", UC_BIT(UC_PI)}, {"Pf", UC_BIT(UC_PF)},
    {"Final_Punctuation", UC_BIT(UC_PF)}, {"Po", UC_BIT(UC_PO)}, {"Other_Punctuation", UC_BIT(UC_PO)},
    {"Sm", UC_BIT(UC_SM)}, {"Math_Symbol", UC_BIT(UC_SM)}, {"Sc", UC_BIT(UC_SC)},
    {"Currency_Symbol", UC_BIT(UC_SC)}, {"Sk", UC_BIT(UC_SK)}, {"Modifier_Symbol", UC_BIT(UC_SK)},
    {"So", UC_BIT(UC_SO)}, {"Other_Symbol", UC_BIT(UC_SO)}, {"Zs", UC_BIT(UC_ZS)},
    {"Space_Separator", UC_BIT(UC_ZS)}, {"Zl", UC_BIT(UC_ZL)}, {"Line_Separator", UC_BIT(UC_ZL)},
    {"Zp", UC_BIT(UC_ZP)}, {"Paragraph_Separator", UC_BIT(UC_ZP)}, {"Cc", UC_BIT(UC_CC)},
    {"Control", UC_BIT(UC_CC)}, {"Cf", UC_BIT(UC_CF)}, {"Format", UC_BIT(UC_CF)},
    {"Cs", UC_BIT(UC_CS)}, {"Surrogate", UC_BIT(UC_CS)}, {"Co", UC_BIT(UC_CO)},
    {"Private_Use", UC_BIT(UC_CO)}, {"Cn", UC_BIT(UC_CN)}, {"Unassigned", UC_BIT(UC_CN)},
    {"Any", ~0u},
};

/* \p{..} / \P{..} after the 'p' or 'P'. */
static bool parse_property(struct parser *p, bool neg, struct rx_item *it) {
    char name[48];
    size_t n = 0;
    if (peek(p) == '{') {
        p->pos++;
        if (peek(p) == '^') {
            neg = !neg;
            p->pos++;
        }
        while (!at_end(p) && peek(p) != '}' && n + 1 < sizeof name) name[n++] = p->s[p->pos++];
        if (peek(p) != '}') return fail(p, "unterminated \\p{...}") == 0;
        p->pos++;
    } else if (!at_end(p)) {
        name[n++] = p->s[p->pos++];
    }
    name[n] = 0;
    for (size_t i = 0; i < sizeof category_names / sizeof category_names[0]; i++)
        if (strcmp(category_names[i].name, name) == 0) {
            *it = (struct rx_item){.kind = IT_CATS, .neg = neg, .mask = category_names[i].mask};
            return true;
        }
    return fail(p, "unicode property \\p{%s} is not supported (general categories only)", name) == 0;
}

static bool hex_value(struct parser *p, int min_digits, int max_digits, uint32_t *out) {
    uint32_t v = 0;
    int d = 0;
    while (d < max_digits && !at_end(p)) {
        char c = peek(p);
        int x = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (x < 0) break;
        v = v * 16 + (uint32_t)x;
        p->pos++;
        d++;
    }
    if (d < min_digits || v > 0x10FFFF) return fail(p, "bad hexadecimal escape") == 0;
    *out = v;
    return true;
}

/* An escape after '\'. Either a code point (*is_item false) or a predicate. */
static bool parse_escape(struct parser *p, bool in_class, uint32_t *cp, struct rx_item *it, bool *is_item) {
    *is_item = false;
    if (at_end(p)) return fail(p, "trailing backslash") == 0;
    char c = p->s[p->pos++];
    switch (c) {
    case 't': *cp = '\t'; return true;
    case 'n': *cp = '\n'; return true;
    case 'r': *cp = '\r'; return true;
    case 'f': *cp = '\f'; return true;
    case 'v': *cp = '\v'; return true;
    case 'a': *cp = 7; return true;
    case 'e': *cp = 27; return true;
    case '0': *cp = 0; return true;
    case 'x':
        if (peek(p) == '{') {
            p->pos++;
            if (!hex_value(p, 1, 8, cp)) return false;
            if (peek(p) != '}') return fail(p, "unterminated \\x{...}") == 0;
            p->pos++;
            return true;
        }
        return hex_value(p, 1, 2, cp);
    case 'u': return hex_value(p, 4, 4, cp);
    case 's': case 'S':
        *it = (struct rx_item){.kind = IT_SPACE, .neg = c == 'S'};
        *is_item = true;
        return true;
    case 'd': case 'D':
        *it = (struct rx_item){.kind = IT_CATS, .neg = c == 'D', .mask = UC_BIT(UC_ND)};
        *is_item = true;
        return true;
    case 'w': case 'W':
        *it = (struct rx_item){.kind = IT_WORD, .neg = c == 'W'};
        *is_item = true;
        return true;
    case 'p': case 'P':
        *is_item = true;
        return parse_property(p, c == 'P', it);
    default:
        break;
    }
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '1' && c <= '9'))
        return fail(p, "escape \\%c is not supported%s", c, in_class ? " inside a class" : "") == 0;
    p->pos--;
    *cp = next_cp(p);
    return true;
}

static int parse_class(struct parser *p);

/* One class member: a nested class, an escape, a literal, or a range. */
static bool parse_class_item(struct parser *p, int cls) {
    if (peek(p) == '[') {
        if (p->pos + 1 < p->len && p->s[p->pos + 1] == ':')
            return fail(p, "POSIX bracket classes [:name:] are not supported") == 0;
        p->pos++;
        int sub = parse_class(p);
        return sub >= 0 && class_add(p, cls, (struct rx_item){.kind = IT_CLASS, .sub = sub});
    }
    if (peek(p) == '&' && p->pos + 1 < p->len && p->s[p->pos + 1] == '&')
        return fail(p, "class intersection && is not supported") == 0;
    uint32_t lo;
    struct rx_item it;
    bool is_item = false;
    if (peek(p) == '\\') {
        p->pos++;
        if (!parse_escape(p, true, &lo, &it, &is_item)) return false;
        if (is_item) return class_add(p, cls, it);
    } else {
        lo = next_cp(p);
    }
    uint32_t hi = lo;
    if (peek(p) == '-' && p->pos + 1 < p->len && p->s[p->pos + 1] != ']') {
        p->pos++;
        if (peek(p) == '\\') {
            p->pos++;
            if (!parse_escape(p, true, &hi, &it, &is_item)) return false;
            if (is_item) return fail(p, "a range cannot end in a class escape") == 0;
        } else {
            hi = next_cp(p);
        }
        if (hi < lo) return fail(p, "range out of order in a class") == 0;
    }
    return class_add(p, cls, (struct rx_item){.kind = IT_RANGE, .lo = lo, .hi = hi});
}

/* After '['; returns the class index. */
static int parse_class(struct parser *p) {
    int cls = new_class(p);
    if (cls < 0) return -1;
    if (peek(p) == '^') {
        p->re->classes[cls].neg = true;
        p->pos++;
    }
    bool first = true;
    while (!at_end(p) && (peek(p) != ']' || first)) {
        first = false;
        if (!parse_class_item(p, cls)) return -1;
    }
    if (peek(p) != ']') return fail(p, "unterminated class [...]");
    p->pos++;
    return cls;
}

static int parse_alt(struct parser *p);

static int wrap_item(struct parser *p, struct rx_item it) {
    int cls = new_class(p);
    if (cls < 0 || !class_add(p, cls, it)) return -1;
    int n = new_node(p, N_CLASS);
    if (n >= 0) p->nodes[n].c = (uint32_t)cls;
    return n;
}

/* After '(': groups, lookaheads and inline flags. */
static int parse_group(struct parser *p) {
    bool saved = p->icase;
    int look = 0; /* 1: (?=, 2: (?! */
    if (peek(p) == '?') {
        p->pos++;
        char c = peek(p);
        if (c == ':') {
            p->pos++;
        } else if (c == '=' || c == '!') {
            look = c == '=' ? 1 : 2;
            p->pos++;
        } else if (c == '<' && p->pos + 1 < p->len && (p->s[p->pos + 1] == '=' || p->s[p->pos + 1] == '!')) {
            return fail(p, "lookbehind is not supported");
        } else if (c == 'i' || c == '-') {
            bool on = true;
            for (; !at_end(p) && peek(p) != ':' && peek(p) != ')'; p->pos++) {
                if (peek(p) == '-') on = false;
                else if (peek(p) == 'i') p->icase = on;
                else return fail(p, "inline flag '%c' is not supported (only i)", peek(p));
            }
            if (at_end(p)) return fail(p, "unterminated group");
            if (peek(p) == ')') { /* (?i): applies to the rest of the enclosing group */
                p->pos++;
                return new_node(p, N_EMPTY);
            }
            p->pos++;
        } else {
            return fail(p, "group syntax (?%c is not supported", c ? c : ' ');
        }
    }
    int body = parse_alt(p);
    p->icase = saved;
    if (body < 0) return -1;
    if (peek(p) != ')') return fail(p, "missing )");
    p->pos++;
    if (!look) return body;
    int n = new_node(p, N_LOOK);
    if (n < 0) return -1;
    p->nodes[n].kid = body;
    p->nodes[n].neg = look == 2;
    return n;
}

static int parse_atom(struct parser *p) {
    char c = peek(p);
    switch (c) {
    case '(':
        p->pos++;
        return parse_group(p);
    case '[': {
        p->pos++;
        int cls = parse_class(p);
        if (cls < 0) return -1;
        int n = new_node(p, N_CLASS);
        if (n >= 0) p->nodes[n].c = (uint32_t)cls;
        return n;
    }
    case '.': p->pos++; return new_node(p, N_ANY);
    case '^': p->pos++; return new_node(p, N_BOL);
    case '$': p->pos++; return new_node(p, N_EOL);
    case '*': case '+': case '?': return fail(p, "nothing to repeat before '%c'", c);
    case '\\': {
        p->pos++;
        if (peek(p) == 'A' || peek(p) == 'z') {
            return new_node(p, p->s[p->pos++] == 'A' ? N_BOS : N_EOS);
        }
        uint32_t cp;
        struct rx_item it;
        bool is_item;
        if (!parse_escape(p, false, &cp, &it, &is_item)) return -1;
        if (is_item) return wrap_item(p, it);
        int n = new_node(p, N_CHAR);
        if (n >= 0) p->nodes[n].c = cp;
        return n;
    }
    default: {
        int n = new_node(p, N_CHAR);
        if (n >= 0) p->nodes[n].c = next_cp(p);
        return n;
    }
    }
}

/* {n}, {n,}, {n,m}; false (position unchanged) when not a valid quantifier,
 * in which case '{' is a literal, as in Oniguruma. */
static bool parse_braces(struct parser *p, int *min, int *max) {
    size_t at = p->pos + 1;
    long a = 0, b = -1;
    int digits = 0;
    while (at < p->len && p->s[at] >= '0' && p->s[at] <= '9' && digits < 6) a = a * 10 + (p->s[at++] - '0'), digits++;
    if (!digits) return false;
    if (at < p->len && p->s[at] == ',') {
        at++;
        int d2 = 0;
        long v = 0;
        while (at < p->len && p->s[at] >= '0' && p->s[at] <= '9' && d2 < 6) v = v * 10 + (p->s[at++] - '0'), d2++;
        b = d2 ? v : -1;
    } else {
        b = a;
    }
    if (at >= p->len || p->s[at] != '}') return false;
    p->pos = at + 1;
    *min = (int)a;
    *max = (int)b;
    return true;
}

static int parse_repeat(struct parser *p) {
    int atom = parse_atom(p);
    if (atom < 0) return -1;
    int min, max;
    char c = peek(p);
    if (c == '*') min = 0, max = -1, p->pos++;
    else if (c == '+') min = 1, max = -1, p->pos++;
    else if (c == '?') min = 0, max = 1, p->pos++;
    else if (c == '{' && parse_braces(p, &min, &max)) {
        if ((max >= 0 && max < min) || min > RX_MAX_REPEAT || max > RX_MAX_REPEAT)
            return fail(p, "bad or too large repetition {%d,%d} (at most %d)", min, max, RX_MAX_REPEAT);
    } else {
        return atom;
    }
    bool greedy = true;
    if (peek(p) == '?') {
        greedy = false;
        p->pos++;
    } else if (peek(p) == '+') {
        return fail(p, "possessive quantifiers are not supported");
    }
    if (peek(p) == '*' || peek(p) == '+' || (peek(p) == '?' && greedy))
        return fail(p, "nested quantifier");
    int n = new_node(p, N_REPEAT);
    if (n < 0) return -1;
    p->nodes[n].kid = atom;
    p->nodes[n].min = min;
    p->nodes[n].max = max;
    p->nodes[n].greedy = greedy;
    return n;
}

static int parse_cat(struct parser *p) {
    int cat = new_node(p, N_CAT), last = -1;
    if (cat < 0) return -1;
    while (!at_end(p) && peek(p) != '|' && peek(p) != ')') {
        int n = parse_repeat(p);
        if (n < 0) return -1;
        if (last < 0) p->nodes[cat].kid = n;
        else p->nodes[last].next = n;
        last = n;
    }
    return cat;
}

static int parse_alt(struct parser *p) {
    int first = parse_cat(p);
    if (first < 0 || peek(p) != '|') return first;
    int alt = new_node(p, N_ALT), last = first;
    if (alt < 0) return -1;
    p->nodes[alt].kid = first;
    while (peek(p) == '|') {
        p->pos++;
        int n = parse_cat(p);
        if (n < 0) return -1;
        p->nodes[last].next = n;
        last = n;
    }
    return alt;
}

/* ---- compiler ------------------------------------------------------------------ */

static bool nullable(const struct parser *p, int n) {
    const struct node *nd = &p->nodes[n];
    switch (nd->kind) {
    case N_CHAR: case N_ANY: case N_CLASS: return false;
    case N_CAT:
        for (int k = nd->kid; k >= 0; k = p->nodes[k].next)
            if (!nullable(p, k)) return false;
        return true;
    case N_ALT:
        for (int k = nd->kid; k >= 0; k = p->nodes[k].next)
            if (nullable(p, k)) return true;
        return false;
    case N_REPEAT: return nd->min == 0 || nullable(p, nd->kid);
    default: return true;
    }
}

static int emit(struct parser *p, enum op op, uint32_t c, int32_t x, int32_t y) {
    struct rx_regex *re = p->re;
    if (re->n >= RX_MAX_PROGRAM) return fail(p, "pattern too large");
    if (re->n == re->cap) {
        int nc = re->cap ? re->cap * 2 : 64;
        struct rx_inst *ni = realloc(re->prog, (size_t)nc * sizeof *ni);
        if (!ni) return fail(p, "out of memory");
        re->prog = ni;
        re->cap = nc;
    }
    re->prog[re->n] = (struct rx_inst){.op = (uint8_t)op, .c = c, .x = x, .y = y};
    return re->n++;
}

static bool compile(struct parser *p, int n);

/* The greedy split tries the body first; the lazy one skips it first. */
static int emit_split(struct parser *p, bool greedy, int32_t body, int32_t skip) {
    return greedy ? emit(p, OP_SPLIT, 0, body, skip) : emit(p, OP_SPLIT, 0, skip, body);
}

static void patch_split(struct parser *p, int at, bool greedy, int32_t body, int32_t skip) {
    p->re->prog[at].x = greedy ? body : skip;
    p->re->prog[at].y = greedy ? skip : body;
}

static bool compile_repeat(struct parser *p, const struct node *nd) {
    if (nd->max < 0 && nullable(p, nd->kid))
        return fail(p, "an unbounded repetition of something that can match empty is not supported") == 0;
    for (int i = 0; i < nd->min; i++)
        if (!compile(p, nd->kid)) return false;
    if (nd->max < 0) { /* L: split body, end; body; jmp L; end: */
        int split = emit_split(p, nd->greedy, 0, 0);
        if (split < 0 || !compile(p, nd->kid) || emit(p, OP_JMP, 0, split, 0) < 0) return false;
        patch_split(p, split, nd->greedy, split + 1, p->re->n);
        return true;
    }
    /* Optional copies nest: each split skips to the common end. */
    int opt = nd->max - nd->min, splits[RX_MAX_REPEAT];
    for (int i = 0; i < opt; i++) {
        splits[i] = emit_split(p, nd->greedy, 0, 0);
        if (splits[i] < 0 || !compile(p, nd->kid)) return false;
    }
    for (int i = 0; i < opt; i++) patch_split(p, splits[i], nd->greedy, splits[i] + 1, p->re->n);
    return true;
}

static bool compile(struct parser *p, int n) {
    const struct node nd = p->nodes[n];
    switch (nd.kind) {
    case N_EMPTY: return true;
    case N_CHAR: return emit(p, nd.icase ? OP_CHAR_I : OP_CHAR, nd.c, 0, 0) >= 0;
    case N_ANY: return emit(p, OP_ANY, 0, 0, 0) >= 0;
    case N_CLASS: return emit(p, OP_CLASS, nd.c, 0, 0) >= 0;
    case N_BOL: return emit(p, OP_BOL, 0, 0, 0) >= 0;
    case N_EOL: return emit(p, OP_EOL, 0, 0, 0) >= 0;
    case N_BOS: return emit(p, OP_BOS, 0, 0, 0) >= 0;
    case N_EOS: return emit(p, OP_EOS, 0, 0, 0) >= 0;
    case N_CAT:
        for (int k = nd.kid; k >= 0; k = p->nodes[k].next)
            if (!compile(p, k)) return false;
        return true;
    case N_ALT: {
        /* split k1, next; k1; jmp end; next: split k2, next2; ... kn; end: */
        int jumps[256], nj = 0;
        for (int k = nd.kid; k >= 0; k = p->nodes[k].next) {
            int split = -1;
            if (p->nodes[k].next >= 0 && (split = emit(p, OP_SPLIT, 0, 0, 0)) < 0) return false;
            if (split >= 0) p->re->prog[split].x = split + 1;
            if (!compile(p, k)) return false;
            if (p->nodes[k].next >= 0) {
                if (nj == (int)(sizeof jumps / sizeof jumps[0])) return fail(p, "too many alternatives") == 0;
                if ((jumps[nj++] = emit(p, OP_JMP, 0, 0, 0)) < 0) return false;
                p->re->prog[split].y = p->re->n;
            }
        }
        for (int i = 0; i < nj; i++) p->re->prog[jumps[i]].x = p->re->n;
        return true;
    }
    case N_REPEAT: return compile_repeat(p, &nd);
    case N_LOOK: {
        int look = emit(p, nd.neg ? OP_NLOOK : OP_LOOK, 0, 0, 0);
        if (look < 0 || !compile(p, nd.kid) || emit(p, OP_MATCH, 0, 0, 0) < 0) return false;
        p->re->prog[look].x = look + 1;
        p->re->prog[look].y = p->re->n;
        return true;
    }
    }
    return false;
}

void rx_free(struct rx_regex *re) {
    if (!re) return;
    for (int i = 0; i < re->n_classes; i++) free(re->classes[i].items);
    free(re->classes);
    free(re->prog);
    free(re);
}

struct rx_regex *rx_compile(const char *pattern, char *err, size_t err_size) {
    struct rx_regex *re = calloc(1, sizeof *re);
    struct parser p = {.s = pattern, .len = strlen(pattern), .re = re, .err = err, .err_size = err_size};
    if (!re) {
        snprintf(err, err_size, "out of memory compiling a regex");
        return NULL;
    }
    if (uc_utf8_valid(pattern, p.len) != p.len) fail(&p, "the pattern is not valid UTF-8");
    int root = p.failed ? -1 : parse_alt(&p);
    if (root >= 0 && !at_end(&p)) fail(&p, "unmatched )");
    if (root >= 0 && !p.failed && compile(&p, root)) emit(&p, OP_MATCH, 0, 0, 0);
    free(p.nodes);
    if (p.failed) {
        rx_free(re);
        return NULL;
    }
    return re;
}

/* ---- matcher ------------------------------------------------------------------ */

static uint32_t fold(uint32_t c) {
    uint32_t out[3];
    return uc_lower(c, out) == 1 ? out[0] : c;
}

static bool class_match(const struct rx_regex *re, int cls, uint32_t c);

static bool class_has(const struct rx_regex *re, const struct rx_class *cl, uint32_t c) {
    for (int i = 0; i < cl->n; i++) {
        const struct rx_item *it = &cl->items[i];
        bool r = false;
        switch (it->kind) {
        case IT_RANGE: r = c >= it->lo && c <= it->hi; break;
        case IT_CATS: r = uc_in(c, it->mask); break;
        case IT_SPACE: r = uc_is_white_space(c); break;
        case IT_WORD: r = uc_in(c, UC_MASK_L | UC_MASK_M | UC_BIT(UC_ND) | UC_BIT(UC_PC)); break;
        case IT_CLASS: r = class_match(re, it->sub, c); break;
        }
        if (r != it->neg) return true;
    }
    return false;
}

static bool class_match(const struct rx_regex *re, int cls, uint32_t c) {
    const struct rx_class *cl = &re->classes[cls];
    bool in = class_has(re, cl, c);
    if (!in && cl->icase) {
        uint32_t f = fold(c);
        in = (f != c && class_has(re, cl, f)) || (c >= 'a' && c <= 'z' && class_has(re, cl, c - 32));
    }
    return in != cl->neg;
}

static bool stack_push(struct rx_scratch *sc, int32_t pc, int32_t pos) {
    if (sc->stack_len + 2 > sc->stack_cap) {
        size_t nc = sc->stack_cap ? sc->stack_cap * 2 : 256;
        int32_t *ns = realloc(sc->stack, nc * sizeof *ns);
        if (!ns) return false;
        sc->stack = ns;
        sc->stack_cap = nc;
    }
    sc->stack[sc->stack_len++] = pc;
    sc->stack[sc->stack_len++] = pos;
    return true;
}

/* Runs the program from pc at pos; returns the end of the first match in
 * priority order, -1 for none, -2 when out of memory. */
static int32_t run(const struct rx_regex *re, struct rx_scratch *sc, int32_t n, int32_t pc0, int32_t pos0) {
    const uint32_t *s = sc->cps;
    size_t base = sc->stack_len;
    if (!stack_push(sc, pc0, pos0)) return -2;
    while (sc->stack_len > base) {
        int32_t pos = sc->stack[--sc->stack_len];
        int32_t pc = sc->stack[--sc->stack_len];
        for (;;) {
            const struct rx_inst *in = &re->prog[pc];
            bool ok = true;
            switch (in->op) {
            case OP_CHAR: ok = pos < n && s[pos] == in->c; pos++; pc++; break;
            case OP_CHAR_I: ok = pos < n && (s[pos] == in->c || fold(s[pos]) == fold(in->c)); pos++; pc++; break;
            case OP_ANY: ok = pos < n && s[pos] != '\n'; pos++; pc++; break;
            case OP_CLASS: ok = pos < n && class_match(re, (int)in->c, s[pos]); pos++; pc++; break;
            case OP_SPLIT:
                if (!stack_push(sc, in->y, pos)) return -2;
                pc = in->x;
                break;
            case OP_JMP: pc = in->x; break;
            case OP_LOOK: case OP_NLOOK: {
                int32_t r = run(re, sc, n, in->x, pos);
                if (r == -2) return -2;
                ok = (r >= 0) == (in->op == OP_LOOK);
                pc = in->y;
                break;
            }
            case OP_BOL: ok = pos == 0 || s[pos - 1] == '\n'; pc++; break;
            case OP_EOL: ok = pos == n || s[pos] == '\n'; pc++; break;
            case OP_BOS: ok = pos == 0; pc++; break;
            case OP_EOS: ok = pos == n; pc++; break;
            case OP_MATCH:
                sc->stack_len = base;
                return pos;
            }
            if (!ok) break;
        }
    }
    return -1;
}

void rx_scratch_free(struct rx_scratch *sc) {
    free(sc->cps);
    free(sc->offs);
    free(sc->stack);
    *sc = (struct rx_scratch){0};
}

bool rx_find_all(const struct rx_regex *re, const char *s, size_t len, struct rx_scratch *sc,
                 struct rx_match **matches, size_t *count, size_t *cap) {
    *count = 0;
    if (len + 1 > sc->cap) {
        uint32_t *nc = realloc(sc->cps, (len + 1) * sizeof *nc);
        if (nc) sc->cps = nc;
        size_t *no = realloc(sc->offs, (len + 1) * sizeof *no);
        if (no) sc->offs = no;
        if (!nc || !no) return false;
        sc->cap = len + 1;
    }
    int32_t n = 0;
    for (size_t i = 0; i < len; n++) {
        sc->offs[n] = i;
        i += uc_decode(s, i, &sc->cps[n]);
    }
    sc->offs[n] = len;
    sc->stack_len = 0;
    for (int32_t start = 0; start <= n;) {
        int32_t end = run(re, sc, n, 0, start);
        if (end == -2) return false;
        if (end < 0) {
            start++;
            continue;
        }
        if (*count == *cap) {
            size_t nc = *cap ? *cap * 2 : 16;
            struct rx_match *nm = realloc(*matches, nc * sizeof *nm);
            if (!nm) return false;
            *matches = nm;
            *cap = nc;
        }
        (*matches)[(*count)++] = (struct rx_match){sc->offs[start], sc->offs[end]};
        start = end > start ? end : start + 1;
    }
    return true;
}
