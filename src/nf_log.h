/* Messages to the user: one line each, prefixed "naflops: ", on stderr. */
#ifndef NF_LOG_H
#define NF_LOG_H

#include <stdatomic.h>
#include <stdbool.h>

void nf_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Logs only the first time for this flag (a failure disables a part and says so once). */
void nf_log_once(atomic_bool *said, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* For nf_config_parse: prints a line as it is. */
void nf_log_raw_line(const char *line);

#endif
