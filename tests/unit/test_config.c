/* nf_config: NAFLOPS_* parsing with a fake environment, complaints, and output
 * pattern expansion. */
#include <stdio.h>
#include <string.h>

#include "nf_unit.h"

#include "../../src/nf_config.h"

/* ------------------------------------------------ fake environment, complaints */

#define MAX_VARS 8
#define MAX_LINES 16

static struct {
    const char *name, *value;
} vars[MAX_VARS];
static int nvars;

static char lines[MAX_LINES][600];
static int nlines;

static const char *fake_getenv(const char *name) {
    for (int i = 0; i < nvars; i++)
        if (strcmp(vars[i].name, name) == 0) return vars[i].value;
    return NULL;
}

static void collect(const char *line) {
    assert_true(nlines < MAX_LINES);
    assert_true(strlen(line) < sizeof lines[0]);
    strcpy(lines[nlines++], line);
}

static void set_var(const char *name, const char *value) {
    assert_true(nvars < MAX_VARS);
    vars[nvars].name = name;
    vars[nvars].value = value;
    nvars++;
}

static int reset_env(void **state) {
    (void)state;
    nvars = 0;
    nlines = 0;
    return 0;
}

/* Parses with only name=value set; returns the config. */
static nf_config parse_one(const char *name, const char *value, int want_bad) {
    nf_config cfg;
    reset_env(NULL);
    set_var(name, value);
    nf_config_defaults(&cfg);
    assert_int_equal(nf_config_parse(&cfg, fake_getenv, collect), want_bad);
    assert_int_equal(nlines, want_bad);
    return cfg;
}

static void assert_is_default(const nf_config *cfg) {
    nf_config d;
    nf_config_defaults(&d);
    assert_memory_equal(cfg, &d, sizeof d);
}

/* One bad value: exactly one complaint, one line, naming the variable, the value and
 * what is allowed; the configuration stays the default. */
static void bad_value(const char *name, const char *value, const char *allowed,
                      const char *fallback) {
    nf_config cfg = parse_one(name, value, 1);
    assert_is_default(&cfg);
    char want[600];
    snprintf(want, sizeof want, "naflops: %s='%s' is not valid (allowed: %s); using %s", name,
             value, allowed, fallback);
    assert_string_equal(lines[0], want);
    assert_null(strchr(lines[0], '\n'));
}

/* -------------------------------------------------------------------- tests */

static void test_defaults(void **state) {
    (void)state;
    nf_config cfg;
    memset(&cfg, 0x5a, sizeof cfg);
    nf_config_defaults(&cfg);
    assert_false(cfg.disabled);
    assert_true(cfg.backward);
    assert_int_equal(cfg.format, NF_FORMAT_JSON);
    assert_int_equal(cfg.summary, NF_SUMMARY_AUTO);
    assert_int_equal(cfg.units, NF_UNITS_SI);
    assert_string_equal(cfg.output, "");

    /* an empty environment, and empty values, keep the defaults without a word */
    nf_config_defaults(&cfg);
    assert_int_equal(nf_config_parse(&cfg, fake_getenv, collect), 0);
    assert_is_default(&cfg);
    const char *names[] = {"NAFLOPS_DISABLE", "NAFLOPS_BACKWARD", "NAFLOPS_FORMAT",
                           "NAFLOPS_SUMMARY", "NAFLOPS_UNITS", "NAFLOPS_OUTPUT",
                           "NAFLOPS_FLUSH_SECONDS", "NAFLOPS_FLUSH_OPS"};
    for (int i = 0; i < 8; i++) set_var(names[i], "");
    assert_int_equal(nf_config_parse(&cfg, fake_getenv, collect), 0);
    assert_is_default(&cfg);
    assert_int_equal(nlines, 0);
}

static void test_bools_good(void **state) {
    (void)state;
    const char *yes[] = {"1", "true", "yes", "on", "TRUE", "Yes", "ON"};
    const char *no[] = {"0", "false", "no", "off", "FALSE", "No", "Off"};
    for (int i = 0; i < 7; i++) {
        assert_true(parse_one("NAFLOPS_DISABLE", yes[i], 0).disabled);
        assert_false(parse_one("NAFLOPS_DISABLE", no[i], 0).disabled);
        assert_true(parse_one("NAFLOPS_BACKWARD", yes[i], 0).backward);
        assert_false(parse_one("NAFLOPS_BACKWARD", no[i], 0).backward);
        assert_true(parse_one("NAFLOPS_MODULES", yes[i], 0).modules);
        assert_false(parse_one("NAFLOPS_MODULES", no[i], 0).modules);
    }
}

