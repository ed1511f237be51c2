/* The page reader: a whole JSON answer (a page) read straight into prepared rows.
 *
 * `parse_page(page, latest_us, loads, prepared_type, max_bytes)` reads a JSON array of rows. A row in the
 * common valid form becomes a prepared row: its ID, its key, its timestamp and the event's JSON after the
 * ID (what `Normalizer.prepared` completes with the feed's prefix), with no Python object made for any of
 * its values. Any other row is handed to `loads` (orjson) as its own JSON text and comes back as a dict,
 * for the paths that read dicts. The forms taken are those the checked path publishes unchanged or in
 * their one canonical text, so the event is byte for byte what it would publish.
 *
 * It answers None for a page it does not find plain JSON (a syntax error, nesting deeper than it follows):
 * orjson then parses the whole page, and explains the error, exactly as without this reader.
 */
#include "_native_scan.h"

/* ---- the common forms, from raw values ---- */

/* An integer's digits (at most 18, optionally negative) as a number: DONE, or GIVE_UP. */
static int raw_integer(const char *text, Py_ssize_t length, long long *number) {
    int negative = length > 0 && text[0] == '-';
    Py_ssize_t count = length - negative;
    if (count < 1 || count > 18) {
        return GIVE_UP;
    }
    long long value = 0;
    for (Py_ssize_t i = negative; i < length; i++) {
        if (!is_digit((unsigned char)text[i])) {
            return GIVE_UP;
        }
        value = value * 10 + (text[i] - '0');
    }
    *number = negative ? -value : value;
    return DONE;
}

static int put_quoted(Buffer *b, const char *text, Py_ssize_t length) {
    if (buffer_reserve(b, length + 2) < 0) {
        return FAILED;
    }
    b->data[b->size++] = '"';
    memcpy(b->data + b->size, text, (size_t)length);
    b->size += length;
    b->data[b->size++] = '"';
    return DONE;
}

/* Whether valid UTF-8 at p (a lead byte of 0x80 or more) is a character str.isspace() takes: U+0085,
 * U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F or U+3000. */
static int unicode_space_at(const unsigned char *p) {
    if (p[0] == 0xC2) {
        return p[1] == 0x85 || p[1] == 0xA0;
    }
    if (p[0] == 0xE1) {
        return p[1] == 0x9A && p[2] == 0x80;
    }
    if (p[0] == 0xE2 && p[1] == 0x80) {
        return p[2] <= 0x8A || p[2] == 0xA8 || p[2] == 0xA9 || p[2] == 0xAF;
    }
    if (p[0] == 0xE2 && p[1] == 0x81) {
        return p[2] == 0x9F;
    }
    return p[0] == 0xE3 && p[1] == 0x80 && p[2] == 0x80;
}

/* Whether UTF-8 text begins or ends with a non-ASCII space (which str.strip() would remove). */
static int unicode_space_at_ends(const char *start, const char *end) {
    if (end == start) {
        return 0;
    }
    if ((unsigned char)start[0] >= 0x80 && unicode_space_at((const unsigned char *)start)) {
        return 1;
    }
    const char *last = end - 1;
    while (last > start && ((unsigned char)*last & 0xC0) == 0x80) {
        last--; /* back to the lead byte of the last character */
    }
    return (unsigned char)*last >= 0x80 && unicode_space_at((const unsigned char *)last);
}

/* A string's text stripped of spaces (the only whitespace a JSON string holds unescaped); GIVE_UP when
 * it begins or ends with a non-ASCII space (the checked path strips it). */
static int raw_stripped(const Raw *raw, const char **text, Py_ssize_t *length) {
    const char *start = raw->text, *end = raw->text + raw->length;
    while (start < end && *start == ' ') {
        start++;
    }
    while (end > start && end[-1] == ' ') {
        end--;
    }
    if (unicode_space_at_ends(start, end)) {
        return GIVE_UP;
    }
    *text = start;
    *length = end - start;
    return DONE;
}

