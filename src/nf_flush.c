#include "nf_flush.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "nf_core.h"
#include "nf_log.h"

/* The writer thread sleeps on a semaphore, not a pipe: no descriptor for a program
 * that closes every fd above 2 to close or reuse (sem_post is async-signal-safe). */
static sem_t wake;
static atomic_bool term_requested, term_done;
static volatile sig_atomic_t writer_pid; /* process whose writer runs; 0: none */
static atomic_bool running, said_failed;
static _Atomic uint64_t ops;
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;

static void *writer_main(void *arg) {
    (void)arg;
    unsigned seconds = nf_core_config()->flush_seconds;
    for (;;) {
        int r;
        if (seconds) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += seconds;
            r = sem_timedwait(&wake, &until);
        } else {
            r = sem_wait(&wake);
        }
        if (atomic_load(&term_requested)) {
            nf_core_finish();
            atomic_store(&term_done, true);
        } else if (r != 0 && errno == ETIMEDOUT) { /* NAFLOPS_FLUSH_SECONDS elapsed */
            nf_core_flush();
        }
    }
    return NULL;
}

/* ------------------------------------------------------------ SIGTERM
 *
 * The dump at SIGTERM comes from a handler of ours, which exists only while it cannot
 * change what the signal does. Under SIG_DFL the kernel kills the process the moment
 * SIGTERM is sent to a thread that does not block it; with a handler the thread runs
 * the handler later, and meanwhile a thread that takes SIGTERM synchronously
 * (sigwait, sigwaitinfo, sigtimedwait, a signalfd: each needs SIGTERM blocked) could
 * dequeue it first and survive. So the handler is ours only while
 *   - the program left SIGTERM at SIG_DFL (it never set a disposition: sigaction or
 *     signal with a new action hands SIGTERM back for good),
 *   - no thread of the program blocks it (as far as pthread_sigmask/sigprocmask say:
 *     the handler goes before the mask that blocks it is set, and comes back when the
 *     last blocking thread unblocks it or exits),
 *   - no thread waited for it synchronously (sigwait & co., signalfd: back for good);
 * and then, when it runs, SIG_DFL would have killed the process: it has the writer
 * write the report, restores SIG_DFL and re-raises on its own thread (same death,
 * same status). Queries of the disposition (sigaction's old action, signal's return)
 * see SIG_DFL, not our handler. Calls from a vfork child (the parent's memory, its
 * own pid) change nothing here. */

#define NF_EXPORT __attribute__((visibility("default")))

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
typedef int (*sigmask_fn)(int, const sigset_t *, sigset_t *);
typedef sighandler_t (*signal_fn)(int, sighandler_t);
typedef int (*sigwait_fn)(const sigset_t *, int *);
typedef int (*sigwaitinfo_fn)(const sigset_t *, siginfo_t *);
typedef int (*sigtimedwait_fn)(const sigset_t *, siginfo_t *, const struct timespec *);
typedef int (*signalfd_fn)(int, const sigset_t *, int);

static struct {
    sigaction_fn sigaction;
    sigmask_fn pthread_sigmask, sigprocmask;
    signal_fn signal;
    sigwait_fn sigwait;
    sigwaitinfo_fn sigwaitinfo;
    sigtimedwait_fn sigtimedwait;
    signalfd_fn signalfd;
} real;

static void resolve(void) {
    *(void **)&real.sigaction = dlsym(RTLD_NEXT, "sigaction");
    *(void **)&real.pthread_sigmask = dlsym(RTLD_NEXT, "pthread_sigmask");
    *(void **)&real.sigprocmask = dlsym(RTLD_NEXT, "sigprocmask");
    *(void **)&real.signal = dlsym(RTLD_NEXT, "signal");
    *(void **)&real.sigwait = dlsym(RTLD_NEXT, "sigwait");
    *(void **)&real.sigwaitinfo = dlsym(RTLD_NEXT, "sigwaitinfo");
    *(void **)&real.sigtimedwait = dlsym(RTLD_NEXT, "sigtimedwait");
    *(void **)&real.signalfd = dlsym(RTLD_NEXT, "signalfd");
}

