/* The SIGTERM handler of nf_flush.c exists only while it cannot change what SIGTERM
 * does: never while a thread blocks it, never again once the program waited for it
 * synchronously or set a disposition of its own; and queries see SIG_DFL, never it.
 * Each case runs in a child of its own (what the program did stays done). */
#include "nf_unit.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../src/nf_flush.h"

/* Runs fn in a child that counts one op first (the writer and the handler start);
 * returns the child's wait status. (valgrind says the writer thread's stack is
 * "possibly lost" in each child: it still waits when the child exits.) */
static int in_child(int (*fn)(void)) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        nf_flush_track();
        nf_flush_counted();
        _exit(fn());
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

#define CHECK(cond)                                                     \
    do {                                                                \
        if (!(cond)) {                                                  \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond);  \
            return 1;                                                   \
        }                                                               \
    } while (0)

static sigset_t term_set(void) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGTERM);
    return s;
}

static int installed_but_reads_as_default(void) {
    CHECK(nf_flush_term_handler_installed());
    struct sigaction old;
    CHECK(sigaction(SIGTERM, NULL, &old) == 0);
    CHECK(old.sa_handler == SIG_DFL && !(old.sa_flags & SA_SIGINFO));
    return 0;
}

static int gone_while_blocked(void) {
    sigset_t s = term_set(), old;
    CHECK(pthread_sigmask(SIG_BLOCK, &s, &old) == 0);
    CHECK(!nf_flush_term_handler_installed());
    CHECK(sigprocmask(SIG_SETMASK, &old, NULL) == 0); /* unblocked again: back */
    CHECK(nf_flush_term_handler_installed());
    return 0;
}

static void *block_and_exit(void *arg) {
    (void)arg;
    sigset_t s = term_set();
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    return nf_flush_term_handler_installed() ? (void *)1 : NULL;
}

static int back_when_blocking_thread_exits(void) {
    pthread_t t;
    void *was = (void *)1;
    CHECK(pthread_create(&t, NULL, block_and_exit, NULL) == 0);
    CHECK(pthread_join(t, &was) == 0);
    CHECK(was == NULL);
    CHECK(nf_flush_term_handler_installed());
    return 0;
}

static int not_installed_where_blocked_at_start(void) {
    /* forked with SIGTERM blocked: the child's first op finds it blocked */
    CHECK(!nf_flush_term_handler_installed());
    return 0;
}

static int handed_back_by_sigtimedwait(void) {
    sigset_t s = term_set();
    struct timespec zero = {0, 0};
    CHECK(sigtimedwait(&s, NULL, &zero) == -1);
    CHECK(!nf_flush_term_handler_installed());
    CHECK(pthread_sigmask(SIG_BLOCK, &s, NULL) == 0);
    CHECK(pthread_sigmask(SIG_UNBLOCK, &s, NULL) == 0);
    CHECK(!nf_flush_term_handler_installed()); /* for good */
    return 0;
}

static int handed_back_by_signalfd(void) {
    sigset_t s = term_set();
    int fd = signalfd(-1, &s, SFD_CLOEXEC);
    CHECK(fd >= 0);
    close(fd);
    CHECK(!nf_flush_term_handler_installed());
    return 0;
}

static int sig_ign_stays(void) {
    struct sigaction ign, old;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    CHECK(sigaction(SIGTERM, &ign, &old) == 0);
    CHECK(old.sa_handler == SIG_DFL);
    CHECK(sigaction(SIGTERM, NULL, &old) == 0 && old.sa_handler == SIG_IGN);
    sigset_t s = term_set();
    CHECK(pthread_sigmask(SIG_BLOCK, &s, NULL) == 0);
    CHECK(pthread_sigmask(SIG_UNBLOCK, &s, NULL) == 0);
    CHECK(sigaction(SIGTERM, NULL, &old) == 0 && old.sa_handler == SIG_IGN);
    raise(SIGTERM); /* ignored */
    return 0;
}

static int signal_returns_default(void) {
    CHECK(signal(SIGTERM, SIG_DFL) == SIG_DFL);
    CHECK(!nf_flush_term_handler_installed());
    return 0;
}

static int dies_of_sigterm(void) {
    raise(SIGTERM); /* the counter's handler, then SIG_DFL: the same death */
    return 1;
}

static volatile sig_atomic_t sleeping;

static void *sleeper(void *arg) {
    (void)arg;
    sleeping = 1;
    for (;;) pause();
    return NULL;
}

static int blocked_main_waits_but_dies(void) {
    /* A thread that does not block SIGTERM, a main thread that blocks it and then
     * waits: SIG_DFL kills at once, as without the counter. */
    pthread_t t;
    CHECK(pthread_create(&t, NULL, sleeper, NULL) == 0);
    struct timespec tick = {0, 10000000};
    while (!sleeping) nanosleep(&tick, NULL);
    nanosleep(&tick, NULL); /* in pause() by now */
    sigset_t s = term_set();
    CHECK(pthread_sigmask(SIG_BLOCK, &s, NULL) == 0);
    kill(getpid(), SIGTERM);
    struct timespec second = {1, 0};
    sigtimedwait(&s, NULL, &second);
    return 2; /* survived: taken away from SIG_DFL */
}

static void term_cases(void **state) {
    (void)state;
    int st = in_child(installed_but_reads_as_default);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    st = in_child(gone_while_blocked);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    st = in_child(back_when_blocking_thread_exits);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    st = in_child(handed_back_by_sigtimedwait);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    st = in_child(handed_back_by_signalfd);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    st = in_child(sig_ign_stays);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    st = in_child(signal_returns_default);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    st = in_child(dies_of_sigterm);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);
    st = in_child(blocked_main_waits_but_dies);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);

    sigset_t s = term_set(), old;
    sigprocmask(SIG_BLOCK, &s, &old); /* not tracked here: only the children are */
    st = in_child(not_installed_where_blocked_at_start);
    sigprocmask(SIG_SETMASK, &old, NULL);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void untracked_passes_through(void **state) {
    (void)state;
    /* this process never called nf_flush_track: every call is libc's, unchanged */
    struct sigaction ign, old;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    assert_int_equal(sigaction(SIGTERM, &ign, &old), 0);
    assert_true(old.sa_handler == SIG_DFL);
    assert_true(signal(SIGTERM, SIG_DFL) == SIG_IGN);
    sigset_t s = term_set(), got;
    assert_int_equal(pthread_sigmask(SIG_BLOCK, &s, NULL), 0);
    assert_int_equal(sigprocmask(SIG_BLOCK, NULL, &got), 0);
    assert_true(sigismember(&got, SIGTERM));
    assert_int_equal(pthread_sigmask(SIG_UNBLOCK, &s, NULL), 0);
    assert_false(nf_flush_term_handler_installed());
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(untracked_passes_through),
        cmocka_unit_test(term_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
