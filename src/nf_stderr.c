#include "nf_stderr.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "nf_flush.h"

static struct {
    atomic_bool valid;
    dev_t dev;
    ino_t ino;
} started;

void nf_stderr_remember(void) {
    struct stat st;
    if (fstat(STDERR_FILENO, &st) != 0) {
        atomic_store(&started.valid, false);
        return;
    }
    started.dev = st.st_dev;
    started.ino = st.st_ino;
    atomic_store(&started.valid, true);
}

static bool still_started(void) {
    struct stat st;
    return atomic_load(&started.valid) && fstat(STDERR_FILENO, &st) == 0 &&
           st.st_dev == started.dev && st.st_ino == started.ino;
}

bool nf_stderr_write(const char *buf, size_t n) {
    if (!still_started()) return false;
    /* A reader that went away makes write raise SIGPIPE, which kills a program that
     * left it at its default. Blocked meanwhile, and consumed if this write raised it. */
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    nf_flush_real_sigmask(SIG_BLOCK, &pipe_set, &old);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE);
    int saved = errno;
    bool ok = true;
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, buf, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            ok = false;
            break;
        }
        buf += w;
        n -= (size_t)w;
    }
    if (!was_pending) {
        sigpending(&pending);
        if (sigismember(&pending, SIGPIPE)) {
            struct timespec zero = {0, 0};
            sigtimedwait(&pipe_set, NULL, &zero);
        }
    }
    nf_flush_real_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return ok;
}
