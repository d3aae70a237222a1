/* Reading a NATTEN call's arguments into a ledger key.
 *
 * The same reader serves both paths: an eager call, whose arguments are the live
 * Python objects, and a call compiled by torch.compile, whose tensors arrive
 * described by value (shape, dtype, device: what Dynamo knew while tracing). */
#ifndef NF_PY_ARGS_H
#define NF_PY_ARGS_H

#include <stdbool.h>
#include <stdint.h>

#include "../../src/nf_ledger.h"
#include "natten_targets.h"
#include "py_api.h"

/* A tensor described by value (compiled path). */
typedef struct nf_tdesc {
    int64_t shape[NF_MAX_RANK];
    uint8_t rank;
    PyObject *dtype;   /* torch.dtype, borrowed; NULL: dtype_id holds it */
    PyObject *device;  /* torch.device, borrowed; NULL: device_id holds it */
    uint16_t dtype_id, device_id; /* interned names, read by the tensor reader */
} nf_tdesc;

/* One call's arguments by role. A role is absent (or None) when v and d are NULL. */
typedef struct nf_argv {
    PyObject *v[NF_ROLE_COUNT];       /* borrowed */
    const nf_tdesc *d[NF_ROLE_COUNT]; /* tensors described by value */
} nf_argv;

/* Fills key (pass forward) for a call of target t; -1 where the arguments cannot be
 * read (a Python error may be set: the caller clears it). op and version are the
 * interned op name and NATTEN version. 1: read, but an AV call's attention weights
 * disagreed with the kernel size its arguments give; the key counts the tensor's
 * window (nf_args_window_check). */
int nf_args_key(const nf_target *t, uint16_t op, uint16_t version, const nf_argv *a, nf_key *key);

/* Where the last dim of a tensor that holds one entry per key (AV's attention weights,
 * QK's output) disagrees with the key's kernel, sets the kernel to that window (as
 * window x 1 x ...: only its size is known) and returns 1; else 0. */
int nf_args_window_check(nf_problem *p, int64_t last_dim);

/* The observer's C++ tensor reader (tensor_meta.h), or NULL while none is loaded. */
struct nf_tensor_reader;
void nf_args_set_reader(const struct nf_tensor_reader *reader);
const struct nf_tensor_reader *nf_args_reader(void);

/* Describes the live tensors of a (exactly torch.Tensor, no values read) through the
 * tensor reader into descs, so that nf_args_key reads no Python attribute. Does
 * nothing without a reader; a tensor it cannot read stays live. */
void nf_args_describe_fast(nf_argv *a, nf_tdesc *descs, PyObject *tensor_type);

/* Whether o's type is exactly type (a torch.Tensor, not a subclass): the reader's
 * condition. False for NULL. */
bool nf_args_is_exactly(PyObject *o, PyObject *type);

/* A tensor's shape through the reader when it has one and tensor is exactly
 * tensor_type, else through Python. */
int nf_args_shape_of(PyObject *tensor, PyObject *tensor_type, int64_t *out, uint8_t *rank);

/* A tensor's shape (at most NF_MAX_RANK dims); -1 otherwise (an error may be set). */
int nf_args_shape(PyObject *tensor, int64_t *out, uint8_t *rank);

/* Interned name of a torch.dtype / torch.device object. */
uint16_t nf_args_dtype_id(PyObject *dtype);
uint16_t nf_args_device_id(PyObject *device);
/* Interned name of a tensor's dtype / device (NF_INTERN_NONE where it cannot be
 * read; an error may be set). */
uint16_t nf_args_tensor_dtype_id(PyObject *tensor);
uint16_t nf_args_tensor_device_id(PyObject *tensor);

/* Reads a sequence of ints (a torch.Size, tuple or list) of at most max into out;
 * -1 otherwise (an error may be set). */
int nf_args_int_seq(PyObject *seq, int64_t *out, int max, uint8_t *len);

/* Names the hooks read attributes by; set once by nf_args_init. */
extern PyObject *nf_s_shape, *nf_s_dtype, *nf_s_device, *nf_s_is_cpu, *nf_s_tolist;
int nf_args_init(void);

#endif
