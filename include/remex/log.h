/*
 * log: the one logger of every remex daemon.
 *
 * Lines go to stderr (or the fd set by log_set_fd), one write(2) per line so
 * concurrent writers never interleave within a line. Text format:
 *   2026-11-22T10:00:00.123Z info worker: message
 * JSON format (one object per line):
 *   {"ts":"2026-11-22T10:00:00.123Z","level":"info","role":"worker","msg":"message"}
 * The log_* macros test the level before evaluating their arguments.
 * Every call preserves errno. Lines longer than LOG_LINE_MAX are truncated.
 * Never pass token or secret values to the logger.
 */
#ifndef REMEX_LOG_H
#define REMEX_LOG_H

#include <stdarg.h>

enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN = 1,
    LOG_LEVEL_INFO = 2,
    LOG_LEVEL_DEBUG = 3,
};

enum log_format {
    LOG_FORMAT_TEXT = 0,
    LOG_FORMAT_JSON = 1,
};

#define LOG_LINE_MAX 4096

/* Sets the role tag (copied, at most 31 bytes), the threshold and the format. */
void log_init(const char *role, enum log_level level, enum log_format format);
void log_set_level(enum log_level level);
void log_set_format(enum log_format format);
/* Redirects output (default 2). Used by tests. */
void log_set_fd(int fd);

/* 1 if a message at this level would be written. */
int log_enabled(enum log_level level);

/* Parses "error|warn|info|debug" / "text|json"; returns -1 on an unknown name. */
int log_level_parse(const char *name, enum log_level *out);
int log_format_parse(const char *name, enum log_format *out);
const char *log_level_name(enum log_level level);

/* Writes one line unconditionally (callers normally use the macros). */
void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vwrite(enum log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

#define log_at(lvl, ...)                                                                           \
    do {                                                                                           \
        if (log_enabled(lvl))                                                                      \
            log_write((lvl), __VA_ARGS__);                                                         \
    } while (0)
#define log_error(...) log_at(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_at(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  log_at(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_at(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
