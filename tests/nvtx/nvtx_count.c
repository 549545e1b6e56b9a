/* nvtx_count.c — a minimal NVTX injection library for tests/cli/nvtx.sh.
 *
 * NVTX v3 is header-only: the first range call looks for a tool named by
 * NVTX_INJECTION64_PATH (Nsight Systems sets it) and hands it its function
 * table. This one installs RangePushA / RangePop, counts pushes per name and
 * the deepest nesting, and at exit writes "name pushes" lines, "pops N" and
 * "max_depth N" to the file named by NVTX_COUNT_OUT — so the ranges a CUDA
 * build emits are checked without a profiler. Single-threaded callers only
 * (the engine thread), which is what the test runs. */
#include <nvtx3/nvToolsExt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NAMES 64

static char names[MAX_NAMES][64];
static long counts[MAX_NAMES];
static int nnames, depth, max_depth;
static long pops;

static int push(const char *msg) {
    int i = 0;
    while (i < nnames && strcmp(names[i], msg) != 0)
        i++;
    if (i == nnames && nnames < MAX_NAMES) snprintf(names[nnames++], sizeof names[0], "%s", msg);
    if (i < MAX_NAMES) counts[i]++;
    if (++depth > max_depth) max_depth = depth;
    return depth - 1;
}

static int pop(void) {
    pops++;
    return --depth;
}

static void report(void) {
    const char *path = getenv("NVTX_COUNT_OUT");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (!f) return;
    for (int i = 0; i < nnames; i++)
        fprintf(f, "%s %ld\n", names[i], counts[i]);
    fprintf(f, "pops %ld\nmax_depth %d\nopen %d\n", pops, max_depth, depth);
    fclose(f);
}

__attribute__((visibility("default"))) int InitializeInjectionNvtx2(NvtxGetExportTableFunc_t get) {
    const NvtxExportTableCallbacks *cb = get(NVTX_ETID_CALLBACKS);
    NvtxFunctionTable table = NULL;
    unsigned int size = 0;
    if (!cb || !cb->GetModuleFunctionTable(NVTX_CB_MODULE_CORE, &table, &size) || !table ||
        size <= NVTX_CBID_CORE_RangePop)
        return 0;
    *table[NVTX_CBID_CORE_RangePushA] = (NvtxFunctionPointer)push;
    *table[NVTX_CBID_CORE_RangePop] = (NvtxFunctionPointer)pop;
    atexit(report);
    return 1;
}
