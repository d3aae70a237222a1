/* Text shared by the report writers. */
#ifndef NF_TEXT_H
#define NF_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* "2x16x16x4x32", or "-" for no dims (n == 0). */
const char *nf_text_dims(const int64_t *v, int n, char *buf, size_t len);

/* s as a JSON string; ascii_only also escapes bytes from 0x7f up, one \u00XX each
 * (for names from outside, shown but not trusted to be UTF-8). */
void nf_text_json_string(FILE *f, const char *s, bool ascii_only);

/* s as one CSV field: as is, or in double quotes (quotes doubled) when it holds a
 * comma, a quote or a line break (module names come from the program). */
void nf_text_csv_field(FILE *f, const char *s);

#endif
