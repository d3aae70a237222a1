/* A torch.Tensor's metadata read in C++ (torch_observer.cpp) straight from the
 * at::Tensor behind the Python object, for the NATTEN wrapper's hot path: through
 * Python, each of .shape, .dtype, .device and .requires_grad costs 40-130 ns (a
 * property call, a new torch.Size); read here, all of them cost a few ns. Only for
 * tensors of exactly torch.Tensor's type (the caller checks): a subclass or a mode
 * may see reads made through Python, which then run as before. Plain C on both
 * sides. */
#ifndef NF_TENSOR_META_H
#define NF_TENSOR_META_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NF_TMETA_MAX_RANK 8

typedef struct nf_tensor_meta {
    int64_t shape[NF_TMETA_MAX_RANK];
    uint8_t rank;
    int8_t scalar_type;   /* c10::ScalarType */
    int8_t device_type;   /* c10::DeviceType */
    int8_t device_index;  /* -1: none */
    bool requires_grad;
    bool nested;          /* a nested tensor: no plain shape */
} nf_tensor_meta;

typedef struct nf_tensor_reader {
    /* obj: a PyObject* whose type is exactly torch.Tensor. 0, or -1 (then read it
     * through Python): rank above NF_TMETA_MAX_RANK, symbolic sizes, no storage. */
    int (*read)(void *obj, nf_tensor_meta *m);
    /* requires_grad of such an object: 1, 0, or -1 */
    int (*requires_grad)(void *obj);
    /* Whether a TorchFunctionMode is active (torch._C._is_torch_function_mode_enabled) */
    bool (*function_mode)(void);
    /* Hooks the backward of a counted call on the autograd node its outputs (n
     * objects of exactly torch.Tensor's type) share: count(order) runs each time the
     * engine runs that node; under compiled autograd, py_hook (the Python hook that
     * counts the same) is what the node hands over. 0: hooked; 1: the outputs have
     * different nodes (not hooked); -1: not hooked. */
    int (*hook_backward)(void *const *outs, int n, uint32_t order, void *py_hook,
                         void (*count)(uint32_t order));
} nf_tensor_reader;

#ifdef __cplusplus
}
#endif

#endif