static int hex_value(unsigned char c) {
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* An escaped string's text, read into `out` (UTF-8); GIVE_UP for a \u escape of a surrogate (a pair, or a
 * lone one orjson refuses). */
static int unescape(const Raw *raw, Buffer *out) {
    out->size = 0;
    if (buffer_reserve(out, raw->length) < 0) { /* the text never grows by being read */
        return FAILED;
    }
    const char *p = raw->text, *end = raw->text + raw->length;
    char *w = out->data;
    while (p < end) {
        if (*p != '\\') {
            *w++ = *p++;
            continue;
        }
        char e = p[1];
        p += 2;
        switch (e) {
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u': {
            unsigned int code = (unsigned int)(hex_value((unsigned char)p[0]) << 12 | hex_value((unsigned char)p[1]) << 8 |
                                               hex_value((unsigned char)p[2]) << 4 | hex_value((unsigned char)p[3]));
            p += 4;
            if (code >= 0xD800 && code <= 0xDFFF) {
                return GIVE_UP;
            }
            if (code < 0x80) {
                *w++ = (char)code;
            } else if (code < 0x800) {
                *w++ = (char)(0xC0 | code >> 6);
                *w++ = (char)(0x80 | (code & 0x3F));
            } else {
                *w++ = (char)(0xE0 | code >> 12);
                *w++ = (char)(0x80 | ((code >> 6) & 0x3F));
                *w++ = (char)(0x80 | (code & 0x3F));
            }
            break;
        }
        default: *w++ = e; /* \" \\ \/ */
        }
    }
    out->size = w - out->data;
    return DONE;
}

static int put_raw_text(Buffer *b, const Raw *raw, int lower, Buffer *scratch) {
    if (raw->type == V_STRING && raw->escaped) {
        CHECK(unescape(raw, scratch));
        const char *start = scratch->data, *end = scratch->data + scratch->size;
        int ascii = 1;
        while (start < end && ascii_space((unsigned char)*start)) {
            start++;
        }
        while (end > start && ascii_space((unsigned char)end[-1])) {
            end--;
        }
        for (const char *q = start; q < end; q++) {
            ascii &= (unsigned char)*q < 0x80;
        }
        if (end == start) {
            return PUT_LITERAL(b, "null");
        }
        if (unicode_space_at_ends(start, end) || (lower && !ascii)) {
            return GIVE_UP; /* a Unicode space at an end; Unicode case rules */
        }
        if (lower) {
            for (char *q = (char *)start; q < end; q++) {
                if (*q >= 'A' && *q <= 'Z') {
                    *q = (char)(*q + ('a' - 'A'));
                }
            }
        }
        return put_json_string(b, start, end - start);
    }
    if (raw->type == V_NULL) {
        return PUT_LITERAL(b, "null");
    }
    if (raw->type == V_INT) { /* a number's text: str() of the int */
        long long number;
        CHECK(raw_integer(raw->text, raw->length, &number));
        CHECK(PUT_LITERAL(b, "\""));
        CHECK(put_int64(b, number));
        return PUT_LITERAL(b, "\"");
    }
    if (raw->type != V_STRING) {
        return GIVE_UP;
    }
    const char *text;
    Py_ssize_t length;
    CHECK(raw_stripped(raw, &text, &length));
    if (length == 0) {
        return PUT_LITERAL(b, "null");
    }
    if (!lower) {
        return put_quoted(b, text, length);
    }
    if (!raw->ascii) {
        return GIVE_UP; /* Unicode case rules */
    }
    Py_ssize_t start = b->size + 1;
    CHECK(put_quoted(b, text, length));
    for (Py_ssize_t i = start; i < start + length; i++) {
        char ch = b->data[i];
        if (ch >= 'A' && ch <= 'Z') {
            b->data[i] = (char)(ch + ('a' - 'A'));
        }
    }
    return DONE;
}

