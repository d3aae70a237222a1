/* Text shared by the report writers (nf_report.c, nf_gpu_report.c): dims as
 * "2x16x16" and JSON strings. */
#include "nf_text.h"

#include <stdio.h>
#include <string.h>

const char *nf_text_dims(const int64_t *v, int n, char *buf, size_t len) {
    if (n == 0) return "-";
    size_t k = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && k < len; i++)
        k += (size_t)snprintf(buf + k, len - k, i ? "x%lld" : "%lld", (long long)v[i]);
    return buf;
}

void nf_text_json_string(FILE *f, const char *s, bool ascii_only) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20 || (ascii_only && c >= 0x7f)) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

void nf_text_csv_field(FILE *f, const char *s) {
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}