/* Resolved before main (dlsym is no function to call first from a signal handler);
 * again on demand for a call from another library's constructor that ran earlier. */
__attribute__((constructor)) static void resolve_early(void) { resolve(); }

#define REAL(name) (real.name != NULL ? real.name : (resolve(), real.name))

static atomic_bool tracking;        /* nf_flush_track: this is the counting process */
static atomic_int owner;            /* its pid: a vfork child's calls are not its own */
static atomic_int blockers;         /* the program's threads that block SIGTERM */
static _Thread_local bool blocking; /* this thread is one of them */
static atomic_bool handed_back;     /* the program took SIGTERM over: never ours again */
static atomic_bool wanted;          /* the writer runs here: the handler may be ours */
static struct sigaction previous_term; /* SIG_DFL, as the program left it */
static pthread_key_t exit_key;
static bool have_exit_key;

static void on_term(int sig);

static bool is_ours(const struct sigaction *sa) {
    return !(sa->sa_flags & SA_SIGINFO) && sa->sa_handler == on_term;
}

static bool mine(void) { return atomic_load(&tracking) && atomic_load(&owner) == (int)getpid(); }

static void uninstall(void) {
    struct sigaction current;
    if (REAL(sigaction)(SIGTERM, NULL, &current) == 0 && is_ours(&current))
        REAL(sigaction)(SIGTERM, &previous_term, NULL);
}

static bool allowed(void) {
    return atomic_load(&wanted) && !atomic_load(&handed_back) && atomic_load(&blockers) == 0;
}

/* check_self: also not while the calling thread blocks SIGTERM (a mask it inherited,
 * never set through the functions below). */
static void maybe_install(bool check_self) {
    if (!allowed()) return;
    sigset_t mask;
    if (check_self && (REAL(pthread_sigmask)(SIG_BLOCK, NULL, &mask) != 0 || sigismember(&mask, SIGTERM)))
        return;
    struct sigaction current;
    if (REAL(sigaction)(SIGTERM, NULL, &current) != 0) return;
    if (!is_ours(&current)) {
        if ((current.sa_flags & SA_SIGINFO) || current.sa_handler != SIG_DFL) return;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_term;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        previous_term = current;
        if (REAL(sigaction)(SIGTERM, &sa, NULL) != 0) return;
    }
    if (!allowed()) uninstall(); /* a thread blocked it, or the program took it, meanwhile */
}

static void hand_back(void) {
    atomic_store(&handed_back, true);
    uninstall();
}

static void set_blocking(bool now) {
    if (now == blocking) return;
    blocking = now;
    if (now) {
        atomic_fetch_add(&blockers, 1);
        if (have_exit_key) pthread_setspecific(exit_key, (void *)1);
        uninstall();
    } else {
        atomic_fetch_sub(&blockers, 1);
        if (have_exit_key) pthread_setspecific(exit_key, NULL);
        maybe_install(true);
    }
}

static void blocking_thread_exits(void *value) {
    (void)value;
    if (!atomic_load(&tracking)) return;
    blocking = false;
    atomic_fetch_sub(&blockers, 1);
    maybe_install(false);
}

static int mask_call(sigmask_fn fn, int how, const sigset_t *set, sigset_t *old) {
    if (fn == NULL || set == NULL || !(how == SIG_SETMASK || sigismember(set, SIGTERM) == 1) || !mine())
        return fn ? fn(how, set, old) : (errno = ENOSYS, -1);
    bool blocks = how == SIG_UNBLOCK ? false : sigismember(set, SIGTERM) == 1;
    if (blocks) set_blocking(true); /* the handler goes before the mask blocks SIGTERM */
    int rc = fn(how, set, old);
    if (rc == 0 && !blocks) set_blocking(false);
    return rc;
}

NF_EXPORT int pthread_sigmask(int how, const sigset_t *set, sigset_t *old) {
    return mask_call(REAL(pthread_sigmask), how, set, old);
}

NF_EXPORT int sigprocmask(int how, const sigset_t *set, sigset_t *old) {
    return mask_call(REAL(sigprocmask), how, set, old);
}

