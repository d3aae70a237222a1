/* Loads the libtorch observer (the whole-model count) once the program has imported
 * torch, if NAFLOPS_WHOLE_MODEL allows and an observer was built for exactly that
 * torch version, next to libnaflops.so or in the observer cache
 * ($XDG_CACHE_HOME or ~/.cache, then naflops/observers/<version>/); otherwise says in
 * one line why the whole-model count is off (and the command that builds one). */
#ifndef NF_TORCH_LOADER_H
#define NF_TORCH_LOADER_H

/* torch_version: torch.__version__ of the process. Only the first call acts. */
void nf_torch_load(const char *torch_version);

/* The observer's tensor reader for the NATTEN wrapper (tensor_meta.h), loaded with
 * the observer whether or not the whole model is counted; NULL without one. */
struct nf_tensor_reader;

#include <stdbool.h>

/* Whether the observer counts NATTEN's dispatcher ops (natten::na2d_forward, ...):
 * then a compiled NATTEN call that reached libnatten is counted there, not by the
 * compiled path (py_compiled.c). */
bool nf_torch_counts_natten_ops(void);
const struct nf_tensor_reader *nf_torch_reader(void);

#endif
