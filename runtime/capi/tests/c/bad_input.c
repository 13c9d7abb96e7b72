/*
 * Bad input at the C boundary of libedgebert_capi: every call must answer with a status and a
 * message, never crash. Built with `cc` against the static library and run by tests/c_api.rs.
 *
 * usage: bad_input MODEL_DIR SCRATCH_DIR
 *   MODEL_DIR    a working model (the tiny BERT export of runtime/tests/fixtures/tiny-bert)
 *   SCRATCH_DIR  an empty writable directory for corrupt model files
 *
 * Prints one line per failed check and a closing "N passed, M failed"; exits 1 on any failure.
 */
#include "edgebert.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            passed++;                                                                              \
        } else {                                                                                   \
            failed++;                                                                              \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
        }                                                                                          \
    } while (0)

/* `status` is `want` and the message for `handle` (NULL: this thread's) is not empty. */
#define EXPECT(want, call, handle)                                                                 \
    do {                                                                                           \
        EdgebertStatus got_ = (call);                                                              \
        CHECK(got_ == (want), "%s returned %s, expected %s (%s)", #call,                           \
              edgebert_status_name(got_), edgebert_status_name(want),                              \
              edgebert_last_error_message(handle));                                                \
        if ((want) != EDGEBERT_OK) {                                                               \
            const char *msg_ = edgebert_last_error_message(handle);                                \
            CHECK(msg_ != NULL && msg_[0] != '\0', "%s: empty error message", #call);              \
        }                                                                                          \
    } while (0)

static void write_file(const char *path, const void *bytes, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(2);
    }
    fwrite(bytes, 1, len, f);
    fclose(f);
}

static void check_open_failures(const char *scratch) {
    EdgebertHandle *h = (EdgebertHandle *)0x1;
    char path[4096];

    EXPECT(EDGEBERT_ERR_NULL_ARGUMENT, edgebert_open(NULL, NULL, &h), NULL);
    CHECK(h == NULL, "a failed open must set *handle to NULL");
    EXPECT(EDGEBERT_ERR_NULL_ARGUMENT, edgebert_open("x", NULL, NULL), NULL);

    snprintf(path, sizeof path, "%s/missing.edgebert", scratch);
    EXPECT(EDGEBERT_ERR_IO, edgebert_open(path, NULL, &h), NULL);
    CHECK(strstr(edgebert_last_error_message(NULL), "missing.edgebert") != NULL,
          "the message names the file: %s", edgebert_last_error_message(NULL));

    /* Random bytes, a bundle magic followed by garbage, an empty file, a directory without a model. */
    snprintf(path, sizeof path, "%s/garbage.edgebert", scratch);
    unsigned char garbage[4096];
    for (size_t i = 0; i < sizeof garbage; i++) garbage[i] = (unsigned char)(i * 131u + 7u);
    write_file(path, garbage, sizeof garbage);
    EXPECT(EDGEBERT_ERR_MODEL, edgebert_open(path, NULL, &h), NULL);

    snprintf(path, sizeof path, "%s/magic.edgebert", scratch);
    memcpy(garbage, "EDGEBERT", 8);
    write_file(path, garbage, sizeof garbage);
    EXPECT(EDGEBERT_ERR_MODEL, edgebert_open(path, NULL, &h), NULL);

    snprintf(path, sizeof path, "%s/empty.edgebert", scratch);
    write_file(path, "", 0);
    EXPECT(EDGEBERT_ERR_MODEL, edgebert_open(path, NULL, &h), NULL);

    CHECK(edgebert_open(scratch, NULL, &h) != EDGEBERT_OK, "a directory without a model must fail");
    CHECK(h == NULL, "a failed open must set *handle to NULL");
}

