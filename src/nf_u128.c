#include "nf_u128.h"

#include <stdio.h>
#include <string.h>

char *nf_u128_to_dec(nf_u128 v, char *buf) {
    char tmp[NF_U128_DEC_LEN];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v != 0);
    for (int i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return buf;
}

nf_u128 nf_u128_mul_sat(nf_u128 a, nf_u128 b) {
    if (a != 0 && b > NF_U128_MAX / a) return NF_U128_MAX;
    return a * b;
}

nf_u128 nf_u128_add_sat(nf_u128 a, nf_u128 b) {
    return (NF_U128_MAX - a < b) ? NF_U128_MAX : a + b;
}

char *nf_u128_to_si(nf_u128 v, const char *unit, char *buf, size_t len) {
    static const char prefixes[] = {' ', 'K', 'M', 'G', 'T', 'P', 'E', 'Z', 'Y', 'R', 'Q'};
    long double x = (long double)v;
    size_t p = 0;
    /* 999.95 and up would print as "1000.0": move those to the next prefix too. Whole
     * numbers below 1000 are printed exactly, so the threshold does not affect them. */
    while (x >= 999.95L && p + 1 < sizeof prefixes) {
        x /= 1000.0L;
        p++;
    }
    if (p == 0)
        snprintf(buf, len, "%s %s", nf_u128_to_dec(v, (char[NF_U128_DEC_LEN]){0}), unit);
    else
        snprintf(buf, len, "%.1Lf %c%s", x, prefixes[p], unit);
    return buf;
}
