/* The fast path of normalization in C: the common valid row, turned into its event's JSON bytes.
 *
 * `Normalizer.event(row_id, row, latest_us)` does what `fastpath.FastNormalizer` does in Python, without
 * building the event as a dict and serializing it: it reads the row's values and writes the event's JSON
 * text directly, in the contract's key order and with orjson's escapes. It takes only the forms it knows
 * and gives up (None) on anything else; the caller then reads the row on the checked path, which
 * publishes the same bytes. Values it has not seen before (a date, an offset, an amount) are read by the
 * Python readers of `fastpath`, which remember them in the memos this reads.
 */
#include "_native.h"

/* ---- reading values ---------------------------------------------------------------------------- */

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
    if (!is_time_of_day(t, length)) {
        return GIVE_UP;
    }
    return put_json_string(b, t, 8);
}

/* UTCDateTime's common form in seconds from the epoch; GIVE_UP otherwise. */
static int utc_seconds(PyObject *value, long long *seconds) {
    if (!PyUnicode_CheckExact(value) || !PyUnicode_IS_COMPACT_ASCII(value)) {
        return GIVE_UP;
    }
    return utc_seconds_of((const char *)PyUnicode_DATA(value), PyUnicode_GET_LENGTH(value), seconds);
}

/* ---- the event -------------------------------------------------------------------------------- */

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
    case K_UTC:
        return put_utc_text(b, (const char *)PyUnicode_DATA(value)); /* checked by utc_seconds */
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
    long long latest_us;
    if (latest_micros_of(args[2], &latest_us) != DONE) {
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

/* A prepared row (ID, key, timestamp, the event's JSON after the ID; see _native_page.c) as its event:
 * the feed's prefix and the ID put in front. */
static PyObject *normalizer_prepared(Normalizer *self, PyObject *row) {
    if (self->refs[R_PREFIX] == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Normalizer was not initialized");
        return NULL;
    }
    if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != 4 || !PyBytes_Check(PyTuple_GET_ITEM(row, 3))) {
        PyErr_SetString(PyExc_TypeError, "prepared() takes a prepared row");
        return NULL;
    }
    PyObject *id = PyTuple_GET_ITEM(row, 0), *tail = PyTuple_GET_ITEM(row, 3);
    long long number = PyLong_AsLongLong(id);
    if (number == -1 && PyErr_Occurred()) {
        return NULL;
    }
    char stack[32];
    Buffer digits = {stack, 0, sizeof stack, NULL};
    if (put_int64(&digits, number) != DONE) {
        return NULL;
    }
    PyObject *prefix = self->refs[R_PREFIX];
    Py_ssize_t size = PyBytes_GET_SIZE(prefix) + digits.size + PyBytes_GET_SIZE(tail);
    PyObject *value = PyBytes_FromStringAndSize(NULL, size);
    if (value == NULL) {
        return NULL;
    }
    char *out = PyBytes_AS_STRING(value);
    memcpy(out, PyBytes_AS_STRING(prefix), (size_t)PyBytes_GET_SIZE(prefix));
    out += PyBytes_GET_SIZE(prefix);
    memcpy(out, digits.data, (size_t)digits.size);
    memcpy(out + digits.size, PyBytes_AS_STRING(tail), (size_t)PyBytes_GET_SIZE(tail));
    PyTypeObject *type = (PyTypeObject *)self->refs[R_EVENT_TYPE];
    PyObject *event = type->tp_alloc(type, 5);
    if (event == NULL) {
        Py_DECREF(value);
        return NULL;
    }
    PyObject *empty = PyTuple_New(0);
    if (empty == NULL) {
        Py_DECREF(value);
        Py_DECREF(event);
        return NULL;
    }
    for (int i = 0; i < 3; i++) {
        PyObject *item = PyTuple_GET_ITEM(row, i);
        Py_INCREF(item);
        PyTuple_SET_ITEM(event, i, item);
    }
    PyTuple_SET_ITEM(event, 3, value);
    PyTuple_SET_ITEM(event, 4, empty);
    return event;
}

static PyMethodDef normalizer_methods[] = {
    {"prepared", (PyCFunction)normalizer_prepared, METH_O,
     "prepared(row) -> Event: a prepared row (from parse_page) as its event."},
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

static PyMethodDef module_methods[] = {
    {"parse_page", (PyCFunction)(void (*)(void))parse_page, METH_FASTCALL,
     "parse_page(page, latest_us, loads, prepared_type, max_bytes) -> list | None: a JSON page's rows, "
     "prepared where they take the common form; None for a page left to orjson."},
    {"scan_rows", (PyCFunction)(void (*)(void))scan_rows, METH_FASTCALL,
     "scan_rows(data, first, latest_us, loads, prepared_type, max_bytes) -> (rows, consumed, ended) | None: "
     "the rows of a piece of a streamed JSON array, up to the first it cannot finish."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, .m_name = "cdr_stream.records._native",
    .m_doc = "The fast path of normalization, in C.", .m_size = -1, .m_methods = module_methods,
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
