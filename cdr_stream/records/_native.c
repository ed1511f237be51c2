/* The fast path of normalization in C: the common valid row, turned into its event's JSON bytes.
 *
 * `Normalizer.event(row_id, row, latest_us)` does what `fastpath.FastNormalizer` does in Python, without
 * building the event as a dict and serializing it: it reads the row's values and writes the event's JSON
 * text directly, in the contract's key order and with orjson's escapes. It takes only the forms it knows
 * and gives up (None) on anything else; the caller then reads the row on the checked path, which
 * publishes the same bytes. Values it has not seen before (a date, an offset, an amount) are read by the
 * Python readers of `fastpath`, which remember them in the memos this reads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define ROW_FIELDS 26

/* The row's fields, in the order the event is written. */
enum {
    F_ACCOUNT, F_DIRECTION, F_CALL_TYPE, F_BILL_DATE, F_DATE, F_TIME, F_UTC, F_OFFSET, F_APARTY,
    F_BPARTY, F_BILL_NUMBER, F_SECONDS, F_NETWORK_SECONDS, F_CONNECT_SECONDS, F_CHARGE,
    F_CHARGE_EXCL, F_FREE_UNITS, F_TEXT1, F_TEXT2, F_RELEASE, F_STATUS, F_SERVICE, F_BILLING_GROUP,
    F_CALLING_GROUP, F_PROFILE, N_FIELDS
};
static const char *const FIELD_NAMES[N_FIELDS] = {
    "AccountCode", "Direction", "CallType", "BillDate", "Date", "Time", "UTCDateTime", "UTCOffset",
    "AParty", "BParty", "BillNumber", "Seconds", "NetworkSeconds", "ConnectSeconds", "Charge",
    "ChargeExcl", "FreeUnitsUsed", "TextDesc1", "TextDesc2", "ReleaseCause", "Status", "ServiceType",
    "BillingGroup", "CallingGroup", "Profile",
};

/* ---- an output buffer ------------------------------------------------------------------------ */

typedef struct {
    char *data;
    Py_ssize_t size;
    Py_ssize_t capacity;
    char *heap; /* NULL while `data` is the caller's stack buffer */
} Buffer;

static int buffer_grow(Buffer *b, Py_ssize_t more) {
    Py_ssize_t capacity = b->capacity * 2;
    while (capacity < b->size + more) {
        capacity *= 2;
    }
    char *grown = PyMem_Malloc((size_t)capacity);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(grown, b->data, (size_t)b->size);
    PyMem_Free(b->heap);
    b->heap = b->data = grown;
    b->capacity = capacity;
    return 0;
}

static inline int buffer_reserve(Buffer *b, Py_ssize_t more) {
    return b->size + more <= b->capacity ? 0 : buffer_grow(b, more);
}

static inline int put(Buffer *b, const char *text, Py_ssize_t length) {
    if (buffer_reserve(b, length) < 0) {
        return -1;
    }
    memcpy(b->data + b->size, text, (size_t)length);
    b->size += length;
    return 0;
}

#define PUT_LITERAL(b, text) put((b), (text), (Py_ssize_t)(sizeof(text) - 1))

static int put_int64(Buffer *b, long long value) {
    char digits[24];
    char *end = digits + sizeof digits, *p = end;
    unsigned long long magnitude = value < 0 ? 0ULL - (unsigned long long)value : (unsigned long long)value;
    do {
        *--p = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    if (value < 0) {
        *--p = '-';
    }
    return put(b, p, end - p);
}

static const char HEX[] = "0123456789abcdef";

/* UTF-8 text as a JSON string, escaped as orjson escapes it: the quote, the backslash and the control
 * characters (\b \t \n \f \r by name, the others as \u00XX); everything else as it is. */
static int put_json_string(Buffer *b, const char *text, Py_ssize_t length) {
    /* At most 6 bytes of output a byte of input, and the quotes. */
    if (buffer_reserve(b, length * 6 + 2) < 0) {
        return -1;
    }
    char *out = b->data + b->size;
    *out++ = '"';
    for (Py_ssize_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *out++ = (char)c;
            continue;
        }
        *out++ = '\\';
        switch (c) {
        case '"': *out++ = '"'; break;
        case '\\': *out++ = '\\'; break;
        case '\b': *out++ = 'b'; break;
        case '\t': *out++ = 't'; break;
        case '\n': *out++ = 'n'; break;
        case '\f': *out++ = 'f'; break;
        case '\r': *out++ = 'r'; break;
        default:
            *out++ = 'u';
            *out++ = '0';
            *out++ = '0';
            *out++ = HEX[c >> 4];
            *out++ = HEX[c & 0xf];
        }
    }
    *out++ = '"';
    b->size = out - b->data;
    return 0;
}

