/* test_log: the log record formats. Records are captured from stderr; each JSON record must parse (cJSON)
 * with ts, level, component and msg, and msg must round-trip the message, including quotes, backslashes,
 * newlines, control bytes and UTF-8; bytes that are not UTF-8 become U+FFFD. The text format keeps its
 * "TS LEVEL component: msg" shape. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "tests/testlib.h"

/* Runs the logging in fn with stderr sent to a temporary file; returns what was written (caller frees). */
static char *capture(void (*fn)(void))
{
    fflush(stderr);
    FILE *tmp = tmpfile();
    CHECK(tmp != NULL);
    int saved = dup(2);
    CHECK(saved >= 0 && dup2(fileno(tmp), 2) >= 0);
    fn();
    fflush(stderr);
    CHECK(dup2(saved, 2) >= 0);
    close(saved);
    long n = ftell(tmp);
    char *out = calloc(1, (size_t)(n > 0 ? n : 0) + 1);
    rewind(tmp);
    CHECK(fread(out, 1, (size_t)n, tmp) == (size_t)n);
    fclose(tmp);
    return out;
}

static const char *const messages[] = {
    "plain words",
    "quote \" backslash \\ slash /",
    "two\nlines and a\ttab",
    "control \x01 and \x1f and DEL \x7f",
    "UTF-8: caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80",
};
#define N_MESSAGES (sizeof messages / sizeof *messages)

static void log_all(void)
{
    vs_log_set_component("test \"comp\"");
    for (size_t i = 0; i < N_MESSAGES; i++)
        vs_log(i % 3 == 0 ? VS_LOG_INFO : i % 3 == 1 ? VS_LOG_WARN : VS_LOG_ERROR, "%s", messages[i]);
    vs_log(VS_LOG_INFO, "bad bytes: \xff \xc3( \xed\xa0\x80 end"); /* invalid, truncated, surrogate */
}

static void test_json(void)
{
    vs_log_set_format(VS_LOG_JSON);
    char *out = capture(log_all);
    vs_log_set_format(VS_LOG_TEXT);
    static const char *const levels[] = {"info", "warn", "error"};
    size_t n = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"), n++) {
        cJSON *j = cJSON_Parse(line);
        CHECKF(j != NULL, "not JSON: %s", line);
        if (!j)
            continue;
        const char *ts = cJSON_GetStringValue(cJSON_GetObjectItem(j, "ts"));
        const char *level = cJSON_GetStringValue(cJSON_GetObjectItem(j, "level"));
        const char *comp = cJSON_GetStringValue(cJSON_GetObjectItem(j, "component"));
        const char *msg = cJSON_GetStringValue(cJSON_GetObjectItem(j, "msg"));
        CHECK(ts && strlen(ts) == 24 && ts[10] == 'T' && ts[23] == 'Z');
        CHECK(comp && strcmp(comp, "test \"comp\"") == 0);
        if (n < N_MESSAGES) {
            CHECK(level && strcmp(level, levels[n % 3]) == 0);
            CHECKF(msg && strcmp(msg, messages[n]) == 0, "message %zu came back as '%s'", n, msg ? msg : "");
        } else {
            CHECK(level && strcmp(level, "info") == 0);
            /* each invalid byte is one U+FFFD (EF BF BD); the valid "(" after the truncated C3 stays */
            CHECKF(
                msg &&
                    strcmp(
                        msg,
                        "bad bytes: \xef\xbf\xbd \xef\xbf\xbd( \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd end") ==
                        0,
                "got '%s'", msg ? msg : "");
        }
        cJSON_Delete(j);
    }
    CHECK(n == N_MESSAGES + 1);
    free(out);
}

static void log_one(void)
{
    vs_log_set_component("shard");
    vs_log(VS_LOG_WARN, "disk %d%% full", 93);
}

static void test_text_and_parse(void)
{
    char *out = capture(log_one);
    /* 2026-11-21T10:00:00.123Z WARN shard: disk 93% full */
    CHECKF(strlen(out) == 25 + strlen("WARN shard: disk 93% full\n") &&
               strcmp(out + 25, "WARN shard: disk 93% full\n") == 0 && out[24] == ' ',
           "got '%s'", out);
    free(out);
    vs_log_format f = VS_LOG_TEXT;
    CHECK(vs_log_parse_format("json", &f) == 0 && f == VS_LOG_JSON);
    CHECK(vs_log_parse_format("text", &f) == 0 && f == VS_LOG_TEXT);
    CHECK(vs_log_parse_format("JSON", &f) == -1 && vs_log_parse_format("", &f) == -1 &&
          vs_log_parse_format(NULL, &f) == -1);
}

int main(void)
{
    RUN(test_json);
    RUN(test_text_and_parse);
    return vs_test_finish();
}