static void check_options(const char *model) {
    EdgebertHandle *h = NULL;
    EdgebertOptions o;
    EXPECT(EDGEBERT_ERR_NULL_ARGUMENT, edgebert_options_default(NULL), NULL);
    EXPECT(EDGEBERT_OK, edgebert_options_default(&o), NULL);
    CHECK(o.struct_size == sizeof o && o.max_len == 0 && o.threads == 0 &&
              o.int8_mode == EDGEBERT_INT8_AUTO && o.eager == 0,
          "defaults");

    EdgebertOptions bad = o;
    bad.struct_size = 0;
    EXPECT(EDGEBERT_ERR_INVALID_ARGUMENT, edgebert_open(model, &bad, &h), NULL);
    bad = o;
    bad.max_len = 1;
    EXPECT(EDGEBERT_ERR_INVALID_ARGUMENT, edgebert_open(model, &bad, &h), NULL);
    bad = o;
    bad.int8_mode = 9;
    EXPECT(EDGEBERT_ERR_INVALID_ARGUMENT, edgebert_open(model, &bad, &h), NULL);
    bad = o;
    bad.int8_mode = -1;
    EXPECT(EDGEBERT_ERR_INVALID_ARGUMENT, edgebert_open(model, &bad, &h), NULL);
    bad = o;
    bad.threads = 1000000;
    EXPECT(EDGEBERT_ERR_INVALID_ARGUMENT, edgebert_open(model, &bad, &h), NULL);
    CHECK(h == NULL, "no handle on failure");

    /* A valid non-default set: eager plans, max_len 8 (texts truncated to 8 tokens). */
    EdgebertOptions good = o;
    good.eager = 1;
    good.max_len = 8;
    EXPECT(EDGEBERT_OK, edgebert_open(model, &good, &h), NULL);
    size_t max_len = 0;
    EXPECT(EDGEBERT_OK, edgebert_max_len(h, &max_len), h);
    CHECK(max_len == 8, "max_len %zu", max_len);
    EdgebertResult r;
    const char *text = "one two three four five six seven eight nine ten";
    EXPECT(EDGEBERT_OK, edgebert_classify(h, text, strlen(text), &r, NULL, 0), h);
    CHECK(r.tokens == 8 && r.truncated, "tokens %zu truncated %d", r.tokens, (int)r.truncated);
    EXPECT(EDGEBERT_OK, edgebert_close(h), NULL);
}

static void check_labels(EdgebertHandle *h) {
    size_t count = 0, len = 0;
    char name[64];
    EXPECT(EDGEBERT_ERR_NULL_ARGUMENT, edgebert_label_count(h, NULL), h);
    EXPECT(EDGEBERT_OK, edgebert_label_count(h, &count), h);
    CHECK(count == 3, "label count %zu", count);

    EXPECT(EDGEBERT_ERR_NULL_ARGUMENT, edgebert_label_name(h, 0, name, sizeof name, NULL), h);
    EXPECT(EDGEBERT_ERR_BUFFER_TOO_SMALL, edgebert_label_name(h, 0, NULL, 0, &len), h);
    CHECK(len == strlen("negative"), "needed length %zu", len);
    memset(name, 'x', sizeof name);
    EXPECT(EDGEBERT_ERR_BUFFER_TOO_SMALL, edgebert_label_name(h, 0, name, len, &len), h);
    CHECK(name[0] == 'x', "nothing copied into a too-small buffer");
    EXPECT(EDGEBERT_ERR_NULL_ARGUMENT, edgebert_label_name(h, 0, NULL, 100, &len), h);
    EXPECT(EDGEBERT_OK, edgebert_label_name(h, 0, name, len + 1, &len), h);
    CHECK(strcmp(name, "negative") == 0, "label 0 is %s", name);
    EXPECT(EDGEBERT_OK, edgebert_label_name(h, 2, name, sizeof name, &len), h);
    CHECK(strcmp(name, "positive") == 0 && len == 8, "label 2 is %s (%zu)", name, len);
    EXPECT(EDGEBERT_ERR_INVALID_ARGUMENT, edgebert_label_name(h, 3, name, sizeof name, &len), h);
    EXPECT(EDGEBERT_ERR_INVALID_ARGUMENT, edgebert_label_name(h, (size_t)-1, name, sizeof name, &len), h);
}