static void test_choices_good(void **state) {
    (void)state;
    assert_int_equal(parse_one("NAFLOPS_FORMAT", "json", 0).format, NF_FORMAT_JSON);
    assert_int_equal(parse_one("NAFLOPS_FORMAT", "csv", 0).format, NF_FORMAT_CSV);
    assert_int_equal(parse_one("NAFLOPS_FORMAT", "CSV", 0).format, NF_FORMAT_CSV);
    assert_int_equal(parse_one("NAFLOPS_SUMMARY", "auto", 0).summary, NF_SUMMARY_AUTO);
    assert_int_equal(parse_one("NAFLOPS_SUMMARY", "always", 0).summary, NF_SUMMARY_ALWAYS);
    assert_int_equal(parse_one("NAFLOPS_SUMMARY", "Never", 0).summary, NF_SUMMARY_NEVER);
    assert_int_equal(parse_one("NAFLOPS_UNITS", "si", 0).units, NF_UNITS_SI);
    assert_int_equal(parse_one("NAFLOPS_UNITS", "exact", 0).units, NF_UNITS_EXACT);
    assert_int_equal(parse_one("NAFLOPS_UNITS", "EXACT", 0).units, NF_UNITS_EXACT);
}

static void test_output_good(void **state) {
    (void)state;
    assert_string_equal(parse_one("NAFLOPS_OUTPUT", "/tmp/flops.json", 0).output,
                        "/tmp/flops.json");
    assert_string_equal(parse_one("NAFLOPS_OUTPUT", "/tmp/f-%p-%r-%h-%%.json", 0).output,
                        "/tmp/f-%p-%r-%h-%%.json");
    /* 4095 bytes is the longest that fits (4096 with the NUL) */
    static char longest[NF_PATH_MAX];
    memset(longest, 'a', NF_PATH_MAX - 1);
    longest[NF_PATH_MAX - 1] = '\0';
    assert_string_equal(parse_one("NAFLOPS_OUTPUT", longest, 0).output, longest);
}

static void test_all_together(void **state) {
    (void)state;
    nf_config cfg;
    nf_config_defaults(&cfg);
    set_var("NAFLOPS_DISABLE", "no");
    set_var("NAFLOPS_BACKWARD", "off");
    set_var("NAFLOPS_FORMAT", "csv");
    set_var("NAFLOPS_SUMMARY", "never");
    set_var("NAFLOPS_UNITS", "exact");
    set_var("NAFLOPS_OUTPUT", "out-%r.csv");
    assert_int_equal(nf_config_parse(&cfg, fake_getenv, collect), 0);
    assert_int_equal(nlines, 0);
    assert_false(cfg.disabled);
    assert_false(cfg.backward);
    assert_int_equal(cfg.format, NF_FORMAT_CSV);
    assert_int_equal(cfg.summary, NF_SUMMARY_NEVER);
    assert_int_equal(cfg.units, NF_UNITS_EXACT);
    assert_string_equal(cfg.output, "out-%r.csv");
}

#define BOOLS "1, 0, true, false, yes, no, on, off"

static void test_bad_bools(void **state) {
    (void)state;
    const char *bad[] = {"2", "-1", "maybe", "truee", "y", " 1", "1 ", "enable"};
    for (int i = 0; i < 8; i++) {
        bad_value("NAFLOPS_DISABLE", bad[i], BOOLS, "0");
        bad_value("NAFLOPS_BACKWARD", bad[i], BOOLS, "1");
        bad_value("NAFLOPS_MODULES", bad[i], BOOLS, "1");
    }
}

static void test_bad_format(void **state) {
    (void)state;
    const char *bad[] = {"xml", "jsonl", "js", "csv ", "0"};
    for (int i = 0; i < 5; i++) bad_value("NAFLOPS_FORMAT", bad[i], "json, csv", "json");
}

static void test_bad_summary(void **state) {
    (void)state;
    const char *bad[] = {"sometimes", "1", "yes", "off", "al ways"};
    for (int i = 0; i < 5; i++)
        bad_value("NAFLOPS_SUMMARY", bad[i], "auto, always, never", "auto");
}

static void test_bad_units(void **state) {
    (void)state;
    const char *bad[] = {"exactly", "SI-ish", "flops", "1"};
    for (int i = 0; i < 4; i++) bad_value("NAFLOPS_UNITS", bad[i], "si, exact", "si");
}

