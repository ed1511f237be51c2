/* Kafka record batches (message format v2) of a transaction's events, built in one call.

   `fill` groups events by partition and writes each partition's records into batches of at most
   `max_bytes`, exactly as aiokafka's DefaultRecordBatchBuilder writes them (uncompressed, create time,
   offsets and timestamps relative to a batch's first record). `seal` writes the producer's id, epoch and
   base sequence into a batch once the producer assigns them, and the CRC-32C that covers them. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define HEADER_SIZE 61
#define CRC_AT 17
#define ATTRIBUTES_AT 21
#define PRODUCER_AT 43
#define TRANSACTIONAL 0x10
#define MAGIC 2
/* A record's length prefix, attributes, timestamp delta, offset delta and two lengths: at most this. */
#define RECORD_OVERHEAD (5 + 1 + 10 + 5 + 5 + 5)

/* --- CRC-32C (Castagnoli), reflected, slicing by 8 ------------------------------------------------- */

static uint32_t crc_table[8][256];

static void crc_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = n;
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
        crc_table[0][n] = crc;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = crc_table[0][n];
        for (int k = 1; k < 8; k++) {
            crc = crc_table[0][crc & 0xFF] ^ (crc >> 8);
            crc_table[k][n] = crc;
        }
    }
}

static uint32_t crc_soft(uint32_t crc, const unsigned char *p, size_t n) {
    while (n && ((uintptr_t)p & 7)) {
        crc = crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
        n--;
    }
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        word ^= crc; /* little-endian hosts only; see crc32c() */
        crc = crc_table[7][word & 0xFF] ^ crc_table[6][(word >> 8) & 0xFF] ^ crc_table[5][(word >> 16) & 0xFF] ^
              crc_table[4][(word >> 24) & 0xFF] ^ crc_table[3][(word >> 32) & 0xFF] ^
              crc_table[2][(word >> 40) & 0xFF] ^ crc_table[1][(word >> 48) & 0xFF] ^ crc_table[0][word >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) crc = crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc;
}

static uint32_t crc_bytewise(uint32_t crc, const unsigned char *p, size_t n) {
    while (n--) crc = crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_CRC_INSTRUCTION 1
__attribute__((target("sse4.2"))) static uint32_t crc_hard(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t crc64 = crc;
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        crc64 = __builtin_ia32_crc32di(crc64, word);
        p += 8;
        n -= 8;
    }
    crc = (uint32_t)crc64;
    while (n--) crc = __builtin_ia32_crc32qi(crc, *p++);
    return crc;
}
#endif

static int use_crc_instruction = 0;

static uint32_t crc32c(const unsigned char *p, size_t n) {
    uint32_t crc = 0xFFFFFFFFu;
#ifdef HAVE_CRC_INSTRUCTION
    if (use_crc_instruction) return crc_hard(crc, p, n) ^ 0xFFFFFFFFu;
#endif
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return crc_soft(crc, p, n) ^ 0xFFFFFFFFu;
#else
    return crc_bytewise(crc, p, n) ^ 0xFFFFFFFFu;
#endif
}

/* --- encoding -------------------------------------------------------------------------------------- */