static void check_classify(EdgebertHandle *h) {
    EdgebertResult r;
    float probs[8];
    const char *text = "i feel happy today";
    size_t n = strlen(text);

    EXPECT(EDGEBERT_ERR_NULL_ARGUMENT, edgebert_classify(h, NULL, 3, &r, probs, 8), h);
    EXPECT(EDGEBERT_ERR_NULL_ARGUMENT, edgebert_classify(h, text, n, NULL, probs, 8), h);
    EXPECT(EDGEBERT_ERR_NULL_ARGUMENT, edgebert_classify(h, text, n, &r, NULL, 8), h);

    /* Invalid UTF-8: a stray continuation byte, a cut multi-byte sequence, an overlong NUL, a surrogate. */
    const char *bad[] = {"abc\x80", "caf\xc3", "\xc0\x80", "\xed\xa0\x80", "\xff\xfe"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT(EDGEBERT_ERR_INVALID_UTF8, edgebert_classify(h, bad[i], strlen(bad[i]), &r, probs, 8), h);
    /* Also a valid prefix cut in the middle of a character by the length. */
    EXPECT(EDGEBERT_ERR_INVALID_UTF8, edgebert_classify(h, "caf\xc3\xa9", 4, &r, probs, 8), h);

    /* Length mismatches: a length past the string's NUL, a length no buffer can have. */
    char padded[32] = "i feel happy";
    EXPECT(EDGEBERT_ERR_INVALID_ARGUMENT, edgebert_classify(h, padded, sizeof padded, &r, probs, 8), h);
    CHECK(strstr(edgebert_last_error_message(h), "offset 12") != NULL, "message: %s",
          edgebert_last_error_message(h));
    EXPECT(EDGEBERT_ERR_INVALID_ARGUMENT, edgebert_classify(h, text, (size_t)-1, &r, probs, 8), h);

    /* A probability buffer below the label count: the needed size comes back. */
    r.label_count = 0;
    EXPECT(EDGEBERT_ERR_BUFFER_TOO_SMALL, edgebert_classify(h, text, n, &r, probs, 2), h);
    CHECK(r.label_count == 3, "needed %zu", r.label_count);

    /* The handle still works after every failure above. */
    memset(probs, 0, sizeof probs);
    EXPECT(EDGEBERT_OK, edgebert_classify(h, text, n, &r, probs, 3), h);
    CHECK(r.label_id < 3 && r.label_count == 3 && r.tokens == 6 && !r.truncated,
          "label %zu count %zu tokens %zu", r.label_id, r.label_count, r.tokens);
    float sum = probs[0] + probs[1] + probs[2];
    CHECK(fabsf(sum - 1.0f) < 1e-5f, "probabilities sum to %g", sum);
    CHECK(r.score == probs[r.label_id], "score %g is probs[label_id] %g", r.score, probs[r.label_id]);
    for (int i = 0; i < 3; i++) CHECK(probs[i] <= r.score, "argmax");

    /* Logits of that call. */
    float logits[3];
    size_t written = 0;
    EXPECT(EDGEBERT_ERR_BUFFER_TOO_SMALL, edgebert_last_logits(h, logits, 1, &written), h);
    CHECK(written == 3, "logits needed %zu", written);
    EXPECT(EDGEBERT_ERR_NULL_ARGUMENT, edgebert_last_logits(h, logits, 3, NULL), h);
    EXPECT(EDGEBERT_OK, edgebert_last_logits(h, logits, 3, &written), h);
    double z = exp(logits[0]) + exp(logits[1]) + exp(logits[2]);
    CHECK(fabs(exp(logits[r.label_id]) / z - r.score) < 1e-5, "softmax(logits) = probs");

    /* No probabilities wanted. */
    EdgebertResult r2;
    EXPECT(EDGEBERT_OK, edgebert_classify(h, text, n, &r2, NULL, 0), h);
    CHECK(r2.label_id == r.label_id && r2.score == r.score, "same result without probs");

    /* Empty text (with a non-NULL pointer), whitespace, a text far past max_len, non-ASCII. */
    EXPECT(EDGEBERT_OK, edgebert_classify(h, "", 0, &r, probs, 3), h);
    CHECK(r.tokens == 2 && !r.truncated, "empty text: %zu tokens", r.tokens);
    EXPECT(EDGEBERT_OK, edgebert_classify(h, "   \t ", 5, &r, probs, 3), h);
    CHECK(r.tokens == 2, "whitespace: %zu tokens", r.tokens);
    size_t big = 1 << 20;
    char *long_text = malloc(big);
    for (size_t i = 0; i < big; i++) long_text[i] = (i % 6 == 5) ? ' ' : "happy"[i % 6];
    EXPECT(EDGEBERT_OK, edgebert_classify(h, long_text, big, &r, probs, 3), h);
    CHECK(r.tokens == 64 && r.truncated, "long text: %zu tokens, truncated %d", r.tokens, (int)r.truncated);
    free(long_text);
    const char *utf8 = "Caf\xc3\xa9 \xc3\xbc" "ber \xe4\xb8\xad\xe6\x96\x87 na\xc3\xafve";
    EXPECT(EDGEBERT_OK, edgebert_classify(h, utf8, strlen(utf8), &r, probs, 3), h);
}

static void check_tokenize(EdgebertHandle *h) {
    int64_t ids[64];
    size_t n = 0;
    bool truncated = true;
    const char *text = "i feel happy today";
    size_t len = strlen(text);

    EXPECT(EDGEBERT_ERR_NULL_ARGUMENT, edgebert_tokenize(h, text, len, ids, 64, NULL, &truncated), h);
    EXPECT(EDGEBERT_ERR_NULL_ARGUMENT, edgebert_tokenize(h, NULL, 1, ids, 64, &n, &truncated), h);
    EXPECT(EDGEBERT_ERR_INVALID_UTF8, edgebert_tokenize(h, "\xff", 1, ids, 64, &n, &truncated), h);
    EXPECT(EDGEBERT_ERR_BUFFER_TOO_SMALL, edgebert_tokenize(h, text, len, ids, 2, &n, &truncated), h);
    CHECK(n == 6, "needed %zu ids", n);
    EXPECT(EDGEBERT_ERR_NULL_ARGUMENT, edgebert_tokenize(h, text, len, NULL, 64, &n, &truncated), h);
    EXPECT(EDGEBERT_OK, edgebert_tokenize(h, text, len, ids, 64, &n, &truncated), h);
    CHECK(n == 6 && !truncated, "%zu ids, truncated %d", n, (int)truncated);
    /* [CLS] i feel happy today [SEP] with the fixture's vocab.txt: CLS and SEP differ, nothing unknown. */
    CHECK(ids[0] != ids[n - 1], "CLS and SEP");
    EXPECT(EDGEBERT_OK, edgebert_tokenize(h, text, len, ids, 6, &n, NULL), h);
    EXPECT(EDGEBERT_OK, edgebert_tokenize(h, "", 0, ids, 64, &n, &truncated), h);
    CHECK(n == 2, "empty text: %zu ids", n);
}

struct worker {
    EdgebertHandle *h;
    int bad;
};

static void *classify_many(void *arg) {
    struct worker *w = arg;
    const char *texts[] = {"i feel happy today", "nothing", "I really HATE this movie"};
    EdgebertResult first[3] = {{0}}, r;
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 3; i++) {
            if (edgebert_classify(w->h, texts[i], strlen(texts[i]), &r, NULL, 0) != EDGEBERT_OK) {
                w->bad++;
                continue;
            }
            if (round == 0) first[i] = r;
            else if (r.label_id != first[i].label_id || r.score != first[i].score) w->bad++;
        }
    }
    return NULL;
}

