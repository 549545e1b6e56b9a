/* timeline.cu — the in-graph kernel timeline of a profiling build
 * (cmake -DCINFER_TIMELINE=ON; pdl.cuh records, this file collects).
 *
 * ncu times kernels one at a time, so the batch-1 step it sums is ~20 %
 * above the real one, and it cannot say which kernel's launch gap or tail
 * a CUDA graph with programmatic dependent launch hides. Here every kernel
 * launched by ci_cu_launch writes, from CTA 0, the global timer at the
 * moment its wait returns (its predecessor complete) into one device
 * buffer: record k + 1 minus record k is what kernel k costs the step as it
 * runs. Kernels launched otherwise (cuBLASLt) write nothing: their time
 * lands in the record before them. The host keeps a log of launches (the
 * kernel's function, grid, block), per forward for eager steps and per
 * captured graph for replays, to name the records; the last forward's
 * timeline is written as CSV to CINFER_TIMELINE_OUT when the backend is
 * destroyed (tools/timeline_step.py groups it). One device (no tensor
 * parallel ranks). Normal builds compile the host half as no-ops. */
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/pdl.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef CINFER_TIMELINE
#include <cxxabi.h>

typedef struct {
    const void *fn;
    unsigned gx, gy, gz, threads;
} tl_launch;

typedef struct {
    const void *graph;
    tl_launch *log;
    int n;
} tl_graph_log;

#define TL_MAX_SYMS 64
#define TL_MAX_GRAPHS 64
static const void *tl_syms[TL_MAX_SYMS];
static int tl_nsyms;
static unsigned long long *tl_dev;
static tl_launch tl_log[CI_TL_CAP];
static int tl_n;
static tl_graph_log tl_graphs[TL_MAX_GRAPHS];
static int tl_ngraphs;

extern "C" int ci_cu_tl_register(const void *symbol) {
    if (tl_nsyms < TL_MAX_SYMS) tl_syms[tl_nsyms++] = symbol;
    return tl_nsyms;
}

extern "C" void ci_cu_tl_log(const void *fn, dim3 grid, dim3 block) {
    if (tl_dev && tl_n < CI_TL_CAP)
        tl_log[tl_n++] = (tl_launch){fn, grid.x, grid.y, grid.z, block.x * block.y * block.z};
}

extern "C" int ci_cu_tl_enable(void) {
    const char *out = getenv("CINFER_TIMELINE_OUT");
    if (!out || !*out || tl_dev) return cudaSuccess;
    const size_t bytes = (4 + 4 * (size_t)CI_TL_CAP) * sizeof(unsigned long long);
    cudaError_t e = cudaMalloc((void **)&tl_dev, bytes);
    if (e == cudaSuccess) e = cudaMemset(tl_dev, 0, bytes);
    for (int i = 0; i < tl_nsyms && e == cudaSuccess; i++)
        e = cudaMemcpyToSymbol(tl_syms[i], &tl_dev, sizeof tl_dev);
    if (e == cudaSuccess) fprintf(stderr, "cuda: kernel timeline on (%d modules)\n", tl_nsyms);
    return e;
}

/* a forward begins: eager (the launch log starts over) or a graph's replay
 * (its capture's log, copied: the sampling after it appends) */
extern "C" int ci_cu_tl_begin(void *stream, const void *graph) {
    if (!tl_dev) return cudaSuccess;
    tl_n = 0;
    for (int i = 0; graph && i < tl_ngraphs; i++)
        if (tl_graphs[i].graph == graph) {
            memcpy(tl_log, tl_graphs[i].log, sizeof(tl_launch) * (size_t)tl_graphs[i].n);
            tl_n = tl_graphs[i].n;
        }
    return cudaMemsetAsync(tl_dev, 0, sizeof(unsigned), (cudaStream_t)stream);
}

/* a capture ended: the launches since its begin are the graph's (a graph
 * at the address of a destroyed one takes its entry) */
extern "C" void ci_cu_tl_graph(const void *graph) {
    if (!tl_dev) return;
    int i = 0;
    while (i < tl_ngraphs && tl_graphs[i].graph != graph)
        i++;
    if (i == TL_MAX_GRAPHS) return;
    tl_launch *log = (tl_launch *)malloc(sizeof(tl_launch) * (size_t)(tl_n > 0 ? tl_n : 1));
    if (!log) return;
    memcpy(log, tl_log, sizeof(tl_launch) * (size_t)tl_n);
    if (i < tl_ngraphs) free(tl_graphs[i].log);
    else tl_ngraphs++;
    tl_graphs[i] = (tl_graph_log){graph, log, tl_n};
}

