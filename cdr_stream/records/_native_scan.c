/* The JSON scanner of the page reader (see _native_scan.h). What it accepts, orjson accepts: anything it is
 * unsure of is INVALID, and the page then goes to orjson whole. */
#include "_native_scan.h"

static inline int continuation(const unsigned char *p, int count) {
    for (int i = 0; i < count; i++) {
        if ((p[i] & 0xC0) != 0x80) {
            return 0;
        }
    }
    return 1;
}

/* The length of the UTF-8 sequence at p (a lead byte of 0x80 or more), or 0 when it is not valid UTF-8
 * (overlong, a surrogate, beyond U+10FFFF, cut short). */
static int utf8_length(const unsigned char *p, const unsigned char *end) {
    unsigned char lead = p[0];
    Py_ssize_t left = end - p;
    if (lead >= 0xC2 && lead <= 0xDF) {
        return left >= 2 && continuation(p + 1, 1) ? 2 : 0;
    }
    if (lead >= 0xE0 && lead <= 0xEF) {
        if (left < 3 || !continuation(p + 1, 2) || (lead == 0xE0 && p[1] < 0xA0) || (lead == 0xED && p[1] > 0x9F)) {
            return 0;
        }
        return 3;
    }
    if (lead >= 0xF0 && lead <= 0xF4) {
        if (left < 4 || !continuation(p + 1, 3) || (lead == 0xF0 && p[1] < 0x90) || (lead == 0xF4 && p[1] > 0x8F)) {
            return 0;
        }
        return 4;
    }
    return 0;
}

static inline int is_hex(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int scan_string(Cursor *c, Raw *raw) {
    const unsigned char *p = (const unsigned char *)c->p + 1, *end = (const unsigned char *)c->end;
    const unsigned char *start = p;
    int escaped = 0, ascii = 1;
    for (;;) {
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') {
            p++;
        }
        if (p >= end || *p < 0x20) {
            return INVALID;
        }
        if (*p == '"') {
            break;
        }
        if (*p == '\\') {
            escaped = 1;
            if (end - p < 2) {
                return INVALID;
            }
            unsigned char e = p[1];
            if (e == 'u') {
                if (end - p < 6 || !is_hex(p[2]) || !is_hex(p[3]) || !is_hex(p[4]) || !is_hex(p[5])) {
                    return INVALID;
                }
                p += 6;
            } else if (strchr("\"\\/bfnrt", e) != NULL && e != '\0') {
                p += 2;
            } else {
                return INVALID;
            }
            continue;
        }
        int length = utf8_length(p, end);
        if (length == 0) {
            return INVALID;
        }
        ascii = 0;
        p += length;
    }
    raw->type = V_STRING;
    raw->text = (const char *)start;
    raw->length = (const char *)p - (const char *)start;
    raw->ascii = ascii;
    raw->escaped = escaped;
    c->p = (const char *)p + 1;
    return DONE;
}

static int scan_number(Cursor *c, Raw *raw) {
    const char *p = c->p, *end = c->end, *start = p;
    int type = V_INT;
    if (p < end && *p == '-') {
        p++;
    }
    if (p < end && *p == '0') {
        p++;
    } else if (p < end && *p >= '1' && *p <= '9') {
        while (p < end && is_digit((unsigned char)*p)) {
            p++;
        }
    } else {
        return INVALID;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit((unsigned char)*p)) {
            return INVALID;
        }
        while (p < end && is_digit((unsigned char)*p)) {
            p++;
        }
        type = V_DECIMAL;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }
        if (p >= end || !is_digit((unsigned char)*p)) {
            return INVALID;
        }
        while (p < end && is_digit((unsigned char)*p)) {
            p++;
        }
        type = V_OTHER;
    }
    raw->type = type;
    raw->text = start;
    raw->length = p - start;
    raw->escaped = 0;
    c->p = p;
    return DONE;
}

static int scan_literal(Cursor *c, Raw *raw, const char *word, Py_ssize_t length, int type) {
    if (c->end - c->p < length || memcmp(c->p, word, (size_t)length) != 0) {
        return INVALID;
    }
    raw->type = type;
    c->p += length;
    return DONE;
}

/* An object or an array, checked and passed over. */
static int scan_container(Cursor *c, int depth) {
    if (depth > MAX_DEPTH) {
        return INVALID;
    }
    char close = *c->p == '{' ? '}' : ']';
    c->p++;
    skip_space(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        return DONE;
    }
    Raw raw;
    for (;;) {
        skip_space(c);
        if (close == '}') {
            if (c->p >= c->end || *c->p != '"') {
                return INVALID;
            }
            CHECK(scan_string(c, &raw));
            skip_space(c);
            if (c->p >= c->end || *c->p != ':') {
                return INVALID;
            }
            c->p++;
            skip_space(c);
        }
        CHECK(scan_value(c, &raw, depth + 1));
        skip_space(c);
        if (c->p >= c->end) {
            return INVALID;
        }
        if (*c->p == close) {
            c->p++;
            return DONE;
        }
        if (*c->p != ',') {
            return INVALID;
        }
        c->p++;
    }
}

int scan_value(Cursor *c, Raw *raw, int depth) {
    if (c->p >= c->end) {
        return INVALID;
    }
    switch (*c->p) {
    case '"':
        return scan_string(c, raw);
    case 'n':
        return scan_literal(c, raw, "null", 4, V_NULL);
    case 't':
        return scan_literal(c, raw, "true", 4, V_OTHER);
    case 'f':
        return scan_literal(c, raw, "false", 5, V_OTHER);
    case '{':
    case '[':
        raw->type = V_OTHER;
        return scan_container(c, depth);
    default:
        return scan_number(c, raw);
    }
}