static int put_raw_date(Buffer *b, const Raw *raw) {
    if (raw->type == V_NULL) {
        return PUT_LITERAL(b, "null");
    }
    if (!plain(raw) || !raw->ascii) {
        return GIVE_UP;
    }
    switch (date_kind(raw->text, raw->length)) {
    case DATE_VALID:
        return put_quoted(b, raw->text, raw->length);
    case DATE_EMPTY:
        return PUT_LITERAL(b, "null");
    default:
        return GIVE_UP;
    }
}

static int put_raw_time(Buffer *b, const Raw *raw) {
    if (raw->type == V_NULL || (raw->type == V_STRING && raw->length == 0)) {
        return PUT_LITERAL(b, "null");
    }
    if (!plain(raw) || !is_time_of_day(raw->text, raw->length)) {
        return GIVE_UP;
    }
    return put_quoted(b, raw->text, raw->length);
}

/* Hours from UTC as `values.offset_hours` reads them: a number, or text ("+13", "12.75", "+12:45") with
 * spaces around it; written as an int when whole. */
static int put_raw_offset(Buffer *b, const Raw *raw) {
    if (raw->type == V_NULL) {
        return PUT_LITERAL(b, "null");
    }
    if (raw->type == V_INT) {
        long long hours;
        if (raw->length > 3 || raw_integer(raw->text, raw->length, &hours) != DONE || hours <= -24 || hours >= 24) {
            return GIVE_UP;
        }
        return put_int64(b, hours);
    }
    if (raw->type != V_DECIMAL && !plain(raw)) {
        return GIVE_UP;
    }
    const char *text = raw->text, *end = raw->text + raw->length;
    while (text < end && *text == ' ') {
        text++;
    }
    while (end > text && end[-1] == ' ') {
        end--;
    }
    if (text == end) {
        return PUT_LITERAL(b, "null");
    }
    /* [-+]?[0-9]{1,2}, then .[0-9]{1,12} or :[0-9]{2} */
    const char *p = text + (*text == '-' || *text == '+');
    const char *digits_start = p;
    while (p < end && is_digit((unsigned char)*p)) {
        p++;
    }
    Py_ssize_t whole = p - digits_start;
    if (whole < 1 || whole > 2) {
        return GIVE_UP;
    }
    double hours;
    if (p < end && *p == ':') {
        if (end - p != 3 || !is_digit((unsigned char)p[1]) || !is_digit((unsigned char)p[2])) {
            return GIVE_UP;
        }
        int minutes = (p[1] - '0') * 10 + (p[2] - '0');
        int h = digits_start[0] - '0';
        if (whole == 2) {
            h = h * 10 + (digits_start[1] - '0');
        }
        if (minutes >= 60) {
            return GIVE_UP;
        }
        hours = (double)((*text == '-' ? -1 : 1) * (h * 60 + minutes)) / 60.0;
    } else {
        if (p < end) {
            Py_ssize_t fraction = 0;
            if (*p != '.') {
                return GIVE_UP;
            }
            for (p++; p < end && is_digit((unsigned char)*p); p++) {
                fraction++;
            }
            if (p != end || fraction < 1 || fraction > 12) {
                return GIVE_UP;
            }
        }
        char number[32];
        memcpy(number, text, (size_t)(end - text));
        number[end - text] = '\0';
        hours = PyOS_string_to_double(number, NULL, NULL);
        if (hours == -1.0 && PyErr_Occurred()) {
            return FAILED;
        }
    }
    if (!(hours > -24.0 && hours < 24.0)) {
        return GIVE_UP;
    }
    if (hours == (double)(long long)hours) {
        return put_int64(b, (long long)hours);
    }
    char *repr = PyOS_double_to_string(hours, 'r', 0, 0, NULL);
    if (repr == NULL) {
        return FAILED;
    }
    int status = strchr(repr, 'e') == NULL ? put(b, repr, (Py_ssize_t)strlen(repr)) : GIVE_UP;
    PyMem_Free(repr);
    return status;
}