static void put_be16(unsigned char *p, uint16_t v) {
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void put_be64(unsigned char *p, uint64_t v) {
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

/* Kafka's varints are zigzag-encoded, as protobuf's sint64. */
static size_t varint_size(int64_t value) {
    uint64_t v = ((uint64_t)value << 1) ^ (uint64_t)(value >> 63);
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static unsigned char *put_varint(unsigned char *p, int64_t value) {
    uint64_t v = ((uint64_t)value << 1) ^ (uint64_t)(value >> 63);
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

/* One partition's batch being filled, straight into the bytearray that is handed over: it starts at the
   most a batch may take (pages are only touched as records fill them) and is cut to size when done. */
typedef struct {
    long partition;
    PyObject *array; /* NULL until the partition's next record */
    Py_ssize_t size;
    int64_t first_timestamp, max_timestamp;
    int32_t count;
} OpenBatch;

static int open_array(OpenBatch *b, Py_ssize_t max_bytes) {
    b->array = PyByteArray_FromStringAndSize(NULL, max_bytes);
    b->size = HEADER_SIZE;
    b->count = 0;
    return b->array == NULL ? -1 : 0;
}

/* The batch's header, all but the producer's fields and the CRC (`seal`), as aiokafka writes it. */
static PyObject *finish(OpenBatch *b, int transactional) {
    unsigned char *p = (unsigned char *)PyByteArray_AS_STRING(b->array);
    memset(p, 0, HEADER_SIZE);
    put_be32(p + 8, (uint32_t)(b->size - 12));
    put_be32(p + 12, (uint32_t)(int32_t)-1); /* partition leader epoch: none, as a producer sends it */
    p[16] = MAGIC;
    put_be16(p + ATTRIBUTES_AT, transactional ? TRANSACTIONAL : 0);
    put_be32(p + 23, (uint32_t)(b->count - 1));
    put_be64(p + 27, (uint64_t)b->first_timestamp);
    put_be64(p + 35, (uint64_t)b->max_timestamp);
    put_be64(p + PRODUCER_AT, (uint64_t)(int64_t)-1);
    put_be16(p + 51, (uint16_t)(int16_t)-1);
    put_be32(p + 53, 0);
    put_be32(p + 57, (uint32_t)b->count);
    PyObject *array = b->array;
    b->array = NULL;
    if (PyByteArray_Resize(array, b->size) < 0) {
        Py_DECREF(array);
        return NULL;
    }
    return Py_BuildValue("(lNi)", b->partition, array, (int)b->count);
}

static int get_bytes(PyObject *value, const char *what, Py_ssize_t index, const char **data, Py_ssize_t *size) {
    if (!PyBytes_Check(value)) {
        PyErr_Format(PyExc_TypeError, "event %zd: the %s must be bytes, not %.100s", index, what,
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    *data = PyBytes_AS_STRING(value);
    *size = PyBytes_GET_SIZE(value);
    return 0;
}

PyDoc_STRVAR(fill_doc,
             "fill(events, partition_of, partition, headers, max_bytes, transactional, /)\n--\n\n"
             "The record batches of `events` (tuples whose fields 1, 2 and 3 are key, timestamp in ms and\n"
             "value): a list of (partition, batch, records), each batch at most `max_bytes`, in the order\n"
             "they fill. `partition_of` (a dict) gives a key's partition, else `partition(key)` does.\n"
             "`headers` is every record's headers section, already encoded (count first). A record no empty\n"
             "batch can hold raises ValueError(position of the event, bytes of its record).");

static PyObject *fill(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "fill() takes 6 arguments");
        return NULL;
    }
    PyObject *events = args[0], *partition_of = args[1], *partition_fn = args[2], *headers = args[3];
    if (!PyList_Check(events) || !PyDict_Check(partition_of) || !PyBytes_Check(headers)) {
        PyErr_SetString(PyExc_TypeError, "fill(list, dict, callable, bytes, int, bool)");
        return NULL;
    }
    Py_ssize_t max_bytes = PyLong_AsSsize_t(args[4]);
    if (max_bytes == -1 && PyErr_Occurred()) return NULL;
    int transactional = PyObject_IsTrue(args[5]);
    if (transactional < 0) return NULL;
    const char *header_data = PyBytes_AS_STRING(headers);
    Py_ssize_t header_size = PyBytes_GET_SIZE(headers);

    PyObject *result = PyList_New(0);
    if (result == NULL) return NULL;
    OpenBatch *open = NULL;
    Py_ssize_t open_count = 0, open_capacity = 0;
    Py_ssize_t n = PyList_GET_SIZE(events);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *event = PyList_GET_ITEM(events, i);
        if (!PyTuple_Check(event) || PyTuple_GET_SIZE(event) < 4) {
            PyErr_Format(PyExc_TypeError, "event %zd is not an Event", i);
            goto error;
        }
        PyObject *key = PyTuple_GET_ITEM(event, 1);
        const char *key_data, *value_data;
        Py_ssize_t key_size, value_size;
        if (get_bytes(key, "key", i, &key_data, &key_size) < 0) goto error;
        if (get_bytes(PyTuple_GET_ITEM(event, 3), "value", i, &value_data, &value_size) < 0) goto error;
        int64_t timestamp = PyLong_AsLongLong(PyTuple_GET_ITEM(event, 2));
        if (timestamp == -1 && PyErr_Occurred()) goto error;

        long partition;
        PyObject *found = PyDict_GetItemWithError(partition_of, key);
        if (found != NULL) {
            partition = PyLong_AsLong(found);
        } else {
            if (PyErr_Occurred()) goto error;
            PyObject *computed = PyObject_CallOneArg(partition_fn, key);
            if (computed == NULL) goto error;
            partition = PyLong_AsLong(computed);
            Py_DECREF(computed);
        }
        if (partition == -1 && PyErr_Occurred()) goto error;

        OpenBatch *b = NULL;
        for (Py_ssize_t k = 0; k < open_count; k++) {
            if (open[k].partition == partition) {
                b = &open[k];
                break;
            }
        }
        if (b == NULL) {
            if (open_count == open_capacity) {
                Py_ssize_t capacity = open_capacity ? open_capacity * 2 : 8;
                OpenBatch *grown = PyMem_Realloc(open, (size_t)capacity * sizeof(OpenBatch));
                if (grown == NULL) {
                    PyErr_NoMemory();
                    goto error;
                }
                open = grown;
                open_capacity = capacity;
            }
            b = &open[open_count++];
            memset(b, 0, sizeof(*b));
            b->partition = partition;
        }
        if (b->array == NULL && open_array(b, max_bytes) < 0) goto error;

        for (int attempt = 0;; attempt++) {
            int64_t first = b->count ? b->first_timestamp : timestamp;
            int64_t delta = timestamp - first;
            Py_ssize_t body = 1 + (Py_ssize_t)varint_size(delta) + (Py_ssize_t)varint_size(b->count) +
                              (Py_ssize_t)varint_size(key_size) + key_size + (Py_ssize_t)varint_size(value_size) +
                              value_size + header_size;
            Py_ssize_t record = (Py_ssize_t)varint_size(body) + body;
            if (b->size + record <= max_bytes) {
                unsigned char *base = (unsigned char *)PyByteArray_AS_STRING(b->array);
                unsigned char *p = base + b->size;
                p = put_varint(p, body);
                *p++ = 0; /* attributes */
                p = put_varint(p, delta);
                p = put_varint(p, b->count);
                p = put_varint(p, key_size);
                memcpy(p, key_data, (size_t)key_size);
                p += key_size;
                p = put_varint(p, value_size);
                memcpy(p, value_data, (size_t)value_size);
                p += value_size;
                memcpy(p, header_data, (size_t)header_size);
                p += header_size;
                b->size = p - base;
                if (b->count == 0 || timestamp > b->max_timestamp) b->max_timestamp = timestamp;
                if (b->count == 0) b->first_timestamp = timestamp;
                b->count++;
                break;
            }
            if (b->count == 0) {
                PyObject *where = Py_BuildValue("(nn)", i, record);
                if (where != NULL) PyErr_SetObject(PyExc_ValueError, where);
                Py_XDECREF(where);
                goto error;
            }
            PyObject *item = finish(b, transactional);
            if (item == NULL || PyList_Append(result, item) < 0) {
                Py_XDECREF(item);
                goto error;
            }
            Py_DECREF(item);
            if (open_array(b, max_bytes) < 0) goto error;
        }
    }
    for (Py_ssize_t k = 0; k < open_count; k++) {
        if (open[k].array == NULL || open[k].count == 0) continue;
        PyObject *item = finish(&open[k], transactional);
        if (item == NULL || PyList_Append(result, item) < 0) {
            Py_XDECREF(item);
            goto error;
        }
        Py_DECREF(item);
    }
    for (Py_ssize_t k = 0; k < open_count; k++) Py_XDECREF(open[k].array);
    PyMem_Free(open);
    return result;

error:
    for (Py_ssize_t k = 0; k < open_count; k++) Py_XDECREF(open[k].array);
    PyMem_Free(open);
    Py_DECREF(result);
    return NULL;
}

PyDoc_STRVAR(seal_doc,
             "seal(batch, producer_id, producer_epoch, base_sequence, /)\n--\n\n"
             "Write the producer's fields into a batch `fill` made, and its CRC-32C. Safe to repeat.");

static PyObject *seal(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyByteArray_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "seal(bytearray, int, int, int)");
        return NULL;
    }
    Py_ssize_t size = PyByteArray_GET_SIZE(args[0]);
    if (size < HEADER_SIZE) {
        PyErr_SetString(PyExc_ValueError, "not a record batch");
        return NULL;
    }
    long long producer_id = PyLong_AsLongLong(args[1]);
    if (producer_id == -1 && PyErr_Occurred()) return NULL;
    long epoch = PyLong_AsLong(args[2]);
    if (epoch == -1 && PyErr_Occurred()) return NULL;
    long sequence = PyLong_AsLong(args[3]);
    if (sequence == -1 && PyErr_Occurred()) return NULL;
    unsigned char *p = (unsigned char *)PyByteArray_AS_STRING(args[0]);
    put_be64(p + PRODUCER_AT, (uint64_t)producer_id);
    put_be16(p + 51, (uint16_t)(int16_t)epoch);
    put_be32(p + 53, (uint32_t)(int32_t)sequence);
    put_be32(p + CRC_AT, crc32c(p + ATTRIBUTES_AT, (size_t)(size - ATTRIBUTES_AT)));
    Py_RETURN_NONE;
}

PyDoc_STRVAR(crc_doc, "crc32c(data, /)\n--\n\nThe CRC-32C of `data`, as a record batch carries it.");

static PyObject *crc(PyObject *module, PyObject *data) {
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return NULL;
    uint32_t value = crc32c(view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(value);
}

static PyMethodDef methods[] = {
    {"fill", (PyCFunction)(void (*)(void))fill, METH_FASTCALL, fill_doc},
    {"seal", (PyCFunction)(void (*)(void))seal, METH_FASTCALL, seal_doc},
    {"crc32c", crc, METH_O, crc_doc},
    {NULL, NULL, 0, NULL},
};

static int exec_module(PyObject *module) {
    crc_init();
#ifdef HAVE_CRC_INSTRUCTION
    __builtin_cpu_init();
    use_crc_instruction = __builtin_cpu_supports("sse4.2") != 0;
#endif
    if (PyModule_AddStringConstant(module, "SOURCE_SHA256", NATIVE_SOURCE_SHA256) < 0) return -1;
    if (PyModule_AddIntConstant(module, "HEADER_SIZE", HEADER_SIZE) < 0) return -1;
    return PyModule_AddIntConstant(module, "CRC_INSTRUCTION", use_crc_instruction);
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_batches", "Kafka record batches of events, built in C.", 0, methods, slots,
};

PyMODINIT_FUNC PyInit__batches(void) { return PyModuleDef_Init(&module_def); }