static void test_bad_output_escape(void **state) {
    (void)state;
    const char *bad[] = {"/tmp/out-%d.json", "/tmp/out-%", "%P", "%s-%p"};
    for (int i = 0; i < 4; i++)
        bad_value("NAFLOPS_OUTPUT", bad[i], "a path whose only escapes are %p, %r, %h and %%",
                  "no dump");
}

static void test_bad_output_too_long(void **state) {
    (void)state;
    /* 4096 bytes do not fit with the NUL; the complaint quotes the first 200. */
    static char too_long[NF_PATH_MAX + 1];
    memset(too_long, 'b', NF_PATH_MAX);
    too_long[NF_PATH_MAX] = '\0';
    nf_config cfg = parse_one("NAFLOPS_OUTPUT", too_long, 1);
    assert_is_default(&cfg);
    char want[600];
    snprintf(want, sizeof want,
             "naflops: NAFLOPS_OUTPUT='%.200s' is not valid (allowed: a path shorter than 4096 "
             "bytes); using no dump",
             too_long);
    assert_string_equal(lines[0], want);
}

static void test_disabled_says_nothing(void **state) {
    (void)state;
    /* NAFLOPS_DISABLE=1: nothing is hooked, so nothing else is read or complained of. */
    nf_config cfg;
    nf_config_defaults(&cfg);
    set_var("NAFLOPS_DISABLE", "1");
    set_var("NAFLOPS_FORMAT", "yaml");
    set_var("NAFLOPS_OUTPUT", "x%y");
    assert_int_equal(nf_config_parse(&cfg, fake_getenv, collect), 0);
    assert_int_equal(nlines, 0);
    assert_true(cfg.disabled);
}

static void test_output_folder(void **state) {
    (void)state;
    /* A trailing slash names a folder: one line that says a file name is needed. */
    nf_config cfg;
    nf_config_defaults(&cfg);
    set_var("NAFLOPS_OUTPUT", "runs/");
    assert_int_equal(nf_config_parse(&cfg, fake_getenv, collect), 1);
    assert_int_equal(nlines, 1);
    assert_non_null(strstr(lines[0], "NAFLOPS_OUTPUT='runs/' is not valid (allowed: a file path"));
    assert_string_equal(cfg.output, "");
}

static void test_several_bad_values(void **state) {
    (void)state;
    /* Each bad variable is one complaint; the good ones still apply. */
    nf_config cfg;
    nf_config_defaults(&cfg);
    set_var("NAFLOPS_DISABLE", "nope");
    set_var("NAFLOPS_BACKWARD", "0");
    set_var("NAFLOPS_FORMAT", "yaml");
    set_var("NAFLOPS_SUMMARY", "always");
    set_var("NAFLOPS_UNITS", "bits");
    set_var("NAFLOPS_OUTPUT", "x%y");
    assert_int_equal(nf_config_parse(&cfg, fake_getenv, collect), 4);
    assert_int_equal(nlines, 4);
    assert_non_null(strstr(lines[0], "NAFLOPS_DISABLE='nope'"));
    assert_non_null(strstr(lines[1], "NAFLOPS_FORMAT='yaml'"));
    assert_non_null(strstr(lines[2], "NAFLOPS_UNITS='bits'"));
    assert_non_null(strstr(lines[3], "NAFLOPS_OUTPUT='x%y'"));
    assert_false(cfg.disabled);
    assert_false(cfg.backward);
    assert_int_equal(cfg.format, NF_FORMAT_JSON);
    assert_int_equal(cfg.summary, NF_SUMMARY_ALWAYS);
    assert_int_equal(cfg.units, NF_UNITS_SI);
    assert_string_equal(cfg.output, "");
}

static void test_no_complain_callback(void **state) {
    (void)state;
    /* A NULL callback is allowed: the value is still rejected and counted. */
    nf_config cfg;
    nf_config_defaults(&cfg);
    set_var("NAFLOPS_FORMAT", "xml");
    assert_int_equal(nf_config_parse(&cfg, fake_getenv, NULL), 1);
    assert_is_default(&cfg);
}

/* ------------------------------------------------------------ path patterns */

static void test_expand_path(void **state) {
    (void)state;
    char out[128];
    assert_int_equal(
        nf_config_expand_path("/tmp/f-%p-%r-%h-%%.json", 4242, "3", "node7", out, sizeof out), 0);
    assert_string_equal(out, "/tmp/f-4242-3-node7-%.json");
    assert_int_equal(nf_config_expand_path("%r/%r", 1, "norank", "h", out, sizeof out), 0);
    assert_string_equal(out, "norank/norank");
    assert_int_equal(nf_config_expand_path("plain", 1, "0", "h", out, sizeof out), 0);
    assert_string_equal(out, "plain");
    assert_int_equal(nf_config_expand_path("", 1, "0", "h", out, sizeof out), 0);
    assert_string_equal(out, "");
    assert_int_equal(nf_config_expand_path("%%%p%%", 7, "0", "h", out, sizeof out), 0);
    assert_string_equal(out, "%7%");
}

