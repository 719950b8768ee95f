/* Unit tests: health (checks, overall status, bodies, grading rules). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "remex/health.h"

#define GiB (1024ull * 1024 * 1024)
#define DAY 86400000ll

static void test_set_replace_and_overall(void **state)
{
    (void)state;
    struct health_set h = {0};
    assert_int_equal(health_overall(&h), HEALTH_OK);
    assert_non_null(health_set(&h, "plane", HEALTH_OK, "rtt %d ms", 3));
    assert_non_null(health_set(&h, "disk", HEALTH_WARN, "low"));
    assert_int_equal(health_overall(&h), HEALTH_WARN);
    assert_non_null(health_set(&h, "plane", HEALTH_FAIL, "down"));
    assert_int_equal(h.n, 2);
    assert_string_equal(h.checks[0].name, "plane"); /* replaced in place */
    assert_string_equal(health_get(&h, "plane")->msg, "down");
    assert_int_equal(health_overall(&h), HEALTH_FAIL);
    assert_null(health_get(&h, "nope"));
    char longname[HEALTH_NAME_MAX + 1];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[HEALTH_NAME_MAX] = '\0';
    assert_null(health_set(&h, longname, HEALTH_OK, "x"));
    assert_null(health_set(&h, "", HEALTH_OK, "x"));
    for (int i = 0; i < HEALTH_CHECKS_MAX - 2; i++) {
        char n[8];
        snprintf(n, sizeof(n), "c%d", i);
        assert_non_null(health_set(&h, n, HEALTH_OK, "x"));
    }
    assert_null(health_set(&h, "one_more", HEALTH_OK, "x"));
}

static void test_bodies(void **state)
{
    (void)state;
    struct health_set h = {0};
    health_set(&h, "plane", HEALTH_OK, "fine");
    health_set(&h, "roles", HEALTH_FAIL, "worker fatal");
    health_set(&h, "disk", HEALTH_WARN, "%s", "");
    json_t *all = health_json(&h, 1), *failing = health_json(&h, 0), *rep = health_report_body(&h);
    char *a = json_dumps(all, JSON_COMPACT), *f = json_dumps(failing, JSON_COMPACT),
         *r = json_dumps(rep, JSON_COMPACT);
    assert_string_equal(a, "{\"status\":\"fail\",\"checks\":[{\"name\":\"plane\",\"status\":"
                           "\"ok\",\"message\":\"fine\"},{\"name\":\"roles\",\"status\":"
                           "\"fail\",\"message\":\"worker fatal\"},{\"name\":\"disk\","
                           "\"status\":\"warn\"}]}");
    json_t *c = json_array_get(json_object_get(failing, "checks"), 0);
    assert_int_equal(json_array_size(json_object_get(failing, "checks")), 1); /* no warn */
    assert_string_equal(json_string_value(json_object_get(c, "name")), "roles");
    assert_string_equal(json_string_value(json_object_get(failing, "status")), "fail");
    /* the plane's vocabulary */
    assert_string_equal(json_string_value(json_object_get(rep, "status")), "failing");
    json_t *rc = json_object_get(rep, "checks");
    assert_int_equal(json_array_size(rc), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(rc, 2), "status")),
                        "degraded");
    assert_null(json_object_get(json_array_get(rc, 2), "message")); /* empty: left out */
    assert_non_null(strstr(f, "worker fatal"));
    assert_non_null(strstr(r, "\"failing\""));
    free(a);
    free(f);
    free(r);
    json_decref(all);
    json_decref(failing);
    json_decref(rep);
}

static void test_grade_disk(void **state)
{
    (void)state;
    char m[256];
    assert_int_equal(health_grade_disk(50 * GiB, 100 * GiB, 10, 5, m, sizeof(m)), HEALTH_OK);
    assert_string_equal(m, "50.0 GiB free of 100.0 GiB (50.0%)");
    assert_int_equal(health_grade_disk(9 * GiB, 100 * GiB, 10, 5, m, sizeof(m)), HEALTH_WARN);
    assert_non_null(strstr(m, "warning threshold"));
    assert_int_equal(health_grade_disk(10 * GiB, 100 * GiB, 10, 5, m, sizeof(m)), HEALTH_OK);
    assert_int_equal(health_grade_disk(4 * GiB, 100 * GiB, 10, 5, m, sizeof(m)), HEALTH_FAIL);
    assert_non_null(strstr(m, "failure threshold"));
    assert_int_equal(health_grade_disk(0, 0, 10, 5, m, sizeof(m)), HEALTH_FAIL);
    assert_int_equal(health_grade_disk(200, 100, 10, 5, m, sizeof(m)), HEALTH_OK); /* clamped */
    assert_int_equal(health_grade_disk(0, 100, 0, 0, m, sizeof(m)), HEALTH_OK); /* no threshold */
}

static void test_grade_expiry(void **state)
{
    (void)state;
    char m[256];
    int64_t now = 1800000000000ll;
    assert_int_equal(health_grade_expiry("agent token", 0, now, 7 * DAY, m, sizeof(m)), HEALTH_OK);
    assert_string_equal(m, "agent token expiry not known");
    assert_int_equal(health_grade_expiry("agent token", now + 30 * DAY, now, 7 * DAY, m, sizeof(m)),
                     HEALTH_OK);
    assert_non_null(strstr(m, "in 30d 0h"));
    assert_int_equal(
        health_grade_expiry("agent token", now + 6 * DAY + 3600000, now, 7 * DAY, m, sizeof(m)),
        HEALTH_WARN);
    assert_non_null(strstr(m, "in 6d 1h"));
    assert_int_equal(health_grade_expiry("agent token", now + 7 * DAY, now, 7 * DAY, m, sizeof(m)),
                     HEALTH_WARN);
    assert_int_equal(health_grade_expiry("agent token", now, now, 7 * DAY, m, sizeof(m)),
                     HEALTH_FAIL);
    assert_string_equal(m, "agent token expired at 2027-01-15T08:00:00Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_replace_and_overall),
        cmocka_unit_test(test_bodies),
        cmocka_unit_test(test_grade_disk),
        cmocka_unit_test(test_grade_expiry),
    };
    return cmocka_run_group_tests_name("health", tests, NULL, NULL);
}