/* Digits, a point and only zeros after it (how PHP writes a whole float): the digits' number. */
static int whole_float(const char *text, Py_ssize_t length, Py_ssize_t max_digits, Py_ssize_t max_zeros,
                       long long *number) {
    const char *point = memchr(text, '.', (size_t)length);
    if (point == NULL) {
        return GIVE_UP;
    }
    Py_ssize_t zeros = length - (point - text) - 1;
    if (zeros < 1 || zeros > max_zeros || point - text - (text[0] == '-') > max_digits) {
        return GIVE_UP;
    }
    for (const char *q = point + 1; q < text + length; q++) {
        if (*q != '0') {
            return GIVE_UP;
        }
    }
    return raw_integer(text, point - text, number);
}

/* A count as `fastpath._count` reads it: an int within 64 bits, digits, empty, or a whole float ("60.0"
 * as text with up to 12 zeros, or as a number within 15 digits, which a double holds exactly). */
static int put_raw_count(Buffer *b, const Raw *raw) {
    if (raw->type == V_NULL || (plain(raw) && raw->length == 0)) {
        return PUT_LITERAL(b, "null");
    }
    long long number;
    if (raw->type == V_INT) {
        CHECK(raw_integer(raw->text, raw->length, &number));
    } else if (plain(raw) && raw->text[0] != '-') {
        if (raw_integer(raw->text, raw->length, &number) != DONE) {
            CHECK(whole_float(raw->text, raw->length, 18, 12, &number));
        }
    } else if (raw->type == V_DECIMAL) {
        CHECK(whole_float(raw->text, raw->length, 15, raw->length, &number));
    } else {
        return GIVE_UP;
    }
    return put_int64(b, number);
}

/* An amount in canonical decimal text: the fraction's trailing zeros and a bare point dropped, "-0" as
 * "0". A number with a fraction is taken with at most 15 significant digits: the double it is read as
 * gives those same digits back (what repr() writes), so the text is the value's. */
static int put_raw_amount(Buffer *b, const Raw *raw) {
    const char *text = raw->text;
    Py_ssize_t length = raw->length;
    if (raw->type == V_INT) {
        long long number;
        CHECK(raw_integer(text, length, &number));
        CHECK(PUT_LITERAL(b, "\""));
        CHECK(put_int64(b, number));
        return PUT_LITERAL(b, "\"");
    }
    if (raw->type != V_DECIMAL && !plain(raw)) {
        return GIVE_UP;
    }
    /* -?[0-9]{1,15}(\.[0-9]{1,12})? for a string (the row schema's amount); -?digits.digits for a number. */
    Py_ssize_t i = length > 0 && text[0] == '-', whole = 0, fraction = 0;
    for (; i < length && is_digit((unsigned char)text[i]); i++) {
        whole++;
    }
    int point = i < length && text[i] == '.';
    if (point) {
        for (i++; i < length && is_digit((unsigned char)text[i]); i++) {
            fraction++;
        }
    }
    if (i != length || whole == 0 || (point && fraction == 0)) {
        return GIVE_UP;
    }
    if (raw->type == V_STRING && (whole > 15 || fraction > 12)) {
        return GIVE_UP;
    }
    Py_ssize_t keep = length;
    if (point) {
        while (text[keep - 1] == '0') {
            keep--;
        }
        if (text[keep - 1] == '.') {
            keep--;
        }
    }
    if (raw->type == V_DECIMAL) {
        Py_ssize_t significant = 0;
        int leading = 1;
        for (Py_ssize_t j = text[0] == '-'; j < keep; j++) {
            if (text[j] == '.' || (leading && text[j] == '0')) {
                continue;
            }
            leading = 0;
            significant++;
        }
        if (significant > 15) {
            return GIVE_UP;
        }
    }
    if (keep == 2 && text[0] == '-' && text[1] == '0') {
        return PUT_LITERAL(b, "\"0\"");
    }
    return put_quoted(b, text, keep);
}

