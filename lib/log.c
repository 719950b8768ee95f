/* log: leveled text/JSON lines to one fd, one write per line. */
#include "remex/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static struct {
    char role[32];
    enum log_level level;
    enum log_format format;
    int fd;
} log_state = {"remex", LOG_LEVEL_INFO, LOG_FORMAT_TEXT, 2};

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_init(const char *role, enum log_level level, enum log_format format)
{
    snprintf(log_state.role, sizeof(log_state.role), "%s", role ? role : "remex");
    log_state.level = level;
    log_state.format = format;
}

void log_set_level(enum log_level level)
{
    log_state.level = level;
}

void log_set_format(enum log_format format)
{
    log_state.format = format;
}

void log_set_fd(int fd)
{
    log_state.fd = fd;
}

int log_enabled(enum log_level level)
{
    return level <= log_state.level;
}

const char *log_level_name(enum log_level level)
{
    if ((unsigned)level > LOG_LEVEL_DEBUG)
        return "?";
    return level_names[level];
}

int log_level_parse(const char *name, enum log_level *out)
{
    for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (strcasecmp(name, "warning") == 0) {
        *out = LOG_LEVEL_WARN;
        return 0;
    }
    return -1;
}

int log_format_parse(const char *name, enum log_format *out)
{
    if (strcasecmp(name, "text") == 0)
        *out = LOG_FORMAT_TEXT;
    else if (strcasecmp(name, "json") == 0)
        *out = LOG_FORMAT_JSON;
    else
        return -1;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not valid. */
static size_t utf8_seq_len(const unsigned char *s)
{
    size_t n;
    unsigned cp;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        n = 2, cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        n = 3, cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        n = 4, cp = s[0] & 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/*
 * Appends s to line[*pos..cap) as JSON string content; invalid UTF-8 becomes
 * U+FFFD so every line stays valid JSON. Stops silently at the cap.
 */
static void json_escape(char *line, size_t cap, size_t *pos, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t p = *pos;
    for (const unsigned char *c = (const unsigned char *)s; *c && p + 7 < cap; c++) {
        if (*c == '"' || *c == '\\') {
            line[p++] = '\\';
            line[p++] = (char)*c;
        } else if (*c == '\n') {
            line[p++] = '\\';
            line[p++] = 'n';
        } else if (*c == '\t') {
            line[p++] = '\\';
            line[p++] = 't';
        } else if (*c < 0x20 || *c == 0x7f) {
            line[p++] = '\\';
            line[p++] = 'u';
            line[p++] = '0';
            line[p++] = '0';
            line[p++] = hex[*c >> 4];
            line[p++] = hex[*c & 15];
        } else if (*c < 0x80) {
            line[p++] = (char)*c;
        } else {
            size_t n = utf8_seq_len(c);
            if (n == 0) {
                memcpy(line + p, "\\ufffd", 6);
                p += 6;
            } else {
                memcpy(line + p, c, n);
                p += n;
                c += n - 1;
            }
        }
    }
    *pos = p;
}

static size_t format_ts(char *out, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    int m = snprintf(out + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000);
    return n + (m > 0 ? (size_t)m : 0);
}

void log_vwrite(enum log_level level, const char *fmt, va_list ap)
{
    int saved = errno;
    char msg[LOG_LINE_MAX], line[LOG_LINE_MAX + 256], ts[40];
    size_t pos;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    format_ts(ts, sizeof(ts));
    if (log_state.format == LOG_FORMAT_JSON) {
        int n = snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",\"role\":\"", ts,
                         log_level_name(level));
        pos = (size_t)n;
        json_escape(line, sizeof(line), &pos, log_state.role);
        memcpy(line + pos, "\",\"msg\":\"", 9);
        pos += 9;
        json_escape(line, sizeof(line) - 3, &pos, msg);
        memcpy(line + pos, "\"}\n", 3);
        pos += 3;
    } else {
        int n =
            snprintf(line, sizeof(line), "%s %s %s: ", ts, log_level_name(level), log_state.role);
        pos = (size_t)n;
        /* Keep one line per record: control characters become spaces. */
        for (const char *c = msg; *c && pos + 2 < sizeof(line); c++)
            line[pos++] = ((unsigned char)*c < 0x20 && *c != '\t') ? ' ' : *c;
        line[pos++] = '\n';
    }
    for (size_t off = 0; off < pos;) {
        ssize_t w = write(log_state.fd, line + off, pos - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    errno = saved;
}

void log_write(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, fmt, ap);
    va_end(ap);
}
