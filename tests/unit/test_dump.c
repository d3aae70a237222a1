/* nf_dump_atomic: temporary file + rename, umask, symbolic links, failures.
 * Every test works in a fresh mkdtemp directory and removes it afterwards. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nf_unit.h"

#include "../../src/nf_dump.h"

typedef struct sandbox {
    char dir[64];
    mode_t old_umask;
} sandbox;

static int sandbox_up(void **state) {
    sandbox *s = calloc(1, sizeof *s);
    if (s == NULL) return -1;
    strcpy(s->dir, "/tmp/nf_dump_test_XXXXXX");
    if (mkdtemp(s->dir) == NULL) {
        free(s);
        return -1;
    }
    s->old_umask = umask(022);
    *state = s;
    return 0;
}

static int sandbox_down(void **state) {
    sandbox *s = *state;
    umask(s->old_umask);
    DIR *d = opendir(s->dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            if (unlinkat(dirfd(d), e->d_name, 0) != 0) /* a directory a test left */
                unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR);
        }
        closedir(d);
    }
    int r = rmdir(s->dir);
    free(s);
    return r;
}

static const char *in(const sandbox *s, const char *name, char *buf, size_t len) {
    snprintf(buf, len, "%s/%s", s->dir, name);
    return buf;
}

/* Names in the sandbox, sorted and joined by spaces, e.g. "out.json victim". */
static const char *listing(const sandbox *s, char *buf, size_t len) {
    struct dirent **names;
    int n = scandir(s->dir, &names, NULL, alphasort);
    assert_true(n >= 0);
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0) {
            if (buf[0]) strncat(buf, " ", len - strlen(buf) - 1);
            strncat(buf, name, len - strlen(buf) - 1);
        }
        free(names[i]);
    }
    free(names);
    return buf;
}

static void read_file(const char *path, char *buf, size_t len) {
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void write_text(FILE *f, void *arg) { fputs((const char *)arg, f); }

/* -------------------------------------------------------------------- tests */

static void test_writes_content(void **state) {
    sandbox *s = *state;
    char path[256], text[256], names[256];
    in(s, "out.json", path, sizeof path);
    assert_int_equal(nf_dump_atomic(path, write_text, "{\"schema\": \"naflops/1\"}\n"), 0);
    read_file(path, text, sizeof text);
    assert_string_equal(text, "{\"schema\": \"naflops/1\"}\n");
    /* only the target is left: the temporary file was renamed */
    assert_string_equal(listing(s, names, sizeof names), "out.json");
}

static void test_replaces_existing_file(void **state) {
    sandbox *s = *state;
    char path[256], text[256], names[256];
    in(s, "out.csv", path, sizeof path);
    write_file(path, "an older and longer dump that must disappear entirely\n");
    assert_int_equal(nf_dump_atomic(path, write_text, "new\n"), 0);
    read_file(path, text, sizeof text);
    assert_string_equal(text, "new\n");
    assert_string_equal(listing(s, names, sizeof names), "out.csv");
}

static void test_symlink_is_replaced_not_followed(void **state) {
    sandbox *s = *state;
    char path[256], victim[256], text[256], names[256];
    in(s, "out.json", path, sizeof path);
    in(s, "victim", victim, sizeof victim);
    write_file(victim, "precious\n");
    assert_int_equal(symlink(victim, path), 0);

    assert_int_equal(nf_dump_atomic(path, write_text, "dump\n"), 0);

    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode)); /* the link itself was replaced by a file */
    read_file(path, text, sizeof text);
    assert_string_equal(text, "dump\n");
    read_file(victim, text, sizeof text);
    assert_string_equal(text, "precious\n"); /* the link's target is untouched */
    assert_string_equal(listing(s, names, sizeof names), "out.json victim");
}

static void test_symlink_at_temporary_name(void **state) {
    /* A link planted where the temporary file goes is not written through either. */
    sandbox *s = *state;
    char path[256], tmp[300], victim[256], text[256], names[256];
    in(s, "out.json", path, sizeof path);
    in(s, "victim", victim, sizeof victim);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    write_file(victim, "precious\n");
    assert_int_equal(symlink(victim, tmp), 0);

    assert_int_equal(nf_dump_atomic(path, write_text, "dump\n"), 0);

    read_file(path, text, sizeof text);
    assert_string_equal(text, "dump\n");
    read_file(victim, text, sizeof text);
    assert_string_equal(text, "precious\n");
    assert_string_equal(listing(s, names, sizeof names), "out.json victim");
}

static void test_honors_umask(void **state) {
    sandbox *s = *state;
    char path[256];
    struct stat st;

    umask(077); /* 0666 & ~077 = 0600 */
    in(s, "private.json", path, sizeof path);
    assert_int_equal(nf_dump_atomic(path, write_text, "x"), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);

    umask(022); /* 0666 & ~022 = 0644 */
    in(s, "shared.json", path, sizeof path);
    assert_int_equal(nf_dump_atomic(path, write_text, "x"), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);

    umask(002); /* 0666 & ~002 = 0664 */
    in(s, "team.json", path, sizeof path);
    assert_int_equal(nf_dump_atomic(path, write_text, "x"), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0664);

    umask(027); /* 0666 & ~027 = 0640 */
    in(s, "group.json", path, sizeof path);
    assert_int_equal(nf_dump_atomic(path, write_text, "x"), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
}

static int writer_calls;
static void count_calls(FILE *f, void *arg) {
    (void)f;
    (void)arg;
    writer_calls++;
}

static void test_missing_directory_fails_cleanly(void **state) {
    sandbox *s = *state;
    char path[256], names[256], missing[256];
    in(s, "missing/out.json", path, sizeof path);
    writer_calls = 0;
    errno = 0;
    assert_int_equal(nf_dump_atomic(path, count_calls, NULL), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(writer_calls, 0);
    /* nothing was created: no directory, no temporary file */
    assert_string_equal(listing(s, names, sizeof names), "");
    assert_int_equal(access(in(s, "missing", missing, sizeof missing), F_OK), -1);
}

static void test_target_is_directory_fails_cleanly(void **state) {
    /* rename onto a directory fails: -1 with errno, and the temporary file is removed. */
    sandbox *s = *state;
    char path[256], names[256];
    in(s, "taken", path, sizeof path);
    assert_int_equal(mkdir(path, 0700), 0);
    errno = 0;
    assert_int_equal(nf_dump_atomic(path, write_text, "x"), -1);
    assert_int_equal(errno, EISDIR);
    assert_string_equal(listing(s, names, sizeof names), "taken");
    assert_int_equal(rmdir(path), 0);
}

static void test_path_too_long(void **state) {
    (void)state;
    static char path[5000];
    memset(path, 'a', sizeof path - 1);
    path[sizeof path - 1] = '\0';
    errno = 0;
    assert_int_equal(nf_dump_atomic(path, write_text, "x"), -1);
    assert_int_equal(errno, ENAMETOOLONG);
}

#define T(f) cmocka_unit_test_setup_teardown(f, sandbox_up, sandbox_down)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_writes_content),
        T(test_replaces_existing_file),
        T(test_symlink_is_replaced_not_followed),
        T(test_symlink_at_temporary_name),
        T(test_honors_umask),
        T(test_missing_directory_fails_cleanly),
        T(test_target_is_directory_fails_cleanly),
        T(test_path_too_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
