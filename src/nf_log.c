#include "nf_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "nf_stderr.h"

/* One write(2) per line so that lines from several processes do not interleave. */
static void emit(const char *fmt, va_list ap) {
    char line[1024] = "naflops: ";
    size_t n = strlen(line);
    vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    n = strlen(line);
    line[n++] = '\n';
    nf_stderr_write(line, n);
}

void nf_log(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    emit(fmt, ap);
    va_end(ap);
}

void nf_log_once(atomic_bool *said, const char *fmt, ...) {
    if (atomic_exchange(said, true)) return;
    va_list ap;
    va_start(ap, fmt);
    emit(fmt, ap);
    va_end(ap);
}

void nf_log_raw_line(const char *line) {
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "%s\n", line);
    if (n < 0) return;
    if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
    nf_stderr_write(buf, (size_t)n);
}
