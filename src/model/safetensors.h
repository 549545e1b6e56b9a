/* safetensors.h — mmap a HF checkpoint (one file or a sharded index) and
 * index its tensors by name. Headers are validated fully before any tensor is
 * handed out: dtype known, shape * dtype size == byte span, spans inside the
 * file and not overlapping. */
#ifndef CINFER_MODEL_SAFETENSORS_H
#define CINFER_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "util/dtype.h"
#include "util/status.h"

#define CI_ST_MAX_DIMS 8

/* NOTE: `data` is NOT aligned for the dtype (safetensors does not align
 * tensors): read elements with memcpy, never through a cast pointer. */
typedef struct ci_st_tensor {
    char *name;
    ci_dtype dtype;
    int ndim;
    int64_t shape[CI_ST_MAX_DIMS];
    const void *data; /* into the mapped file */
    size_t nbytes;
    int file_index; /* which shard */
} ci_st_tensor;

typedef struct ci_checkpoint ci_checkpoint;

/* Opens DIR/model.safetensors, or DIR/model.safetensors.index.json and every
 * shard it names. */
ci_status ci_checkpoint_open(const char *model_dir, ci_checkpoint **out);
void ci_checkpoint_close(ci_checkpoint *ck);

/* NULL when absent. */
const ci_st_tensor *ci_checkpoint_find(const ci_checkpoint *ck, const char *name);
size_t ci_checkpoint_num_tensors(const ci_checkpoint *ck);
const ci_st_tensor *ci_checkpoint_tensor(const ci_checkpoint *ck, size_t i);
size_t ci_checkpoint_total_bytes(const ci_checkpoint *ck);
/* File name (no directory) of shard file_index, for messages; file_index -1
 * names the checkpoint itself ("model.safetensors" or
 * "model.safetensors.index.json"); "?" if out of range. */
const char *ci_checkpoint_file_name(const ci_checkpoint *ck, int file_index);

/* Element i of an F32/F16/BF16 tensor as float (data may be unaligned). */
float ci_st_elem_f32(const ci_st_tensor *t, size_t i);

/* Parses one safetensors file image (8-byte little-endian header length,
 * JSON header, data). `path` is used in messages. On success *tensors is a
 * malloc'd array of *count tensors whose data point into buf. This is the
 * fuzzed entry point. */
ci_status ci_safetensors_parse(const uint8_t *buf, size_t len, const char *path,
                               ci_st_tensor **tensors, size_t *count);
void ci_safetensors_free_tensors(ci_st_tensor *tensors, size_t count);

#endif