static void test_expand_path_overflow(void **state) {
    (void)state;
    char out[16];
    /* "%p" with pid 12345 is 5 characters: fits in 6 bytes, not in 5. */
    assert_int_equal(nf_config_expand_path("%p", 12345, "0", "h", out, 6), 0);
    assert_string_equal(out, "12345");
    assert_int_equal(nf_config_expand_path("%p", 12345, "0", "h", out, 5), -1);
    /* "abc" needs 4 bytes */
    assert_int_equal(nf_config_expand_path("abc", 1, "0", "h", out, 4), 0);
    assert_int_equal(nf_config_expand_path("abc", 1, "0", "h", out, 3), -1);
    /* the host makes it too long: "out-" + 20-character host = 24 > 15 */
    assert_int_equal(
        nf_config_expand_path("out-%h", 1, "0", "a-very-long-hostname", out, sizeof out), -1);
    assert_int_equal(nf_config_expand_path("", 1, "0", "h", out, 0), -1);
    /* a pattern longer than NF_PATH_MAX after expansion */
    static char pattern[NF_PATH_MAX];
    static char path[NF_PATH_MAX];
    memset(pattern, 'c', NF_PATH_MAX - 3);
    strcpy(pattern + NF_PATH_MAX - 3, "%h"); /* 4093 + 5 ("node7") = 4098 >= 4096 */
    assert_int_equal(nf_config_expand_path(pattern, 1, "0", "node7", path, sizeof path), -1);
}

static void test_expand_path_bad_escape(void **state) {
    (void)state;
    char out[64];
    assert_int_equal(nf_config_expand_path("a%d", 1, "0", "h", out, sizeof out), -1);
    assert_int_equal(nf_config_expand_path("trailing%", 1, "0", "h", out, sizeof out), -1);
    assert_true(nf_config_pattern_ok("/a/%p%r%h%%"));
    assert_true(nf_config_pattern_ok(""));
    assert_false(nf_config_pattern_ok("%"));
    assert_false(nf_config_pattern_ok("a%d"));
    assert_false(nf_config_pattern_ok("%%%"));
}

static void test_flush_counts_good(void **state) {
    (void)state;
    assert_int_equal(parse_one("NAFLOPS_FLUSH_SECONDS", "0", 0).flush_seconds, 0);
    assert_int_equal(parse_one("NAFLOPS_FLUSH_SECONDS", "30", 0).flush_seconds, 30);
    assert_int_equal(parse_one("NAFLOPS_FLUSH_OPS", "1", 0).flush_ops, 1);
    assert_int_equal(parse_one("NAFLOPS_FLUSH_OPS", "100000000", 0).flush_ops, 100000000);
}

static void test_bad_flush_counts(void **state) {
    (void)state;
    const char *bad[] = {"-1", "1.5", "ten", "100000001", "99999999999999999999999", "5s", " 5"};
    const char *allowed = "a whole number from 0 (off) to 100000000";
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bad_value("NAFLOPS_FLUSH_SECONDS", bad[i], allowed, "0");
        bad_value("NAFLOPS_FLUSH_OPS", bad[i], allowed, "0");
    }
}

static void test_step_good(void **state) {
    (void)state;
    assert_int_equal(parse_one("NAFLOPS_STEP", "optimizer", 0).step, NF_STEP_OPTIMIZER);
    assert_int_equal(parse_one("NAFLOPS_STEP", "OFF", 0).step, NF_STEP_OFF);
    assert_int_equal(parse_one("NAFLOPS_STEP", "backward", 0).step, NF_STEP_BACKWARD);
    nf_config c = parse_one("NAFLOPS_STEP", "k_diffusion.sampling:sample_euler", 0);
    assert_int_equal(c.step, NF_STEP_FUNCTION);
    assert_string_equal(c.step_module, "k_diffusion.sampling");
    assert_string_equal(c.step_qualname, "sample_euler");
    c = parse_one("NAFLOPS_STEP", "pkg.mod:Sampler.sample2", 0);
    assert_string_equal(c.step_module, "pkg.mod");
    assert_string_equal(c.step_qualname, "Sampler.sample2");
}