/* CSV of the last forward: index, start (ns from the first record), the
 * time to the next record, grid, threads, the logged kernel's name (a
 * record that matches none of the next few logged launches by grid and
 * threads is printed "?": a kernel outside ci_cu_launch) */
extern "C" void ci_cu_tl_dump(void *stream) {
    const char *out = getenv("CINFER_TIMELINE_OUT");
    if (!tl_dev || !out) return;
    cudaStreamSynchronize((cudaStream_t)stream);
    const size_t words = 4 + 4 * (size_t)CI_TL_CAP;
    unsigned long long *h = (unsigned long long *)malloc(words * sizeof *h);
    FILE *f = fopen(out, "w");
    if (h && f && cudaMemcpy(h, tl_dev, words * sizeof *h, cudaMemcpyDeviceToHost) == cudaSuccess) {
        unsigned n = (unsigned)h[0];
        if (n > CI_TL_CAP) n = CI_TL_CAP;
        fprintf(f, "index,start_ns,dur_ns,grid,threads,kernel\n");
        int j = 0;        /* the log's next launch */
        char *dm = NULL; /* the last demangled name */
        for (unsigned i = 0; i < n; i++) {
            const unsigned long long *r = h + 4 + 4 * (size_t)i;
            const unsigned gx = (unsigned)(r[1] & 0xFFFFFF), gy = (unsigned)(r[1] >> 24 & 0xFFFFF),
                           gz = (unsigned)(r[1] >> 44);
            const char *name = "?";
            for (int k = j; k < tl_n && k < j + 8; k++) /* a few launches may not record */
                if (tl_log[k].gx == gx && tl_log[k].gy == gy && tl_log[k].gz == gz &&
                    tl_log[k].threads == (unsigned)r[2]) {
                    const char *nm = NULL;
                    if (cudaFuncGetName(&nm, tl_log[k].fn) == cudaSuccess && nm) name = nm;
                    free(dm);
                    int st = 1;
                    dm = abi::__cxa_demangle(name, NULL, NULL, &st);
                    if (st == 0 && dm) name = dm;
                    j = k + 1;
                    break;
                }
            const long long dur = i + 1 < n ? (long long)(r[4] - r[0]) : -1;
            fprintf(f, "%u,%llu,%lld,%ux%ux%u,%llu,\"%s\"\n", i, r[0] - h[4], dur, gx, gy, gz,
                    r[2], name);
        }
        free(dm);
        fprintf(stderr, "cuda: kernel timeline of the last forward (%u kernels) in %s\n", n, out);
    }
    if (f) fclose(f);
    free(h);
    for (int i = 0; i < tl_ngraphs; i++) /* the graphs go with the backend */
        free(tl_graphs[i].log);
    tl_ngraphs = 0;
}

/* A cuBLASLt GEMM's own row: launched just before one, this empty kernel
 * records when the kernel before the GEMM completed, so the time to the
 * next record is the GEMM's (not added to its predecessor's row); grid x =
 * the GEMM's output rows / 1024 + 1 tells q|k|v, o, gate|up, down and the
 * LM head apart (timeline_step.py names it "ci_tl_gemm"). */
__global__ void ci_tl_gemm(void) {
    ci_pdl_trigger();
    ci_pdl_wait();
}
extern "C" int ci_cu_tl_gemm(void *stream, long long rows) {
    if (!tl_dev) return cudaSuccess;
    return ci_cu_launch(ci_tl_gemm, dim3((unsigned)(rows / 1024 + 1)), dim3(32), 0,
                        (cudaStream_t)stream);
}
#else
extern "C" int ci_cu_tl_gemm(void *stream, long long rows) {
    (void)stream;
    (void)rows;
    return cudaSuccess;
}
extern "C" int ci_cu_tl_enable(void) {
    const char *out = getenv("CINFER_TIMELINE_OUT");
    if (out && *out)
        fprintf(stderr, "cuda: CINFER_TIMELINE_OUT needs a build with -DCINFER_TIMELINE=ON; "
                        "no timeline\n");
    return cudaSuccess;
}
extern "C" int ci_cu_tl_begin(void *stream, const void *graph) {
    (void)stream;
    (void)graph;
    return cudaSuccess;
}
extern "C" void ci_cu_tl_graph(const void *graph) {
    (void)graph;
}
extern "C" void ci_cu_tl_dump(void *stream) {
    (void)stream;
}
#endif