/* ---- rows ---- */

/* Where a key is among the row's fields (0 for ID, 1 + F_... for the others), or -1. `guess` first. */
static int field_index(const Raw *key, int guess) {
    static const char *const ID = "ID";
    if (!plain(key)) {
        return -1;
    }
    for (int n = 0; n < ROW_FIELDS; n++) {
        int i = (guess + n) % ROW_FIELDS;
        const char *name = i == 0 ? ID : FIELD_NAMES[i - 1];
        if ((Py_ssize_t)strlen(name) == key->length && memcmp(name, key->text, (size_t)key->length) == 0) {
            return i;
        }
    }
    return -1;
}

/* The row's ID if it is a positive whole number of at most 18 digits (as a number or as digits). */
static int raw_id(const Raw *raw, long long *id) {
    if ((raw->type != V_INT && !plain(raw)) || raw->length == 0 || raw->text[0] == '-') {
        return GIVE_UP;
    }
    CHECK(raw_integer(raw->text, raw->length, id));
    return *id > 0 ? DONE : GIVE_UP;
}

typedef struct {
    long long latest_us;
    Py_ssize_t max_bytes;
    PyTypeObject *prepared_type;
} PageRules;

/* The prepared row of a row's 26 raw values (ID first), or GIVE_UP. */
static int prepare_row(const PageRules *rules, const Raw *values, Buffer *b, Buffer *scratch, PyObject **prepared) {
    long long id, seconds;
    const Raw *v = values + 1;
    const char *account;
    Py_ssize_t account_length;
    CHECK(raw_id(&values[0], &id));
    if (!plain(&v[F_ACCOUNT]) || !v[F_ACCOUNT].ascii) {
        return GIVE_UP;
    }
    CHECK(raw_stripped(&v[F_ACCOUNT], &account, &account_length));
    if (account_length == 0 || !plain(&v[F_UTC]) || !v[F_UTC].ascii) {
        return GIVE_UP;
    }
    CHECK(utc_seconds_of(v[F_UTC].text, v[F_UTC].length, &seconds));
    if (seconds * 1000000 > rules->latest_us) {
        return GIVE_UP; /* in the future: the checked path explains it */
    }
    b->size = 0;
    for (int i = 0; i < N_FIELDS; i++) {
        CHECK(put(b, EVENT_FIELDS[i].key, EVENT_FIELDS[i].length));
        switch (EVENT_FIELDS[i].kind) {
        case K_ACCOUNT:
            CHECK(put_quoted(b, account, account_length));
            break;
        case K_TEXT:
            CHECK(put_raw_text(b, &v[i], 0, scratch));
            break;
        case K_LOWER_TEXT:
            CHECK(put_raw_text(b, &v[i], 1, scratch));
            break;
        case K_DATE:
            CHECK(put_raw_date(b, &v[i]));
            break;
        case K_TIME:
            CHECK(put_raw_time(b, &v[i]));
            break;
        case K_UTC:
            CHECK(put_utc_text(b, v[i].text));
            break;
        case K_OFFSET:
            CHECK(put_raw_offset(b, &v[i]));
            break;
        case K_COUNT:
            CHECK(put_raw_count(b, &v[i]));
            break;
        default:
            CHECK(put_raw_amount(b, &v[i]));
        }
    }
    CHECK(PUT_LITERAL(b, "}"));
    if (account_length + b->size > rules->max_bytes) {
        return GIVE_UP;
    }
    PyObject *row = rules->prepared_type->tp_alloc(rules->prepared_type, 4);
    if (row == NULL) {
        return FAILED;
    }
    PyObject *items[4] = {
        PyLong_FromLongLong(id),
        PyBytes_FromStringAndSize(account, account_length),
        PyLong_FromLongLong(seconds * 1000),
        PyBytes_FromStringAndSize(b->data, b->size),
    };
    for (int i = 0; i < 4; i++) {
        if (items[i] == NULL) {
            for (int j = 0; j < 4; j++) {
                Py_XDECREF(items[j]);
            }
            Py_DECREF(row);
            return FAILED;
        }
    }
    for (int i = 0; i < 4; i++) {
        PyTuple_SET_ITEM(row, i, items[i]);
    }
    *prepared = row;
    return DONE;
}

