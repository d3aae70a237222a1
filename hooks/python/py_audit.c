/* The audit hook: added before Python starts (PEP 578), it waits for the first
 * import of a natten module or of torch to run the bootstrap, and writes the report
 * before an exec replaces the image. */
#include "py_natten.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/nf_core.h"
#include "../../src/nf_log.h"
#include "py_api.h"
#include "py_natten_internal.h"

#define P nf_py

static bool installed, installing;
static atomic_bool said_install;

/* The first import of a natten module, or of torch, runs the bootstrap. */
static bool is_trigger_module(PyObject *name) {
    Py_ssize_t len;
    const char *s = name ? P.PyUnicode_AsUTF8AndSize(name, &len) : NULL;
    if (s == NULL) {
        P.PyErr_Clear();
        return false;
    }
    if (strncmp(s, "natten", 6) == 0 && (s[6] == '\0' || s[6] == '.')) return true;
    return strcmp(s, "torch") == 0; /* a torch program: its dump is always written */
}

static int audit_hook(const char *event, PyObject *args, void *data) {
    (void)data;
    nf_py_audit_settle(); /* the hook's entry, into the final raw allocator (-X dev) */
    /* Called for every audit event in the process: leave at once unless this is the
     * first import of a natten module (or of torch), or an exec. */
    if (event[0] == 'o' && strcmp(event, "os.exec") == 0) {
        nf_core_finish(); /* the image ends here: its report now, before it is replaced */
        return 0;
    }
    if (installed || installing || event[0] != 'i' || strcmp(event, "import") != 0) return 0;
    PyObject *et, *ev, *tb;
    P.PyErr_Fetch(&et, &ev, &tb);
    if (is_trigger_module(P.PyTuple_GetItem(args, 0))) {
        installing = true;
        if (nf_py_run_bootstrap() != 0) {
            P.PyErr_Clear();
            nf_log_once(&said_install, "could not hook NATTEN's import; NATTEN ops are not counted");
        }
        installing = false;
        installed = true;
    }
    P.PyErr_Clear();
    P.PyErr_Restore(et, ev, tb);
    return 0;
}

bool nf_py_natten_install(void) { return nf_py_add_audit_hook(audit_hook, NULL); }

