/* hooks/python/natten_release.c and the release ranges in hooks/python/natten_targets.c: which
 * NATTEN versions the table knows, and the line said for one it does not. */
#include <stdio.h>
#include <string.h>

#include "nf_unit.h"

#include "../../hooks/python/natten_release.h"

static void classifies_versions(void **state) {
    (void)state;
    assert_int_equal(nf_natten_release("0.14.2.post4"), NF_RELEASE_KNOWN);
    assert_int_equal(nf_natten_release("0.15.1"), NF_RELEASE_KNOWN);
    assert_int_equal(nf_natten_release("0.17.4"), NF_RELEASE_KNOWN);
    assert_int_equal(nf_natten_release("0.21.7"), NF_RELEASE_KNOWN);
    assert_int_equal(nf_natten_release("0.21.99"), NF_RELEASE_KNOWN);
    assert_int_equal(nf_natten_release("0.22.0"), NF_RELEASE_NEWER);
    assert_int_equal(nf_natten_release("0.22.0.dev1"), NF_RELEASE_NEWER);
    assert_int_equal(nf_natten_release("1.0"), NF_RELEASE_NEWER);
    assert_int_equal(nf_natten_release("0.13.0"), NF_RELEASE_OLDER);
    assert_int_equal(nf_natten_release("0.9"), NF_RELEASE_OLDER);
    assert_int_equal(nf_natten_release(""), NF_RELEASE_UNREADABLE);
    assert_int_equal(nf_natten_release("main"), NF_RELEASE_UNREADABLE);
    assert_int_equal(nf_natten_release("0"), NF_RELEASE_UNREADABLE);
    assert_int_equal(nf_natten_release(NULL), NF_RELEASE_UNREADABLE);
}

static void says_what_is_counted(void **state) {
    (void)state;
    char buf[512];
    assert_null(nf_natten_release_line("0.17.4", "na1d", buf, sizeof buf));
    assert_string_equal(nf_natten_release_line("0.22.0", "na1d, na2d", buf, sizeof buf),
                        "NATTEN 0.22.0 is newer than the releases naflops knows (0.14 to 0.21): "
                        "calls of na1d, na2d are counted by the rules of the releases that have "
                        "those names; any other entry point is not counted");
    assert_string_equal(nf_natten_release_line("0.13.0", "", buf, sizeof buf),
                        "NATTEN 0.13.0 is older than the releases naflops knows (0.14 to 0.21): "
                        "none of its entry points has a name naflops counts; its ops are not counted");
    assert_string_equal(nf_natten_release_line("", NULL, buf, sizeof buf),
                        "NATTEN's version could not be read (''); naflops knows 0.14 to 0.21: "
                        "none of its entry points has a name naflops counts; its ops are not counted");
    /* a small buffer truncates, never overflows */
    char small[16];
    nf_natten_release_line("0.22.0", "na1d", small, sizeof small);
    assert_int_equal(strlen(small), sizeof small - 1);
}

/* Every row's range lies inside the known releases, and names a real range. */
static void rows_have_known_ranges(void **state) {
    (void)state;
    for (int i = 0; i < nf_target_count; i++) {
        const nf_target *t = &nf_targets[i];
        assert_true(t->since >= NF_V(NF_NATTEN_OLDEST, 0) && t->since <= NF_V(NF_NATTEN_NEWEST, 99));
        assert_true(t->until == 0 || (t->until >= t->since && t->until <= NF_V(NF_NATTEN_NEWEST, 99)));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(classifies_versions),
        cmocka_unit_test(says_what_is_counted),
        cmocka_unit_test(rows_have_known_ranges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
