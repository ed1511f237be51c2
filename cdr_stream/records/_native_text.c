/* The output buffer, the JSON writers and the rules of the common value forms, shared by the row reader
 * (_native.c) and the page reader (_native_page.c). */
#include <limits.h>

#include "_native.h"

const char *const FIELD_NAMES[N_FIELDS] = {
    "AccountCode", "Direction", "CallType", "BillDate", "Date", "Time", "UTCDateTime", "UTCOffset",
    "AParty", "BParty", "BillNumber", "Seconds", "NetworkSeconds", "ConnectSeconds", "Charge",
    "ChargeExcl", "FreeUnitsUsed", "TextDesc1", "TextDesc2", "ReleaseCause", "Status", "ServiceType",
    "BillingGroup", "CallingGroup", "Profile",
};

#define KEY(text) text, (Py_ssize_t)(sizeof(text) - 1)
const EventField EVENT_FIELDS[N_FIELDS] = {
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

/* ---- the output buffer ---- */

int buffer_grow(Buffer *b, Py_ssize_t more) {
    Py_ssize_t capacity = b->capacity * 2;
    while (capacity < b->size + more) {
        capacity *= 2;
    }
    char *grown = PyMem_Malloc((size_t)capacity);
    if (grown == NULL) {
        PyErr_NoMemory();
        return FAILED;
    }
    memcpy(grown, b->data, (size_t)b->size);
    PyMem_Free(b->heap);
    b->heap = b->data = grown;
    b->capacity = capacity;
    return DONE;
}

int put_int64(Buffer *b, long long value) {
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

int latest_micros_of(PyObject *value, long long *micros) {
    int overflow;
    *micros = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (*micros == -1 && PyErr_Occurred()) {
        return FAILED;
    }
    if (overflow) {
        *micros = overflow > 0 ? LLONG_MAX : LLONG_MIN;
    }
    return DONE;
}

static const char HEX[] = "0123456789abcdef";

/* The quote, the backslash and the control characters are escaped (\b \t \n \f \r by name, the others as
 * \u00XX); everything else is written as it is. */
int put_json_string(Buffer *b, const char *text, Py_ssize_t length) {
    /* At most 6 bytes of output a byte of input, and the quotes. */
    if (buffer_reserve(b, length * 6 + 2) < 0) {
        return FAILED;
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
    return DONE;
}

int put_utc_text(Buffer *b, const char *utc) {
    char text[22];
    text[0] = '"';
    memcpy(text + 1, utc, 10);
    text[11] = 'T';
    memcpy(text + 12, utc + 11, 8);
    text[20] = 'Z';
    text[21] = '"';
    return put(b, text, 22);
}

/* ---- the rules ---- */

/* Digits at text[0..count), as a number; -1 when one is not an ASCII digit. */
static long digits(const char *text, int count) {
    long number = 0;
    for (int i = 0; i < count; i++) {
        if (!is_digit((unsigned char)text[i])) {
            return -1;
        }
        number = number * 10 + (text[i] - '0');
    }
    return number;
}

static int leap(long year) { return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0; }

/* Whether "YYYY-MM-DD" at `t` is a date Python's date() accepts; its days from 1970-01-01 in *days. */
static int valid_day(const char *t, long long *days) {
    static const int MONTH_DAYS[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (t[4] != '-' || t[7] != '-') {
        return 0;
    }
    long y = digits(t, 4), m = digits(t + 5, 2), d = digits(t + 8, 2);
    if (y < 1 || m < 1 || m > 12 || d < 1 || d > MONTH_DAYS[m - 1] + (m == 2 && leap(y))) {
        return 0;
    }
    /* Howard Hinnant's days_from_civil. */
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    *days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
    return 1;
}

/* "HH:MM:SS" at `t` in seconds from midnight, or -1. */
static long time_seconds(const char *t) {
    if (t[2] != ':' || t[5] != ':') {
        return -1;
    }
    long hour = digits(t, 2), minute = digits(t + 3, 2), second = digits(t + 6, 2);
    if (hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59) {
        return -1;
    }
    return hour * 3600 + minute * 60 + second;
}

int utc_seconds_of(const char *t, Py_ssize_t length, long long *seconds) {
    long long days;
    if (length != 19 || (t[10] != ' ' && t[10] != 'T') || !valid_day(t, &days)) {
        return GIVE_UP;
    }
    long time = time_seconds(t + 11);
    if (time < 0) {
        return GIVE_UP;
    }
    *seconds = days * 86400 + time;
    return DONE;
}

int is_time_of_day(const char *text, Py_ssize_t length) { return length == 8 && time_seconds(text) >= 0; }

int date_kind(const char *text, Py_ssize_t length) {
    long long days;
    if (length == 0) {
        return DATE_EMPTY;
    }
    if (length == 10 && valid_day(text, &days)) {
        return DATE_VALID;
    }
    /* MySQL's unset DATE and DATETIME. */
    if ((length == 10 && memcmp(text, "0000-00-00", 10) == 0) ||
        (length == 19 && memcmp(text, "0000-00-00 00:00:00", 19) == 0)) {
        return DATE_EMPTY;
    }
    return DATE_OTHER;
}
