/*
 * insn_count: a QEMU TCG plugin that counts guest instructions executed, all threads together,
 * and writes the total (one decimal number and a newline) to the file named by its `out`
 * argument at exit (stderr without one).
 *
 *   cc -shared -fPIC -O2 -fvisibility=hidden -I scripts/qemu-plugins \
 *      -o insn_count.so scripts/qemu-plugins/insn_count.c
 *   qemu-aarch64 -plugin ./insn_count.so,out=COUNT -cpu cortex-a72 ./prog
 *
 * Each translated block gets one execution callback carrying its instruction count; the
 * callback adds it to the running vCPU's own counter (one per guest thread in qemu-user), so
 * threads do not share a cache line or lose increments. Instructions of a block left early by
 * an exception or a fault are counted in full (the same for every engine measured).
 *
 * Built against qemu-plugin.h of QEMU 7.2 (plugin API version 1), vendored next to this file
 * from Debian's qemu 1:7.2+dfsg source package; the API is stable across later versions.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu-plugin.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define MAX_VCPUS 1024

/* One counter per vCPU, each on its own cache line. */
struct counter {
    uint64_t insns;
    char pad[64 - sizeof(uint64_t)];
};

static struct counter counters[MAX_VCPUS];
/* vCPUs past MAX_VCPUS share this one, updated atomically. */
static uint64_t overflow_insns;
static char out_path[4096];

static void tb_exec(unsigned int cpu_index, void *udata)
{
    uint64_t n = (uint64_t)(uintptr_t)udata;
    if (cpu_index < MAX_VCPUS) {
        counters[cpu_index].insns += n;
    } else {
        __atomic_fetch_add(&overflow_insns, n, __ATOMIC_RELAXED);
    }
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, QEMU_PLUGIN_CB_NO_REGS,
                                         (void *)(uintptr_t)n);
}

static void at_exit(qemu_plugin_id_t id, void *p)
{
    uint64_t total = __atomic_load_n(&overflow_insns, __ATOMIC_RELAXED);
    for (int i = 0; i < MAX_VCPUS; i++) {
        total += counters[i].insns;
    }
    char line[32];
    snprintf(line, sizeof line, "%" PRIu64 "\n", total);
    if (out_path[0]) {
        FILE *f = fopen(out_path, "w");
        if (f) {
            fputs(line, f);
            fclose(f);
            return;
        }
        fprintf(stderr, "insn_count: cannot write %s\n", out_path);
    }
    fprintf(stderr, "insn_count: %s", line);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            size_t len = strlen(argv[i] + 4);
            if (len >= sizeof out_path) {
                fprintf(stderr, "insn_count: out path too long\n");
                return -1;
            }
            memcpy(out_path, argv[i] + 4, len + 1);
        } else {
            fprintf(stderr, "insn_count: unknown argument %s (known: out=FILE)\n", argv[i]);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