/* A row (an object, or any other value) at the cursor, scanned; its raw values when it holds the 26
 * fields, each once (`complete`). */
static int scan_row(Cursor *c, Raw *values, int *complete) {
    *complete = 0;
    if (*c->p != '{') {
        Raw raw;
        return scan_value(c, &raw, 1);
    }
    unsigned int seen = 0;
    int count = 0, layout = 1;
    c->p++;
    skip_space(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return DONE;
    }
    for (;;) {
        Raw key, value;
        skip_space(c);
        if (c->p >= c->end || *c->p != '"') {
            return INVALID;
        }
        CHECK(scan_string(c, &key));
        skip_space(c);
        if (c->p >= c->end || *c->p != ':') {
            return INVALID;
        }
        c->p++;
        skip_space(c);
        CHECK(scan_value(c, &value, 2));
        if (layout) {
            int index = count < ROW_FIELDS ? field_index(&key, count) : -1;
            if (index < 0 || (seen & (1u << index))) {
                layout = 0; /* an extra or a repeated key: orjson reads the row */
            } else {
                seen |= 1u << index;
                values[index] = value;
            }
        }
        count++;
        skip_space(c);
        if (c->p >= c->end) {
            return INVALID;
        }
        if (*c->p == '}') {
            c->p++;
            break;
        }
        if (*c->p != ',') {
            return INVALID;
        }
        c->p++;
    }
    *complete = layout && count == ROW_FIELDS;
    return DONE;
}

typedef struct {
    Buffer event;
    Buffer scratch;
} Buffers;

/* The row scanned from `start` to the cursor, prepared or as orjson reads it, appended to `rows`. */
static int append_row(const PageRules *rules, PyObject *loads, Buffers *buffers, const Raw *values, int complete,
                      const char *start, const char *end, PyObject *rows) {
    PyObject *row = NULL;
    int status = complete ? prepare_row(rules, values, &buffers->event, &buffers->scratch, &row) : GIVE_UP;
    if (status == GIVE_UP) {
        /* The paths that read dicts take it: orjson parses this row's text alone. */
        PyObject *text = PyBytes_FromStringAndSize(start, end - start);
        row = text == NULL ? NULL : PyObject_CallOneArg(loads, text);
        Py_XDECREF(text);
        status = row == NULL ? FAILED : DONE;
    }
    if (status != DONE) {
        return status;
    }
    status = PyList_Append(rows, row) < 0 ? FAILED : DONE;
    Py_DECREF(row);
    return status;
}

/* Rows from the cursor into `rows`, up to the end of the array or of the data.
 *
 * `first`: the data starts before the array's '['; otherwise it starts where a row is due (after '[' or a
 * comma). `*consumed` is how far the rows and their separators were read (0 while no row and no ']' is);
 * `*ended` tells that the array's ']' was read. With `streaming`, the reading stops before a row it cannot
 * finish (the data may end in it; the caller reads more, or decides it is not JSON); otherwise such a row
 * is INVALID, and so is anything but whitespace after the array. */
