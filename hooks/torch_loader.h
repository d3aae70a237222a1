/* Loads the libtorch observer (the whole-model count) once the program has imported
 * torch, if NAFLOPS_WHOLE_MODEL allows and an observer was built for exactly that
 * torch version, next to libnaflops.so or in the observer cache
 * ($XDG_CACHE_HOME or ~/.cache, then naflops/observers/<version>/); otherwise says in
 * one line why the whole-model count is off (and the command that builds one). */
#ifndef NF_TORCH_LOADER_H
#define NF_TORCH_LOADER_H

/* torch_version: torch.__version__ of the process. Only the first call acts. */
void nf_torch_load(const char *torch_version);

#endif