NF_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    if (sig != SIGTERM) return REAL(sigaction)(sig, act, old);
    if (act != NULL && mine()) atomic_store(&handed_back, true);
    int rc = REAL(sigaction)(sig, act, old);
    if (rc == 0 && old != NULL && is_ours(old)) *old = previous_term;
    return rc;
}

NF_EXPORT sighandler_t signal(int sig, sighandler_t handler) {
    if (sig != SIGTERM) return REAL(signal)(sig, handler);
    if (mine()) atomic_store(&handed_back, true);
    sighandler_t was = REAL(signal)(sig, handler);
    return was == on_term ? previous_term.sa_handler : was;
}

static void before_wait(const sigset_t *set) {
    if (set != NULL && sigismember(set, SIGTERM) == 1 && mine()) hand_back();
}

NF_EXPORT int sigwait(const sigset_t *set, int *sig) {
    before_wait(set);
    return REAL(sigwait)(set, sig);
}

NF_EXPORT int sigwaitinfo(const sigset_t *set, siginfo_t *info) {
    before_wait(set);
    return REAL(sigwaitinfo)(set, info);
}

NF_EXPORT int sigtimedwait(const sigset_t *set, siginfo_t *info, const struct timespec *timeout) {
    before_wait(set);
    return REAL(sigtimedwait)(set, info, timeout);
}

NF_EXPORT int signalfd(int fd, const sigset_t *mask, int flags) {
    before_wait(mask);
    return REAL(signalfd)(fd, mask, flags);
}

/* SIGTERM, delivered where SIG_DFL would have killed the process: have the writer
 * report (in its normal context), wait for it at most 5 s, then die of the signal. */
static void on_term(int sig) {
    int saved = errno;
    if (writer_pid != 0 && writer_pid == getpid()) {
        atomic_store(&term_requested, true);
        if (sem_post(&wake) == 0) {
            struct timespec tick = {0, 1000000}; /* 1 ms; nanosleep is async-signal-safe */
            for (int i = 0; i < 5000 && !atomic_load(&term_done); i++) nanosleep(&tick, NULL);
        }
    }
    REAL(sigaction)(sig, &previous_term, NULL);
    raise(sig); /* to this thread, delivered once this handler returns: same death, same status */
    errno = saved;
}

void nf_flush_track(void) {
    if (real.sigaction == NULL) resolve();
    if (!have_exit_key) have_exit_key = pthread_key_create(&exit_key, blocking_thread_exits) == 0;
    atomic_store(&owner, (int)getpid());
    atomic_store(&tracking, true);
}

bool nf_flush_term_handler_installed(void) {
    struct sigaction current;
    return REAL(sigaction)(SIGTERM, NULL, &current) == 0 && is_ours(&current);
}

int nf_flush_real_sigmask(int how, const sigset_t *set, sigset_t *old) {
    return REAL(pthread_sigmask)(how, set, old);
}

static void start(void) {
    pthread_mutex_lock(&start_lock);
    if (!atomic_load(&running)) {
        atomic_store(&running, true); /* even on failure: try once per process */
        pthread_t t;
        sigset_t all, old;
        sigfillset(&all);
        if (sem_init(&wake, 0, 0) == 0) {
            /* signals go to the program's threads, never to the writer */
            REAL(pthread_sigmask)(SIG_SETMASK, &all, &old);
            int rc = pthread_create(&t, NULL, writer_main, NULL);
            REAL(pthread_sigmask)(SIG_SETMASK, &old, NULL);
            if (rc == 0) {
                pthread_detach(t);
                writer_pid = getpid();
                atomic_store(&wanted, true);
                maybe_install(true);
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
    /* The writer thread is not in the child; its semaphore starts afresh. */
    pthread_mutex_init(&start_lock, NULL);
    writer_pid = 0;
    atomic_store(&term_requested, false);
    atomic_store(&term_done, false);
    atomic_store(&ops, 0);
    atomic_store(&running, false);
    /* The child inherits the dispositions and this thread's mask; the other threads,
     * and their masks, are gone. */
    atomic_store(&wanted, false);
    atomic_store(&owner, (int)getpid());
    atomic_store(&blockers, blocking ? 1 : 0);
}