/* Four threads on one handle: calls serialize on its mutex and give the same results. */
static void check_threads(EdgebertHandle *h) {
    pthread_t t[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i].h = h;
        w[i].bad = 0;
        pthread_create(&t[i], NULL, classify_many, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK(w[i].bad == 0, "thread %d: %d bad results", i, w[i].bad);
    }
}

static void check_closed(EdgebertHandle *h) {
    EdgebertResult r;
    size_t count = 0, n = 0;
    int64_t ids[8];
    char name[16];
    EXPECT(EDGEBERT_OK, edgebert_close(h), NULL);
    EXPECT(EDGEBERT_ERR_INVALID_HANDLE, edgebert_close(h), NULL);
    EXPECT(EDGEBERT_ERR_INVALID_HANDLE, edgebert_classify(h, "a", 1, &r, NULL, 0), NULL);
    EXPECT(EDGEBERT_ERR_INVALID_HANDLE, edgebert_label_count(h, &count), NULL);
    EXPECT(EDGEBERT_ERR_INVALID_HANDLE, edgebert_label_name(h, 0, name, sizeof name, &n), NULL);
    EXPECT(EDGEBERT_ERR_INVALID_HANDLE, edgebert_tokenize(h, "a", 1, ids, 8, &n, NULL), NULL);
    EXPECT(EDGEBERT_ERR_INVALID_HANDLE, edgebert_max_len(h, &n), NULL);
    EXPECT(EDGEBERT_ERR_INVALID_HANDLE, edgebert_last_logits(h, NULL, 0, &n), NULL);
    CHECK(edgebert_last_error_message(h) != NULL, "message for a closed handle is never NULL");

    EXPECT(EDGEBERT_ERR_INVALID_HANDLE, edgebert_close(NULL), NULL);
    EXPECT(EDGEBERT_ERR_INVALID_HANDLE, edgebert_classify(NULL, "a", 1, &r, NULL, 0), NULL);
    EdgebertHandle *made_up = (EdgebertHandle *)(uintptr_t)0xdeadbeef;
    EXPECT(EDGEBERT_ERR_INVALID_HANDLE, edgebert_classify(made_up, "a", 1, &r, NULL, 0), NULL);
    EXPECT(EDGEBERT_ERR_INVALID_HANDLE, edgebert_close(made_up), NULL);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL_DIR SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    const char *model = argv[1];
    CHECK(strcmp(edgebert_status_name(EDGEBERT_ERR_IO), "EDGEBERT_ERR_IO") == 0, "status name");
    CHECK(strcmp(edgebert_status_name(1234), "unknown status") == 0, "unknown status name");
    CHECK(edgebert_version()[0] != '\0', "version");
    CHECK(edgebert_last_error_message(NULL) != NULL, "message is never NULL");

    check_open_failures(argv[2]);
    check_options(model);

    EdgebertHandle *h = NULL;
    EXPECT(EDGEBERT_OK, edgebert_open(model, NULL, &h), NULL);
    if (h == NULL) {
        fprintf(stderr, "cannot open %s: %s\n", model, edgebert_last_error_message(NULL));
        return 1;
    }
    /* Two handles on one model are independent. */
    EdgebertHandle *h2 = NULL;
    EXPECT(EDGEBERT_OK, edgebert_open(model, NULL, &h2), NULL);
    CHECK(h2 != h && h2 != NULL, "distinct handles");

    check_labels(h);
    check_classify(h);
    check_tokenize(h);
    check_threads(h);

    /* The message of a handle is its own: a failure on h2 does not change h's. */
    EdgebertResult r;
    EXPECT(EDGEBERT_ERR_NULL_ARGUMENT, edgebert_classify(h, NULL, 0, &r, NULL, 0), h);
    EXPECT(EDGEBERT_ERR_INVALID_UTF8, edgebert_classify(h2, "\xff", 1, &r, NULL, 0), h2);
    CHECK(strstr(edgebert_last_error_message(h), "NULL") != NULL, "h: %s", edgebert_last_error_message(h));
    CHECK(strstr(edgebert_last_error_message(h2), "UTF-8") != NULL, "h2: %s", edgebert_last_error_message(h2));

    check_closed(h);
    /* h2 is unaffected by closing h. */
    EXPECT(EDGEBERT_OK, edgebert_classify(h2, "nothing", 7, &r, NULL, 0), h2);
    EXPECT(EDGEBERT_OK, edgebert_close(h2), NULL);
    EXPECT(EDGEBERT_ERR_INVALID_HANDLE, edgebert_close(h2), NULL);

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
