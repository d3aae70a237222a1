/* 128-bit unsigned helpers: a day of H200 work passes 2^64 FLOPs. */
#ifndef NF_U128_H
#define NF_U128_H

#include <stddef.h>
#include <stdint.h>

typedef unsigned __int128 nf_u128;

#define NF_U128_MAX (~(nf_u128)0)
/* Longest decimal rendering of a 128-bit value (39 digits) plus the NUL. */
#define NF_U128_DEC_LEN 40

/* Writes v in decimal into buf (at least NF_U128_DEC_LEN bytes); returns buf. */
char *nf_u128_to_dec(nf_u128 v, char *buf);

/* Saturating multiply and add: counts never wrap; a saturated total is reported
 * as the maximum value rather than as a small wrong number. */
nf_u128 nf_u128_mul_sat(nf_u128 a, nf_u128 b);
nf_u128 nf_u128_add_sat(nf_u128 a, nf_u128 b);

/* Formats v with an SI prefix and a unit, e.g. "12.3 TFLOP"; buf >= 32 bytes. */
char *nf_u128_to_si(nf_u128 v, const char *unit, char *buf, size_t len);

#endif