/* ---- reading values ---------------------------------------------------------------------------- */

/* What a reader gives back: the value was written, the row is not for this path, or an error is set. */
#define DONE 0
#define GIVE_UP 1
#define FAILED (-1)

/* What a normalizer holds, as passed to it (the keyword arguments of its constructor, in this order). */
enum {
    R_PREFIX,       /* bytes: '{"schema_version":2,"feed":"<feed>","id":' */
    R_EVENT_TYPE,   /* records.event.Event, a tuple subclass */
    R_DATES,        /* the date memo: str (or None) -> str or None */
    R_READ_DATE,
    R_OFFSETS,      /* the UTC offset memo: str (or None) -> int, float or None */
    R_READ_OFFSET,
    R_AMOUNTS,      /* the amount memo: float or str -> str */
    R_READ_AMOUNT,
    R_READ_COUNT,
    R_GIVE_UP,      /* fastpath.GiveUp */
    N_REFS
};

typedef struct {
    PyObject_HEAD
    PyObject *refs[N_REFS];
    PyObject *id_key;
    PyObject *keys[N_FIELDS];
    /* The key objects met at each position of the last rows, ID first: rows parsed from one answer
     * share their key objects and their order, so a row is read by walking it, without a lookup. */
    PyObject *met[ROW_FIELDS];
    Py_ssize_t max_event_bytes;
} Normalizer;

/* Python's str.isspace() for the ASCII characters (what str.strip() removes from ASCII text). */
static inline int ascii_space(unsigned char c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/* The UTF-8 of a str, stripped as str.strip() strips it, in *text and *length; GIVE_UP for text that
 * is not valid Unicode (a lone surrogate, which orjson refuses too). */
static int stripped_utf8(PyObject *value, const char **text, Py_ssize_t *length) {
    Py_ssize_t size = PyUnicode_GET_LENGTH(value);
    if (PyUnicode_IS_COMPACT_ASCII(value)) {
        const char *data = (const char *)PyUnicode_DATA(value);
        Py_ssize_t start = 0, end = size;
        while (start < end && ascii_space((unsigned char)data[start])) {
            start++;
        }
        while (end > start && ascii_space((unsigned char)data[end - 1])) {
            end--;
        }
        *text = data + start;
        *length = end - start;
        return DONE;
    }
    int kind = PyUnicode_KIND(value);
    const void *data = PyUnicode_DATA(value);
    if (size && (Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, 0)) ||
                 Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, size - 1)))) {
        return GIVE_UP; /* rare: Unicode spaces around the text; the checked path strips them */
    }
    *text = PyUnicode_AsUTF8AndSize(value, length);
    if (*text == NULL) {
        PyErr_Clear();
        return GIVE_UP;
    }
    return DONE;
}

/* A number (int or float, not bool) as its str() text, a JSON string; what `fastpath._text` gives. */
static int put_number_text(Buffer *b, PyObject *value) {
    PyObject *text = PyObject_Str(value);
    if (text == NULL) {
        return FAILED;
    }
    Py_ssize_t length;
    const char *data = PyUnicode_AsUTF8AndSize(text, &length);
    int status = data == NULL ? FAILED : put_json_string(b, data, length);
    Py_DECREF(text);
    return status;
}

