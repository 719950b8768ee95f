/* Unit tests: supstatus (the supervisor's status reply, the roles grade). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "remex/supstatus.h"

static const char *const GOOD =
    "{\"ok\":true,\"agent\":{\"pid\":10,\"state\":\"running\",\"ready\":true,\"uptime_s\":12.5},"
    "\"roles\":[{\"role\":\"worker\",\"instance\":\"worker-gpu\",\"pid\":123,\"state\":\"up\","
    "\"ready\":true,\"uptime_s\":10,\"restarts\":2,\"last_exit\":\"signal 9\","
    "\"queues\":[\"gpu\",\"default\"],\"slots\":8,\"free_slots\":3},"
    "{\"role\":\"triggerer\",\"pid\":null,\"state\":\"backoff\",\"ready\":false,"
    "\"uptime_s\":0,\"restarts\":1,\"last_exit\":\"exit 1\",\"extra\":{\"ignored\":1}}]}";

static remex_err parse_text(const char *text, struct supstatus *st, struct remex_error *e)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    assert_non_null(j);
    remex_err rc = supstatus_parse(j, st, e);
    json_decref(j);
    return rc;
}

static void test_parse_good(void **state)
{
    (void)state;
    static struct supstatus st;
    struct remex_error e;
    assert_int_equal(parse_text(GOOD, &st, &e), REMEX_OK);
    assert_int_equal(st.pid, 10);
    assert_string_equal(st.state, "running");
    assert_int_equal(st.ready, 1);
    assert_int_equal(st.nroles, 2);
    const struct supstatus_role *w = &st.roles[0], *t = &st.roles[1];
    assert_string_equal(w->role, "worker");
    assert_string_equal(w->instance, "worker-gpu");
    assert_int_equal(w->pid, 123);
    assert_int_equal(w->state, SUPSTATUS_UP);
    assert_int_equal(w->restarts, 2);
    assert_string_equal(w->last_exit, "signal 9");
    assert_int_equal(w->nqueues, 2);
    assert_string_equal(w->queues[1], "default");
    assert_int_equal(w->slots, 8);
    assert_int_equal(w->free_slots, 3);
    assert_string_equal(t->instance, "triggerer"); /* defaults to the role */
    assert_int_equal(t->pid, 0);
    assert_int_equal(t->state, SUPSTATUS_BACKOFF);
    assert_int_equal(t->slots, -1); /* not carried */
    assert_string_equal(supstatus_state_name(SUPSTATUS_FATAL), "fatal");
}

static void test_parse_refusals(void **state)
{
    (void)state;
    static struct supstatus st;
    struct remex_error e;
    static const struct {
        const char *text, *needle;
    } bad[] = {
        {"{\"ok\":false,\"error\":\"denied\\nnow\"}", "the supervisor refused: denied now"},
        {"{\"ok\":1}", "ok: expected a boolean"},
        {"{\"ok\":true,\"roles\":[]}", "agent: expected an object"},
        {"{\"ok\":true,\"agent\":{\"pid\":1,\"state\":\"running\"},\"roles\":{}}", "roles:"},
        {"{\"ok\":true,\"agent\":{\"pid\":-1,\"state\":\"running\"},\"roles\":[]}", "agent.pid"},
        {"{\"ok\":true,\"agent\":{\"pid\":1,\"state\":\"running\"},\"roles\":[{\"role\":\"w\","
         "\"state\":\"zombie\"}]}",
         "roles[0].state: unknown role state"},
        {"{\"ok\":true,\"agent\":{\"pid\":1,\"state\":\"running\"},\"roles\":[{\"state\":\"up\"}]}",
         "roles[0].role: missing"},
        {"{\"ok\":true,\"agent\":{\"pid\":1,\"state\":\"running\"},\"roles\":[{\"role\":\"w\","
         "\"state\":\"up\",\"ready\":\"yes\"}]}",
         "roles[0].ready: expected a boolean"},
        {"{\"ok\":true,\"agent\":{\"pid\":1,\"state\":\"running\"},\"roles\":[{\"role\":\"w\","
         "\"state\":\"up\",\"uptime_s\":-1}]}",
         "roles[0].uptime_s"},
        {"{\"ok\":true,\"agent\":{\"pid\":1,\"state\":\"running\"},\"roles\":[{\"role\":\"w\","
         "\"state\":\"up\",\"slots\":2,\"free_slots\":3}]}",
         "roles[0].free_slots: more than slots"},
        {"{\"ok\":true,\"agent\":{\"pid\":1,\"state\":\"running\"},\"roles\":[{\"role\":\""
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
         "\"state\":\"up\"}]}",
         "roles[0].role: expected a string of at most 63 bytes"},
        {"{\"ok\":true,\"agent\":{\"pid\":1,\"state\":\"running\"},\"roles\":[{\"role\":\"w\","
         "\"state\":\"up\",\"queues\":[\"\"]}]}",
         "roles[0].queues[0]"},
        {"{\"ok\":true,\"agent\":{\"pid\":1,\"state\":\"running\"},\"roles\":[7]}",
         "roles[0]: expected an object"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&e, 0, sizeof(e));
        assert_int_equal(parse_text(bad[i].text, &st, &e), REMEX_EPROTO);
        if (!strstr(e.msg, bad[i].needle))
            fail_msg("case %zu: '%s' lacks '%s'", i, e.msg, bad[i].needle);
        assert_int_equal(st.nroles, 0); /* zeroed on error */
    }
    /* more roles than the cap */
    json_t *j = json_pack("{s:b,s:{s:i,s:s},s:[]}", "ok", 1, "agent", "pid", 1, "state", "running",
                          "roles");
    for (int i = 0; i <= SUPSTATUS_ROLES_MAX; i++)
        json_array_append_new(json_object_get(j, "roles"),
                              json_pack("{s:s,s:s}", "role", "w", "state", "up"));
    assert_int_equal(supstatus_parse(j, &st, &e), REMEX_EPROTO);
    json_decref(j);
}

static void test_grade(void **state)
{
    (void)state;
    static struct supstatus st;
    struct remex_error e;
    char m[256];
    assert_int_equal(parse_text(GOOD, &st, &e), REMEX_OK);
    assert_int_equal(supstatus_grade(&st, m, sizeof(m)), 1);
    assert_string_equal(m, "triggerer backoff, last exit 1");
    st.roles[1].state = SUPSTATUS_FATAL;
    st.roles[0].ready = 0;
    assert_int_equal(supstatus_grade(&st, m, sizeof(m)), 2);
    /* the fatal one is named first */
    assert_string_equal(m, "triggerer fatal, last exit 1; worker-gpu up, last signal 9");
    st.roles[1].state = SUPSTATUS_UP;
    st.roles[1].ready = 1;
    st.roles[0].ready = 1;
    assert_int_equal(supstatus_grade(&st, m, sizeof(m)), 0);
    assert_string_equal(m, "2 of 2 roles up and ready");
    char tiny[8];
    st.roles[0].state = SUPSTATUS_FATAL;
    assert_int_equal(supstatus_grade(&st, tiny, sizeof(tiny)), 2); /* truncated, not overrun */
    assert_int_equal(strlen(tiny), 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_refusals),
        cmocka_unit_test(test_grade),
    };
    return cmocka_run_group_tests_name("supstatus", tests, NULL, NULL);
}