static void test_bad_step(void **state) {
    (void)state;
    const char *bad[] = {"sample", "m:", ":f", "m::f", "m:f.", ".m:f", "m:1f", "m f:g", "__main__:sample",
                         "m:f:g", "optimiser"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        bad_value("NAFLOPS_STEP", bad[i],
                  "optimizer, backward, off, or an importable function as module:qualname, e.g. "
                  "k_diffusion.sampling:sample_euler (not __main__)",
                  "optimizer");
}

static void test_peak(void **state) {
    (void)state;
    assert_true(parse_one("NAFLOPS_PEAK", "989T", 0).peak == 989e12);
    assert_true(parse_one("NAFLOPS_PEAK", "9.89e14", 0).peak == 9.89e14);
    assert_true(parse_one("NAFLOPS_PEAK", "1.5k", 0).peak == 1500.0);
    assert_true(parse_one("NAFLOPS_PEAK", "2P", 0).peak == 2e15);
    assert_true(parse_one("NAFLOPS_PEAK", "", 0).peak == 0);
    const char *bad[] = {"0", "-5", "fast", "1e30", "989TF", "nan", "inf", "T", " 1", "1 "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        bad_value("NAFLOPS_PEAK", bad[i],
                  "the device's peak in FLOP/s, a positive number with an optional k, M, G, T, P or E "
                  "(989T, 9.89e14)",
                  "the GPU table's peak, none on a CPU");
}

static void test_bad_value_with_newline_stays_one_line(void **state) {
    (void)state;
    nf_config cfg = parse_one("NAFLOPS_FORMAT", "js\non\t", 1);
    assert_is_default(&cfg);
    assert_string_equal(lines[0],
                        "naflops: NAFLOPS_FORMAT='js?on?' is not valid (allowed: json, csv); using json");
}

/* NAFLOPS_GPU and NAFLOPS_CROSSCHECK (both default off): booleans like the others, one
 * complaint line for a bad value, the default kept; the cross-check turns the GPU side
 * on unless NAFLOPS_GPU says otherwise. */
static void test_gpu_switches(void **state) {
    (void)state;
    nf_config d;
    nf_config_defaults(&d);
    assert_false(d.gpu);
    assert_false(d.crosscheck);
    nf_config x = parse_one("NAFLOPS_CROSSCHECK", "1", 0);
    assert_true(x.crosscheck && x.gpu);
    assert_false(parse_one("NAFLOPS_GPU", "off", 0).gpu);
    assert_false(parse_one("NAFLOPS_GPU", "0", 0).gpu);
    assert_true(parse_one("NAFLOPS_GPU", "on", 0).gpu);
    assert_true(parse_one("NAFLOPS_CROSSCHECK", "on", 0).crosscheck);
    assert_true(parse_one("NAFLOPS_CROSSCHECK", "YES", 0).crosscheck);
    assert_false(parse_one("NAFLOPS_CROSSCHECK", "off", 0).crosscheck);
    bad_value("NAFLOPS_GPU", "cuda", BOOLS, "0");
    bad_value("NAFLOPS_CROSSCHECK", "always", BOOLS, "0");
    /* both together, with another variable: independent */
    nf_config cfg;
    reset_env(NULL);
    set_var("NAFLOPS_GPU", "off");
    set_var("NAFLOPS_CROSSCHECK", "on");
    set_var("NAFLOPS_UNITS", "exact");
    nf_config_defaults(&cfg);
    assert_int_equal(nf_config_parse(&cfg, fake_getenv, collect), 0);
    assert_false(cfg.gpu);
    assert_true(cfg.crosscheck);
    assert_int_equal(cfg.units, NF_UNITS_EXACT);
}

#define T(f) cmocka_unit_test_setup(f, reset_env)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_defaults),
        T(test_bools_good),
        T(test_choices_good),
        T(test_output_good),
        T(test_all_together),
        T(test_bad_bools),
        T(test_bad_format),
        T(test_bad_summary),
        T(test_bad_units),
        T(test_bad_output_escape),
        T(test_bad_output_too_long),
        T(test_several_bad_values),
        T(test_disabled_says_nothing),
        T(test_output_folder),
        T(test_no_complain_callback),
        T(test_expand_path),
        T(test_expand_path_overflow),
        T(test_expand_path_bad_escape),
        T(test_flush_counts_good),
        T(test_bad_flush_counts),
        T(test_step_good),
        T(test_bad_step),
        T(test_peak),
        T(test_bad_value_with_newline_stays_one_line),
        T(test_gpu_switches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