/* A descriptive text field: a str stripped (null when empty), null, or a number's text. */
static int put_text(Buffer *b, PyObject *value, int lower) {
    if (PyUnicode_CheckExact(value)) {
        const char *text;
        Py_ssize_t length;
        if (stripped_utf8(value, &text, &length) != DONE) {
            return GIVE_UP;
        }
        if (length == 0) {
            return PUT_LITERAL(b, "null");
        }
        if (!lower) {
            return put_json_string(b, text, length);
        }
        if (!PyUnicode_IS_COMPACT_ASCII(value)) {
            return GIVE_UP; /* Unicode case rules: the checked path lowers it */
        }
        char small[64];
        if (length > (Py_ssize_t)sizeof small) {
            return GIVE_UP;
        }
        for (Py_ssize_t i = 0; i < length; i++) {
            char c = text[i];
            small[i] = (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
        }
        return put_json_string(b, small, length);
    }
    if (value == Py_None) {
        return PUT_LITERAL(b, "null");
    }
    if (PyLong_CheckExact(value) || PyFloat_CheckExact(value)) {
        return put_number_text(b, value);
    }
    return GIVE_UP;
}

/* A memo's result (None, str, int or float) as JSON. */
static int put_simple(Buffer *b, PyObject *value) {
    if (value == Py_None) {
        return PUT_LITERAL(b, "null");
    }
    if (PyUnicode_CheckExact(value)) {
        Py_ssize_t length;
        const char *text = PyUnicode_AsUTF8AndSize(value, &length);
        if (text == NULL) {
            PyErr_Clear();
            return GIVE_UP;
        }
        return put_json_string(b, text, length);
    }
    if (PyLong_CheckExact(value)) {
        int overflow;
        long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow || (number == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return GIVE_UP;
        }
        return put_int64(b, number);
    }
    if (PyFloat_CheckExact(value)) {
        char *text = PyOS_double_to_string(PyFloat_AS_DOUBLE(value), 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (text == NULL) {
            return FAILED;
        }
        /* repr and orjson agree except on exponents, inf and nan: those go to the checked path. */
        int plain = strpbrk(text, "eni") == NULL;
        int status = plain ? put(b, text, (Py_ssize_t)strlen(text)) : GIVE_UP;
        PyMem_Free(text);
        return status;
    }
    return GIVE_UP;
}

/* Whether the pending exception is one that means "not for the fast path" (cleared), or a real error. */
static int gave_up(Normalizer *self) {
    if (PyErr_ExceptionMatches(self->refs[R_GIVE_UP]) || PyErr_ExceptionMatches(PyExc_KeyError) ||
        PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyErr_Clear();
        return GIVE_UP;
    }
    return FAILED;
}

/* A value read through its memo: looked up, else read by the Python reader (which remembers it). */
static int put_remembered(Normalizer *self, Buffer *b, PyObject *memo, PyObject *read, PyObject *value) {
    PyObject *found = PyDict_GetItemWithError(memo, value); /* borrowed */
    if (found != NULL) {
        return put_simple(b, found);
    }
    if (PyErr_Occurred()) {
        return gave_up(self); /* TypeError: unhashable (a list, an object) */
    }
    PyObject *result = PyObject_CallOneArg(read, value);
    if (result == NULL) {
        return gave_up(self);
    }
    int status = put_simple(b, result);
    Py_DECREF(result);
    return status;
}

static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* Digits at text[0..count), as a number; -1 when one is not an ASCII digit. */
static inline long digits(const char *text, int count) {
    long number = 0;
    for (int i = 0; i < count; i++) {
        if (!is_digit((unsigned char)text[i])) {
            return -1;
        }
        number = number * 10 + (text[i] - '0');
    }
    return number;
}

/* A count (Seconds, NetworkSeconds, ConnectSeconds, FreeUnitsUsed): an int within 64 bits, ASCII digits
 * (at most 18), empty; anything else through `fastpath._count`. */
static int put_count(Normalizer *self, Buffer *b, PyObject *value) {
    if (PyLong_CheckExact(value)) {
        return put_simple(b, value);
    }
    if (PyUnicode_CheckExact(value) && PyUnicode_IS_COMPACT_ASCII(value)) {
        Py_ssize_t length = PyUnicode_GET_LENGTH(value);
        const char *text = (const char *)PyUnicode_DATA(value);
        if (length == 0) {
            return PUT_LITERAL(b, "null");
        }
        if (length <= 18) {
            long long number = 0;
            Py_ssize_t i = 0;
            for (; i < length && is_digit((unsigned char)text[i]); i++) {
                number = number * 10 + (text[i] - '0');
            }
            if (i == length) {
                return put_int64(b, number);
            }
        }
    }
    PyObject *result = PyObject_CallOneArg(self->refs[R_READ_COUNT], value);
    if (result == NULL) {
        return gave_up(self);
    }
    int status = put_simple(b, result);
    Py_DECREF(result);
    return status;
}

/* An amount (Charge, ChargeExcl): a float or str through the amount memo, an int as its digits. */
static int put_amount(Normalizer *self, Buffer *b, PyObject *value) {
    if (PyFloat_CheckExact(value) || PyUnicode_CheckExact(value)) {
        return put_remembered(self, b, self->refs[R_AMOUNTS], self->refs[R_READ_AMOUNT], value);
    }
    if (PyLong_CheckExact(value)) {
        return put_number_text(b, value);
    }
    return GIVE_UP;
}

/* The local time: "HH:MM:SS" as it is, empty or null as null. */
static int put_local_time(Buffer *b, PyObject *value) {
    if (value == Py_None) {
        return PUT_LITERAL(b, "null");
    }
    if (!PyUnicode_CheckExact(value) || !PyUnicode_IS_COMPACT_ASCII(value)) {
        return GIVE_UP;
    }
    Py_ssize_t length = PyUnicode_GET_LENGTH(value);
    const char *t = (const char *)PyUnicode_DATA(value);
    if (length == 0) {
        return PUT_LITERAL(b, "null");
    }
    if (length != 8 || t[2] != ':' || t[5] != ':') {
        return GIVE_UP;
    }
    long hour = digits(t, 2), minute = digits(t + 3, 2), second = digits(t + 6, 2);
    if (hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59) {
        return GIVE_UP;
    }
    return put_json_string(b, t, 8);
}

static int leap(long year) { return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0; }

/* Days from 1970-01-01 to a valid proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static long long days_from_civil(long y, long m, long d) {
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* UTCDateTime as "YYYY-MM-DD HH:MM:SS" (or with a T) in seconds from the epoch; GIVE_UP otherwise. */
static int utc_seconds(PyObject *value, long long *seconds) {
    if (!PyUnicode_CheckExact(value) || !PyUnicode_IS_COMPACT_ASCII(value) || PyUnicode_GET_LENGTH(value) != 19) {
        return GIVE_UP;
    }
    const char *t = (const char *)PyUnicode_DATA(value);
    if (t[4] != '-' || t[7] != '-' || (t[10] != ' ' && t[10] != 'T') || t[13] != ':' || t[16] != ':') {
        return GIVE_UP;
    }
    long year = digits(t, 4), month = digits(t + 5, 2), day = digits(t + 8, 2);
    long hour = digits(t + 11, 2), minute = digits(t + 14, 2), second = digits(t + 17, 2);
    static const int MONTH_DAYS[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (year < 1 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 ||
        second < 0 || second > 59) {
        return GIVE_UP;
    }
    if (day > MONTH_DAYS[month - 1] + (month == 2 && leap(year))) {
        return GIVE_UP;
    }
    *seconds = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
    return DONE;
}

/* ---- the event -------------------------------------------------------------------------------- */

#define CHECK(call)                                                                                                 \
    do {                                                                                                            \
        int status_ = (call);                                                                                       \
        if (status_ != DONE) {                                                                                      \
            return status_;                                                                                         \
        }                                                                                                           \
    } while (0)

/* How each field is written: its event key (after a comma) and how its value is read. */
enum { K_ACCOUNT, K_TEXT, K_LOWER_TEXT, K_DATE, K_TIME, K_UTC, K_OFFSET, K_COUNT, K_AMOUNT };
#define KEY(text) text, (Py_ssize_t)(sizeof(text) - 1)
static const struct {
    const char *key;
    Py_ssize_t length;
    int kind;
} EVENT_FIELDS[N_FIELDS] = {
    {KEY(",\"account_code\":"), K_ACCOUNT}, {KEY(",\"direction\":"), K_LOWER_TEXT},
    {KEY(",\"call_type\":"), K_TEXT},       {KEY(",\"bill_date\":"), K_DATE},
    {KEY(",\"local_date\":"), K_DATE},      {KEY(",\"local_time\":"), K_TIME},
    {KEY(",\"utc_datetime\":"), K_UTC},     {KEY(",\"utc_offset_hours\":"), K_OFFSET},
    {KEY(",\"a_party\":"), K_TEXT},         {KEY(",\"b_party\":"), K_TEXT},
    {KEY(",\"bill_number\":"), K_TEXT},     {KEY(",\"seconds\":"), K_COUNT},
    {KEY(",\"network_seconds\":"), K_COUNT}, {KEY(",\"connect_seconds\":"), K_COUNT},
    {KEY(",\"charge\":"), K_AMOUNT},        {KEY(",\"charge_excl\":"), K_AMOUNT},
    {KEY(",\"free_units_used\":"), K_COUNT}, {KEY(",\"text_desc1\":"), K_TEXT},
    {KEY(",\"text_desc2\":"), K_TEXT},      {KEY(",\"release_cause\":"), K_TEXT},
    {KEY(",\"status\":"), K_TEXT},          {KEY(",\"service_type\":"), K_TEXT},
    {KEY(",\"billing_group\":"), K_TEXT},   {KEY(",\"calling_group\":"), K_TEXT},
    {KEY(",\"profile\":"), K_TEXT},
};

/* The UTC offset: an int within a day, else through the offset memo. */
static int put_offset(Normalizer *self, Buffer *b, PyObject *offset) {
    if (!PyLong_CheckExact(offset)) {
        return put_remembered(self, b, self->refs[R_OFFSETS], self->refs[R_READ_OFFSET], offset);
    }
    int overflow;
    long hours = PyLong_AsLongAndOverflow(offset, &overflow);
    if (overflow || hours <= -24 || hours >= 24) {
        return GIVE_UP;
    }
    return put_int64(b, hours);
}

/* One field's value as JSON. */
static int put_field(Normalizer *self, Buffer *b, int kind, PyObject *value, const char *account,
                     Py_ssize_t account_length) {
    switch (kind) {
    case K_ACCOUNT:
        return put_json_string(b, account, account_length);
    case K_TEXT:
        return put_text(b, value, 0);
    case K_LOWER_TEXT:
        return put_text(b, value, 1);
    case K_DATE:
        return put_remembered(self, b, self->refs[R_DATES], self->refs[R_READ_DATE], value);
    case K_TIME:
        return put_local_time(b, value);
    case K_UTC: {
        const char *utc = (const char *)PyUnicode_DATA(value); /* checked by utc_seconds */
        char text[20];
        memcpy(text, utc, 10);
        text[10] = 'T';
        memcpy(text + 11, utc + 11, 8);
        text[19] = 'Z';
        return put_json_string(b, text, 20);
    }
    case K_OFFSET:
        return put_offset(self, b, value);
    case K_COUNT:
        return put_count(self, b, value);
    default:
        return put_amount(self, b, value);
    }
}

/* The event's JSON after its prefix and id, into `b`; the account code's text and length and the call
 * time in seconds come back too. */
static int write_fields(Normalizer *self, Buffer *b, PyObject *const *v, const char **account,
                        Py_ssize_t *account_length, long long *seconds) {
    PyObject *code = v[F_ACCOUNT];
    if (!PyUnicode_CheckExact(code) || !PyUnicode_IS_COMPACT_ASCII(code)) {
        return GIVE_UP; /* an int code: its text is made on the checked path */
    }
    CHECK(stripped_utf8(code, account, account_length));
    if (*account_length == 0) {
        return GIVE_UP;
    }
    CHECK(utc_seconds(v[F_UTC], seconds));
    for (int i = 0; i < N_FIELDS; i++) {
        CHECK(put(b, EVENT_FIELDS[i].key, EVENT_FIELDS[i].length));
        CHECK(put_field(self, b, EVENT_FIELDS[i].kind, v[i], *account, *account_length));
    }
    return PUT_LITERAL(b, "}");
}

/* The row's values (new references) when its keys come in the feed's order (ID first): 1; 0 when they do
 * not, -1 on an error. A key is compared by identity with the one met at its position before, and by
 * value (then remembered) otherwise. */
static int read_in_order(Normalizer *self, PyObject *row, PyObject **values) {
    Py_ssize_t position = 0;
    PyObject *key, *value;
    for (int i = 0; PyDict_Next(row, &position, &key, &value); i++) {
        if (key != self->met[i]) {
            PyObject *name = i == 0 ? self->id_key : self->keys[i - 1];
            if (!PyUnicode_CheckExact(key) || PyUnicode_Compare(key, name) != 0) {
                for (int j = 0; j < i - 1; j++) {
                    Py_DECREF(values[j]);
                }
                return 0;
            }
            Py_INCREF(key);
            Py_XSETREF(self->met[i], key);
        }
        if (i > 0) {
            Py_INCREF(value);
            values[i - 1] = value;
        }
    }
    return 1;
}

/* The row's values (new references) looked up by name: 1, or 0 when one is missing, -1 on an error. */
static int read_by_name(Normalizer *self, PyObject *row, PyObject **values) {
    for (int i = 0; i < N_FIELDS; i++) {
        values[i] = PyDict_GetItemWithError(row, self->keys[i]);
        if (values[i] == NULL) {
            for (int j = 0; j < i; j++) {
                Py_DECREF(values[j]);
            }
            return PyErr_Occurred() ? -1 : 0;
        }
        Py_INCREF(values[i]);
    }
    return 1;
}

static PyObject *normalizer_event(Normalizer *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "event() takes row_id, row and latest_us");
        return NULL;
    }
    PyObject *row_id = args[0], *row = args[1];
    if (!PyLong_CheckExact(row_id) || !PyDict_CheckExact(row)) {
        Py_RETURN_NONE;
    }
    int overflow;
    long long id = PyLong_AsLongLongAndOverflow(row_id, &overflow);
    if (overflow || (id == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        Py_RETURN_NONE; /* beyond 64 bits */
    }
    long long latest_us = PyLong_AsLongLong(args[2]);
    if (latest_us == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (PyDict_GET_SIZE(row) != ROW_FIELDS) {
        Py_RETURN_NONE; /* a missing or an extra column */
    }
    /* Held for the length of the call: a reader runs Python code. */
    PyObject *values[N_FIELDS];
    int found = read_in_order(self, row, values);
    if (found == 0) {
        found = read_by_name(self, row, values);
    }
    if (found < 0) {
        return NULL;
    }
    if (found == 0) {
        Py_RETURN_NONE; /* a field is missing (and an unknown one is there instead) */
    }
    char stack[2048];
    Buffer b = {stack, 0, sizeof stack, NULL};
    const char *account = NULL;
    Py_ssize_t account_length = 0;
    long long seconds = 0;
    PyObject *event = NULL;
    int status = put(&b, PyBytes_AS_STRING(self->refs[R_PREFIX]), PyBytes_GET_SIZE(self->refs[R_PREFIX]));
    if (status == DONE) {
        status = put_int64(&b, id);
    }
    if (status == DONE) {
        status = write_fields(self, &b, values, &account, &account_length, &seconds);
    }
    if (status == DONE && (seconds > INT64_MAX / 1000000 || seconds * 1000000 > latest_us)) {
        status = GIVE_UP; /* in the future: the checked path explains it */
    }
    if (status == DONE && account_length + b.size > self->max_event_bytes) {
        status = GIVE_UP;
    }
    if (status == DONE) {
        PyObject *key = PyBytes_FromStringAndSize(account, account_length);
        PyObject *value = PyBytes_FromStringAndSize(b.data, b.size);
        PyObject *timestamp = PyLong_FromLongLong(seconds * 1000);
        event = ((PyTypeObject *)self->refs[R_EVENT_TYPE])->tp_alloc((PyTypeObject *)self->refs[R_EVENT_TYPE], 5);
        if (key == NULL || value == NULL || timestamp == NULL || event == NULL) {
            Py_XDECREF(key);
            Py_XDECREF(value);
            Py_XDECREF(timestamp);
            Py_CLEAR(event);
            status = FAILED;
        } else {
            Py_INCREF(row_id);
            PyTuple_SET_ITEM(event, 0, row_id);
            PyTuple_SET_ITEM(event, 1, key);
            PyTuple_SET_ITEM(event, 2, timestamp);
            PyTuple_SET_ITEM(event, 3, value);
            PyObject *empty = PyTuple_New(0);
            if (empty == NULL) {
                Py_CLEAR(event);
                status = FAILED;
            } else {
                PyTuple_SET_ITEM(event, 4, empty);
            }
        }
    }
    for (int i = 0; i < N_FIELDS; i++) {
        Py_DECREF(values[i]);
    }
    PyMem_Free(b.heap);
    if (status == GIVE_UP) {
        Py_RETURN_NONE;
    }
    return status == DONE ? event : NULL;
}

/* ---- the type --------------------------------------------------------------------------------- */

static int normalizer_init(Normalizer *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"prefix",      "event_type", "dates",     "read_date",  "offsets",         "read_offset",
                             "amounts",     "read_amount", "read_count", "give_up",    "max_event_bytes", NULL};
    PyObject *prefix, *event_type, *dates, *read_date, *offsets, *read_offset, *amounts, *read_amount, *read_count,
        *give_up;
    Py_ssize_t max_event_bytes;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$O!O!O!OO!OO!OOOn", kwlist, &PyBytes_Type, &prefix, &PyType_Type,
                                     &event_type, &PyDict_Type, &dates, &read_date, &PyDict_Type, &offsets,
                                     &read_offset, &PyDict_Type, &amounts, &read_amount, &read_count, &give_up,
                                     &max_event_bytes)) {
        return -1;
    }
    if (!PyType_IsSubtype((PyTypeObject *)event_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "event_type must be a tuple type");
        return -1;
    }
    PyObject *given[N_REFS] = {prefix, event_type, dates, read_date, offsets, read_offset, amounts, read_amount,
                               read_count, give_up};
    for (int i = 0; i < N_REFS; i++) {
        Py_INCREF(given[i]);
        Py_XSETREF(self->refs[i], given[i]);
    }
    self->max_event_bytes = max_event_bytes;
    if (self->id_key == NULL && (self->id_key = PyUnicode_InternFromString("ID")) == NULL) {
        return -1;
    }
    for (int i = 0; i < N_FIELDS; i++) {
        if (self->keys[i] == NULL) {
            self->keys[i] = PyUnicode_InternFromString(FIELD_NAMES[i]);
            if (self->keys[i] == NULL) {
                return -1;
            }
        }
    }
    return 0;
}

