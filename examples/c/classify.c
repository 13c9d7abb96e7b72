/*
 * classify: the edgebert C API from C. Reads one text per stdin line and prints one JSON object
 * per line with the fields of `edgebert classify --format json`:
 *   {"label":"joy","label_id":1,"score":0.98,"probs":[...],"logits":[...],"tokens":7,"truncated":false}
 *
 * usage: classify MODEL   (a model.edgebert bundle or an export directory)
 * build: scripts/build-c-example (prints the binary's path)
 */
#define _POSIX_C_SOURCE 200809L
#include "edgebert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Writes `s` as a JSON string. */
static void json_string(const char *s) {
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", stdout); break;
        case '\\': fputs("\\\\", stdout); break;
        case '\n': fputs("\\n", stdout); break;
        case '\r': fputs("\\r", stdout); break;
        case '\t': fputs("\\t", stdout); break;
        default:
            if (*p < 0x20) printf("\\u%04x", *p);
            else putchar(*p);
        }
    }
    putchar('"');
}

/* Writes `v[0..n]` as a JSON array; %.9g round-trips every float. */
static void json_floats(const float *v, size_t n) {
    putchar('[');
    for (size_t i = 0; i < n; i++) printf("%s%.9g", i ? "," : "", (double)v[i]);
    putchar(']');
}

static int out_of_memory(void) {
    fputs("classify: out of memory\n", stderr);
    return 1;
}

static int fail(const char *what, EdgebertStatus st, EdgebertHandle *h) {
    fprintf(stderr, "classify: %s: %s: %s\n", what, edgebert_status_name(st), edgebert_last_error_message(h));
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL < texts.txt\n", argv[0]);
        return 2;
    }
    EdgebertHandle *h = NULL;
    EdgebertStatus st = edgebert_open(argv[1], NULL, &h);
    if (st != EDGEBERT_OK) return fail(argv[1], st, NULL);

    /* Label names, copied once. */
    size_t count = 0;
    if ((st = edgebert_label_count(h, &count)) != EDGEBERT_OK) return fail("labels", st, h);
    size_t slots = count ? count : 1; /* calloc(0) may return NULL */
    char **labels = calloc(slots, sizeof *labels);
    float *probs = calloc(slots, sizeof *probs);
    float *logits = calloc(slots, sizeof *logits);
    if (!labels || !probs || !logits) return out_of_memory();
    for (size_t i = 0; i < count; i++) {
        size_t len = 0;
        edgebert_label_name(h, i, NULL, 0, &len); /* EDGEBERT_ERR_BUFFER_TOO_SMALL: asks the size */
        labels[i] = malloc(len + 1);
        if (!labels[i]) return out_of_memory();
        if ((st = edgebert_label_name(h, i, labels[i], len + 1, &len)) != EDGEBERT_OK) return fail("label", st, h);
    }

    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    unsigned long number = 0;
    int rc = 0;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        number++;
        size_t len = (size_t)n;
        if (len > 0 && line[len - 1] == '\n') len--;
        if (len > 0 && line[len - 1] == '\r') len--;
        EdgebertResult r;
        st = edgebert_classify(h, line, len, &r, probs, count);
        if (st != EDGEBERT_OK) {
            char what[64];
            snprintf(what, sizeof what, "stdin line %lu", number);
            rc = fail(what, st, h);
            break;
        }
        size_t n_logits = 0;
        if ((st = edgebert_last_logits(h, logits, count, &n_logits)) != EDGEBERT_OK) {
            rc = fail("logits", st, h);
            break;
        }
        fputs("{\"label\":", stdout);
        json_string(labels[r.label_id]);
        printf(",\"label_id\":%zu,\"score\":%.9g,\"probs\":", r.label_id, (double)r.score);
        json_floats(probs, r.label_count);
        fputs(",\"logits\":", stdout);
        json_floats(logits, n_logits);
        printf(",\"tokens\":%zu,\"truncated\":%s}\n", r.tokens, r.truncated ? "true" : "false");
        fflush(stdout);
    }
    free(line);
    for (size_t i = 0; i < count; i++) free(labels[i]);
    free(labels);
    free(probs);
    free(logits);
    if ((st = edgebert_close(h)) != EDGEBERT_OK) return fail("close", st, NULL);
    return rc;
}
