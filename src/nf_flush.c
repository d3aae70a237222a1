#include "nf_flush.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "nf_core.h"
#include "nf_log.h"

/* wake: 'T' final report (SIGTERM). ack: the final report is out. */
static int wake_pipe[2] = {-1, -1}, ack_pipe[2] = {-1, -1};
static volatile sig_atomic_t writer_pid; /* process whose writer runs; 0: none */
static atomic_bool running, said_failed;
static _Atomic uint64_t ops;
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction previous_term;

static void *writer_main(void *arg) {
    (void)arg;
    unsigned seconds = nf_core_config()->flush_seconds;
    int timeout = seconds ? (int)(seconds > 2000000 ? 2000000000u : seconds * 1000u) : -1;
    for (;;) {
        struct pollfd p = {.fd = wake_pipe[0], .events = POLLIN};
        int r = poll(&p, 1, timeout);
        char c = 0;
        if (r < 0 && errno != EINTR) return NULL;
        if (r > 0 && read(wake_pipe[0], &c, 1) != 1) return NULL;
        if (c == 'T') {
            nf_core_finish();
            ssize_t w = write(ack_pipe[1], "A", 1);
            (void)w;
        } else if (r == 0) { /* NAFLOPS_FLUSH_SECONDS elapsed */
            nf_core_flush();
        }
    }
}

/* SIGTERM: have the writer report (write and poll are async-signal-safe; the report
 * itself runs in the writer's normal context), then die of the signal as before. */
static void on_term(int sig) {
    int saved = errno;
    if (writer_pid != 0 && writer_pid == getpid()) {
        ssize_t w = write(wake_pipe[1], "T", 1);
        if (w == 1) {
            struct pollfd p = {.fd = ack_pipe[0], .events = POLLIN};
            poll(&p, 1, 5000); /* never hang the exit on the counter */
        }
    }
    sigaction(sig, &previous_term, NULL);
    raise(sig); /* delivered once this handler returns: same death, same status */
    errno = saved;
}

static void install_term_handler(void) {
    struct sigaction current;
    if (sigaction(SIGTERM, NULL, &current) != 0) return;
    /* Only where nobody else handles SIGTERM: a program's own handler stays in charge
     * (and when it exits normally, the exit report covers it). */
    if (!(current.sa_flags & SA_SIGINFO) && current.sa_handler == SIG_DFL) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_term;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        previous_term = current;
        sigaction(SIGTERM, &sa, NULL);
    }
}

static int make_pipe(int fds[2]) {
    if (pipe2(fds, O_CLOEXEC) != 0) return -1;
    /* a full pipe already holds a wake-up: never block the program on it */
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    return 0;
}

static void start(void) {
    pthread_mutex_lock(&start_lock);
    if (!atomic_load(&running)) {
        atomic_store(&running, true); /* even on failure: try once per process */
        pthread_t t;
        sigset_t all, old;
        sigfillset(&all);
        if (make_pipe(wake_pipe) == 0 && make_pipe(ack_pipe) == 0) {
            /* signals go to the program's threads, never to the writer */
            pthread_sigmask(SIG_SETMASK, &all, &old);
            int rc = pthread_create(&t, NULL, writer_main, NULL);
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            if (rc == 0) {
                pthread_detach(t);
                writer_pid = getpid();
                install_term_handler();
            }
        }
        if (writer_pid == 0)
            nf_log_once(&said_failed, "cannot start the dump writer (%s); no report on SIGTERM, "
                        "no periodic flush", strerror(errno));
    }
    pthread_mutex_unlock(&start_lock);
}

void nf_flush_counted(void) {
    if (!atomic_load_explicit(&running, memory_order_relaxed)) start();
    /* Written here, not by the writer: when the call returns the dump holds it, so
     * an os._exit right after loses fewer than NAFLOPS_FLUSH_OPS ops, never more. */
    unsigned every = nf_core_config()->flush_ops;
    if (every != 0 && (atomic_fetch_add_explicit(&ops, 1, memory_order_relaxed) + 1) % every == 0)
        nf_core_flush();
}

void nf_flush_after_fork_child(void) {
    for (int i = 0; i < 2; i++) {
        if (wake_pipe[i] >= 0) close(wake_pipe[i]);
        if (ack_pipe[i] >= 0) close(ack_pipe[i]);
        wake_pipe[i] = ack_pipe[i] = -1;
    }
    pthread_mutex_init(&start_lock, NULL);
    writer_pid = 0;
    atomic_store(&ops, 0);
    atomic_store(&running, false);
}
