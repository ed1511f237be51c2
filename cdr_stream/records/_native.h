/* What the parts of the C fast path share: the output buffer, the JSON writers, the rules of the common
 * value forms, and the fields of a row and of its event. */
#ifndef CDR_STREAM_NATIVE_H
#define CDR_STREAM_NATIVE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* What a reader or writer gives back: done, the row is not for this path, or a Python error is set. */
#define DONE 0
#define GIVE_UP 1
#define FAILED (-1)

#define CHECK(call)                                                                                                 \
    do {                                                                                                            \
        int status_ = (call);                                                                                       \
        if (status_ != DONE) {                                                                                      \
            return status_;                                                                                         \
        }                                                                                                           \
    } while (0)

/* ---- the fields ---- */

#define ROW_FIELDS 26

/* The row's fields after ID, in the feed's order, which is also the order of the event's fields. */
enum {
    F_ACCOUNT, F_DIRECTION, F_CALL_TYPE, F_BILL_DATE, F_DATE, F_TIME, F_UTC, F_OFFSET, F_APARTY,
    F_BPARTY, F_BILL_NUMBER, F_SECONDS, F_NETWORK_SECONDS, F_CONNECT_SECONDS, F_CHARGE,
    F_CHARGE_EXCL, F_FREE_UNITS, F_TEXT1, F_TEXT2, F_RELEASE, F_STATUS, F_SERVICE, F_BILLING_GROUP,
    F_CALLING_GROUP, F_PROFILE, N_FIELDS
};
extern const char *const FIELD_NAMES[N_FIELDS];

/* How each field's value is read and written. */
enum { K_ACCOUNT, K_TEXT, K_LOWER_TEXT, K_DATE, K_TIME, K_UTC, K_OFFSET, K_COUNT, K_AMOUNT };
typedef struct {
    const char *key; /* the event's key, after a comma: ,"account_code": */
    Py_ssize_t length;
    int kind;
} EventField;
extern const EventField EVENT_FIELDS[N_FIELDS];

/* ---- the output buffer ---- */

typedef struct {
    char *data;
    Py_ssize_t size;
    Py_ssize_t capacity;
    char *heap; /* NULL while `data` is the caller's stack buffer */
} Buffer;

int buffer_grow(Buffer *b, Py_ssize_t more);

static inline int buffer_reserve(Buffer *b, Py_ssize_t more) {
    return b->size + more <= b->capacity ? 0 : buffer_grow(b, more);
}

static inline int put(Buffer *b, const char *text, Py_ssize_t length) {
    if (buffer_reserve(b, length) < 0) {
        return FAILED;
    }
    memcpy(b->data + b->size, text, (size_t)length);
    b->size += length;
    return DONE;
}

#define PUT_LITERAL(b, text) put((b), (text), (Py_ssize_t)(sizeof(text) - 1))

int put_int64(Buffer *b, long long value);
/* A moment in microseconds as a C integer, clamped: beyond 64 bits means no limit (or none allowed). */
int latest_micros_of(PyObject *value, long long *micros);
/* UTF-8 text as a JSON string, escaped as orjson escapes it. */
int put_json_string(Buffer *b, const char *text, Py_ssize_t length);
/* UTCDateTime "YYYY-MM-DD HH:MM:SS" (or with a T) as the event's "YYYY-MM-DDTHH:MM:SSZ". */
int put_utc_text(Buffer *b, const char *utc);

/* ---- the rules of the common forms (ASCII text) ---- */

static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* Python's str.isspace() for the ASCII characters (what str.strip() removes from ASCII text). */
static inline int ascii_space(unsigned char c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/* UTCDateTime's common form in seconds from the epoch: DONE, or GIVE_UP for any other text. */
int utc_seconds_of(const char *text, Py_ssize_t length, long long *seconds);
/* Whether the text is a time of day "HH:MM:SS" that Python's time() accepts. */
int is_time_of_day(const char *text, Py_ssize_t length);

/* A date field's text: a valid "YYYY-MM-DD" (written as it is), an empty date (null), or another form. */
enum { DATE_VALID, DATE_EMPTY, DATE_OTHER };
int date_kind(const char *text, Py_ssize_t length);

/* The page reader (_native_page.c). */
PyObject *parse_page(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
/* The same, a piece of a streamed answer at a time: (rows, bytes consumed, whether the array ended). */
PyObject *scan_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

#endif
