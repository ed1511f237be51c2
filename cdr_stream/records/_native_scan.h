/* The JSON scanner of the page reader: checks a page's syntax (strictly: UTF-8, escapes, numbers) and
 * finds each value's text, without making a Python object. */
#ifndef CDR_STREAM_NATIVE_SCAN_H
#define CDR_STREAM_NATIVE_SCAN_H

#include "_native.h"

/* Not JSON as far as this reader goes: the whole page goes to orjson. */
#define INVALID (-2)
#define MAX_DEPTH 64

typedef struct {
    const char *p;
    const char *end;
} Cursor;

/* A value as scanned: a string, a number without an exponent (with or without a fraction), null, or
 * anything else (taken by orjson). */
enum { V_STRING, V_INT, V_DECIMAL, V_NULL, V_OTHER };
typedef struct {
    int type;
    const char *text; /* a string's bytes between the quotes, or a number's text */
    Py_ssize_t length;
    int ascii;
    int escaped; /* a string with a backslash escape */
} Raw;

/* A string as it is in the page: no escape to read. */
static inline int plain(const Raw *raw) { return raw->type == V_STRING && !raw->escaped; }

static inline void skip_space(Cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t')) {
        c->p++;
    }
}

int scan_string(Cursor *c, Raw *raw);
int scan_value(Cursor *c, Raw *raw, int depth);

#endif