static int normalizer_traverse(Normalizer *self, visitproc visit, void *arg) {
    for (int i = 0; i < N_REFS; i++) {
        Py_VISIT(self->refs[i]);
    }
    return 0;
}

static int normalizer_clear(Normalizer *self) {
    for (int i = 0; i < N_REFS; i++) {
        Py_CLEAR(self->refs[i]);
    }
    Py_CLEAR(self->id_key);
    for (int i = 0; i < N_FIELDS; i++) {
        Py_CLEAR(self->keys[i]);
    }
    for (int i = 0; i < ROW_FIELDS; i++) {
        Py_CLEAR(self->met[i]);
    }
    return 0;
}

static void normalizer_dealloc(Normalizer *self) {
    PyObject_GC_UnTrack(self);
    normalizer_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *normalizer_call_event(Normalizer *self, PyObject *const *args, Py_ssize_t nargs) {
    if (self->refs[R_PREFIX] == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Normalizer was not initialized");
        return NULL;
    }
    return normalizer_event(self, args, nargs);
}

static PyMethodDef normalizer_methods[] = {
    {"event", (PyCFunction)(void (*)(void))normalizer_call_event, METH_FASTCALL,
     "event(row_id, row, latest_us) -> Event | None: the row's event, or None for the checked path."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject NormalizerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cdr_stream.records._native.Normalizer",
    .tp_basicsize = sizeof(Normalizer),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The fast path of normalization for one feed's rows.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)normalizer_init,
    .tp_dealloc = (destructor)normalizer_dealloc,
    .tp_traverse = (traverseproc)normalizer_traverse,
    .tp_clear = (inquiry)normalizer_clear,
    .tp_methods = normalizer_methods,
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, .m_name = "cdr_stream.records._native",
    .m_doc = "The fast path of normalization, in C.", .m_size = -1,
};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&NormalizerType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&native_module);
    if (module == NULL) {
        return NULL;
    }
#ifdef NATIVE_SOURCE_SHA256
    /* Which source this was compiled from: a test compares it with the source next to it. */
    if (PyModule_AddStringConstant(module, "SOURCE_SHA256", NATIVE_SOURCE_SHA256) < 0) {
        Py_DECREF(module);
        return NULL;
    }
#endif
    Py_INCREF(&NormalizerType);
    if (PyModule_AddObject(module, "Normalizer", (PyObject *)&NormalizerType) < 0) {
        Py_DECREF(&NormalizerType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