static int read_rows(const PageRules *rules, PyObject *loads, Cursor *c, PyObject *rows, int first, int streaming,
                     Py_ssize_t *consumed, int *ended) {
    const char *base = c->p;
    char stack[4096], scratch_stack[1024];
    Buffers buffers = {{stack, 0, sizeof stack, NULL}, {scratch_stack, 0, sizeof scratch_stack, NULL}};
    int status = DONE;
    *consumed = 0;
    *ended = 0;
    if (first) {
        skip_space(c);
        if (c->p >= c->end || *c->p != '[') {
            return streaming && c->p >= c->end ? DONE : INVALID;
        }
        c->p++;
        skip_space(c);
        if (c->p < c->end && *c->p == ']') {
            c->p++;
            *ended = 1;
        }
    }
    while (!*ended) {
        Raw values[ROW_FIELDS];
        int complete;
        skip_space(c);
        const char *start = c->p;
        status = start < c->end ? scan_row(c, values, &complete) : INVALID;
        if (status == DONE) {
            skip_space(c); /* the separator must be in too: else the row is read again with more data */
            status = c->p < c->end && (*c->p == ',' || *c->p == ']') ? DONE : INVALID;
        }
        if (status == INVALID && streaming) {
            status = DONE; /* stop before this row */
            break;
        }
        if (status == DONE) {
            status = append_row(rules, loads, &buffers, values, complete, start, c->p, rows);
        }
        if (status != DONE) {
            break;
        }
        *ended = *c->p == ']';
        c->p++;
        *consumed = c->p - base;
    }
    PyMem_Free(buffers.event.heap);
    PyMem_Free(buffers.scratch.heap);
    if (status == DONE && *ended) {
        *consumed = c->p - base;
        if (!streaming) {
            skip_space(c);
            if (c->p != c->end) {
                status = INVALID; /* something after the array */
            }
        }
    }
    return status;
}

/* The rules from (latest_us, prepared_type, max_bytes); 0, or -1 with an error set. */
static int page_rules(PageRules *rules, PyObject *latest_us, PyObject *prepared_type, PyObject *max_bytes) {
    if (latest_micros_of(latest_us, &rules->latest_us) != DONE) {
        return -1;
    }
    rules->max_bytes = PyLong_AsSsize_t(max_bytes);
    if (PyErr_Occurred()) {
        return -1;
    }
    if (!PyType_Check(prepared_type) || !PyType_IsSubtype((PyTypeObject *)prepared_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "prepared_type must be a tuple type");
        return -1;
    }
    rules->prepared_type = (PyTypeObject *)prepared_type;
    return 0;
}

PyObject *parse_page(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    PageRules rules;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "parse_page(page, latest_us, loads, prepared_type, max_bytes)");
        return NULL;
    }
    if (page_rules(&rules, args[1], args[3], args[4]) < 0) {
        return NULL;
    }
    Py_buffer page;
    if (PyObject_GetBuffer(args[0], &page, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *rows = PyList_New(0);
    int status = FAILED, ended = 0;
    if (rows != NULL) {
        Cursor c = {(const char *)page.buf, (const char *)page.buf + page.len};
        Py_ssize_t consumed;
        status = read_rows(&rules, args[2], &c, rows, 1, 0, &consumed, &ended);
    }
    PyBuffer_Release(&page);
    if (status == DONE && ended) {
        return rows;
    }
    Py_XDECREF(rows);
    if (status == FAILED) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyObject *scan_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    PageRules rules;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "scan_rows(data, first, latest_us, loads, prepared_type, max_bytes)");
        return NULL;
    }
    int first = PyObject_IsTrue(args[1]);
    if (first < 0 || page_rules(&rules, args[2], args[4], args[5]) < 0) {
        return NULL;
    }
    Py_buffer data;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *rows = PyList_New(0);
    int status = FAILED, ended = 0;
    Py_ssize_t consumed = 0;
    if (rows != NULL) {
        Cursor c = {(const char *)data.buf, (const char *)data.buf + data.len};
        status = read_rows(&rules, args[3], &c, rows, first, 1, &consumed, &ended);
    }
    PyBuffer_Release(&data);
    if (status == DONE) {
        PyObject *result = Py_BuildValue("(NnO)", rows, consumed, ended ? Py_True : Py_False);
        return result;
    }
    Py_XDECREF(rows);
    if (status == FAILED) {
        return NULL;
    }
    Py_RETURN_NONE; /* INVALID: the caller's parser takes the data from its start */
}
