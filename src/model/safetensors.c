/* safetensors.c — parse and mmap HF safetensors checkpoints.
 *
 * File layout: u64 little-endian header length N, N bytes of JSON header
 * ({"name": {"dtype": "BF16", "shape": [..], "data_offsets": [b, e]}, ...,
 * "__metadata__": {...}}), then the data section. Offsets are relative to the
 * data section.
 *
 * ALIGNMENT: the format does not align tensor data. ci_st_tensor.data may be
 * at any byte address (a header of odd length shifts everything), so
 * consumers must read elements with memcpy (or byte loads), never by casting
 * to uint16_t* / float* and dereferencing. The backends' weight_write
 * converts through memcpy-safe loads.
 *
 * Everything in the header is validated before a tensor is handed out:
 * dtype, shape (overflow-safe element count), offsets inside the data,
 * byte span == elements * dtype size, no two tensors overlapping. */
#include "model/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "util/half.h"

/* ---- one file image ------------------------------------------------------- */

typedef struct st_span {
    uint64_t begin, end;
    size_t idx;
} st_span;

static int span_cmp(const void *a, const void *b) {
    const st_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

void ci_safetensors_free_tensors(ci_st_tensor *tensors, size_t count) {
    if (!tensors) return;
    for (size_t i = 0; i < count; i++)
        free(tensors[i].name);
    free(tensors);
}

/* Known safetensors dtype names that cinfer does not load. */
static const char *const k_other_dtypes[] = {"F64",     "I16",  "U8",      "U16",     "U32",
                                             "U64",     "BOOL", "F8_E5M2", "F8_E8M0", "F6_E2M3",
                                             "F6_E3M2", "F4",   "C64"};

static int parse_dtype_name(const char *s, ci_dtype *out) {
    if (!strcmp(s, "F32"))
        *out = CI_F32;
    else if (!strcmp(s, "F16"))
        *out = CI_F16;
    else if (!strcmp(s, "BF16"))
        *out = CI_BF16;
    else if (!strcmp(s, "I32"))
        *out = CI_I32;
    else if (!strcmp(s, "I64"))
        *out = CI_I64;
    else if (!strcmp(s, "F8_E4M3"))
        *out = CI_F8_E4M3;
    else if (!strcmp(s, "I8"))
        *out = CI_I8;
    else {
        for (size_t i = 0; i < sizeof k_other_dtypes / sizeof k_other_dtypes[0]; i++)
            if (!strcmp(s, k_other_dtypes[i])) return 1; /* known, unsupported */
        return 2;                                        /* unknown */
    }
    return 0;
}

/* Reads a non-negative JSON integer. */
static int get_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return 0;
    *out = (uint64_t)json_integer_value(v);
    return 1;
}

static ci_status parse_one(const char *path, const char *name, const json_t *desc,
                           uint64_t file_size, uint64_t data_size, const uint8_t *data,
                           ci_st_tensor *t, uint64_t *begin_out, uint64_t *end_out) {
    if (!json_is_object(desc))
        return ci_errorf(CI_ERR_FORMAT, "%s: tensor '%.100s': entry must be a JSON object", path,
                         name);
    const json_t *dt = json_object_get(desc, "dtype");
    if (!json_is_string(dt))
        return ci_errorf(CI_ERR_FORMAT,
                         "%s: tensor '%.100s': field 'dtype' missing or not a string", path, name);
    int r = parse_dtype_name(json_string_value(dt), &t->dtype);
    if (r == 1)
        return ci_errorf(
            CI_ERR_UNSUPPORTED,
            "%s: tensor '%.100s' has dtype %s (supported: F32, F16, BF16, I32, I64, F8_E4M3)", path,
            name, json_string_value(dt));
    if (r == 2)
        return ci_errorf(CI_ERR_FORMAT, "%s: tensor '%.100s' has unknown dtype '%.20s'", path, name,
                         json_string_value(dt));

    const json_t *sh = json_object_get(desc, "shape");
    if (!json_is_array(sh))
        return ci_errorf(CI_ERR_FORMAT,
                         "%s: tensor '%.100s': field 'shape' missing or not an array", path, name);
    size_t nd = json_array_size(sh);
    if (nd > CI_ST_MAX_DIMS)
        return ci_errorf(CI_ERR_UNSUPPORTED, "%s: tensor '%.100s': shape has %zu dims (at most %d)",
                         path, name, nd, CI_ST_MAX_DIMS);
    uint64_t nelem = 1;
    int overflow = 0;
    t->ndim = (int)nd;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (!get_u64(json_array_get(sh, i), &d))
            return ci_errorf(CI_ERR_FORMAT,
                             "%s: tensor '%.100s': field 'shape' must hold non-negative integers",
                             path, name);
        t->shape[i] = (int64_t)d;
        if (__builtin_mul_overflow(nelem, d, &nelem)) overflow = 1;
    }
    uint64_t nbytes;
    if (overflow || __builtin_mul_overflow(nelem, (uint64_t)ci_dtype_size(t->dtype), &nbytes) ||
        nbytes > (uint64_t)SIZE_MAX)
        return ci_errorf(CI_ERR_FORMAT, "%s: tensor '%.100s': shape is too large (size overflows)",
                         path, name);

    const json_t *off = json_object_get(desc, "data_offsets");
    uint64_t b, e;
    if (!json_is_array(off) || json_array_size(off) != 2 || !get_u64(json_array_get(off, 0), &b) ||
        !get_u64(json_array_get(off, 1), &e))
        return ci_errorf(CI_ERR_FORMAT,
                         "%s: tensor '%.100s': field 'data_offsets' must be [begin, end] "
                         "(non-negative integers)",
                         path, name);
    if (b > e)
        return ci_errorf(CI_ERR_FORMAT,
                         "%s: tensor '%.100s': data_offsets [%llu, %llu] have begin > end", path,
                         name, (unsigned long long)b, (unsigned long long)e);
    if (e > data_size)
        return ci_errorf(CI_ERR_IO,
                         "%s: tensor '%.100s': data_offsets [%llu, %llu] overrun the file (%llu "
                         "bytes, of which %llu data; truncated?)",
                         path, name, (unsigned long long)b, (unsigned long long)e,
                         (unsigned long long)file_size, (unsigned long long)data_size);
    if (e - b != nbytes)
        return ci_errorf(CI_ERR_FORMAT,
                         "%s: tensor '%.100s': data_offsets [%llu, %llu] span %llu bytes but "
                         "shape x %s needs %llu",
                         path, name, (unsigned long long)b, (unsigned long long)e,
                         (unsigned long long)(e - b), ci_dtype_name(t->dtype),
                         (unsigned long long)nbytes);
    t->data = data + b;
    t->nbytes = (size_t)nbytes;
    *begin_out = b;
    *end_out = e;
    return ci_ok();
}

ci_status ci_safetensors_parse(const uint8_t *buf, size_t len, const char *path,
                               ci_st_tensor **tensors, size_t *count) {
    if (!tensors || !count || (!buf && len))
        return ci_errorf(CI_ERR_INVALID, "ci_safetensors_parse: NULL argument");
    if (!path) path = "(safetensors)";
    *tensors = NULL;
    *count = 0;
    if (len < 8)
        return ci_errorf(CI_ERR_IO,
                         "%s: truncated file (%zu bytes; the 8-byte header length is missing)",
                         path, len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | buf[i];
    if (hlen > len - 8)
        return ci_errorf(CI_ERR_IO,
                         "%s: header length %llu exceeds the file (%zu bytes; truncated?)", path,
                         (unsigned long long)hlen, len);
    if (hlen < 2)
        return ci_errorf(CI_ERR_FORMAT, "%s: header length %llu is too small for a JSON object",
                         path, (unsigned long long)hlen);
    const uint8_t *data = buf + 8 + hlen;
    uint64_t data_size = len - 8 - hlen;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return ci_errorf(CI_ERR_FORMAT, "%s: header is not valid JSON (line %d column %d: %.120s)",
                         path, jerr.line, jerr.column, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return ci_errorf(CI_ERR_FORMAT, "%s: header is not a JSON object", path);
    }

    size_t cap = json_object_size(root);
    ci_st_tensor *ts = cap ? calloc(cap, sizeof *ts) : NULL;
    st_span *spans = cap ? calloc(cap, sizeof *spans) : NULL;
    if (cap && (!ts || !spans)) {
        free(ts);
        free(spans);
        json_decref(root);
        return ci_errorf(CI_ERR_NOMEM, "%s: out of memory for %zu tensors", path, cap);
    }
    size_t n = 0;
    ci_status s = ci_ok();
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(val) && !json_is_null(val)) {
                s = ci_errorf(CI_ERR_FORMAT, "%s: '__metadata__' must be a JSON object", path);
                break;
            }
            continue;
        }
        ci_st_tensor *t = &ts[n];
        s = parse_one(path, key, val, len, data_size, data, t, &spans[n].begin, &spans[n].end);
        if (s.code != CI_OK) break;
        t->name = strdup(key);
        if (!t->name) {
            s = ci_errorf(CI_ERR_NOMEM, "%s: out of memory", path);
            break;
        }
        t->file_index = 0;
        spans[n].idx = n;
        n++;
    }
    json_decref(root);

    if (s.code == CI_OK && n > 1) {
        /* overlap check: sort by begin; a non-empty tensor must start at or
         * after the end of every earlier non-empty one. */
        qsort(spans, n, sizeof *spans, span_cmp);
        uint64_t max_end = 0;
        size_t max_idx = 0;
        int have = 0;
        for (size_t i = 0; i < n; i++) {
            if (spans[i].begin == spans[i].end) continue;
            if (have && spans[i].begin < max_end) {
                const ci_st_tensor *a = &ts[max_idx], *b = &ts[spans[i].idx];
                s = ci_errorf(CI_ERR_FORMAT,
                              "%s: tensor '%.80s' (data_offsets [%llu, %llu]) overlaps tensor "
                              "'%.80s'",
                              path, b->name, (unsigned long long)spans[i].begin,
                              (unsigned long long)spans[i].end, a->name);
                break;
            }
            if (!have || spans[i].end > max_end) {
                max_end = spans[i].end;
                max_idx = spans[i].idx;
            }
            have = 1;
        }
    }
    if (s.code == CI_OK && n > 0) {
        /* hand tensors out in file order */
        ci_st_tensor *sorted = malloc(n * sizeof *sorted);
        if (!sorted) {
            s = ci_errorf(CI_ERR_NOMEM, "%s: out of memory", path);
        } else {
            if (n > 1) {
                for (size_t i = 0; i < n; i++)
                    sorted[i] = ts[spans[i].idx];
            } else {
                sorted[0] = ts[0];
            }
            free(ts);
            ts = sorted;
        }
    }
    free(spans);
    if (s.code != CI_OK) {
        ci_safetensors_free_tensors(ts, n);
        return s;
    }
    *tensors = ts;
    *count = n;
    return ci_ok();
}

/* ---- checkpoint ----------------------------------------------------------- */

typedef struct st_file {
    char *path;
    void *map;
    size_t len;
    ci_st_tensor *tensors; /* owned (names owned) */
    size_t count;
} st_file;

struct ci_checkpoint {
    st_file *files;
    int nfiles;
    ci_st_tensor *tensors; /* copies; names point into files[].tensors */
    size_t count;
    size_t *slots; /* hash table: index+1, 0 = empty */
    size_t cap;
    size_t total_bytes;
    int sharded;
};

static uint64_t name_hash(const char *s) {
    return XXH64(s, strlen(s), 0x5afe7e45ull);
}

static const ci_st_tensor *find_in(const ci_st_tensor *ts, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(ts[i].name, name)) return &ts[i];
    return NULL;
}

static ci_status map_file(const char *path, st_file *f) {
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) return ci_errorf(CI_ERR_NOMEM, "%s: out of memory", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ci_errorf(CI_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return ci_errorf(CI_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ci_errorf(CI_ERR_IO, "%s: not a regular file", path);
    }
    f->len = (size_t)st.st_size;
    if (f->len > 0) {
        void *m = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            f->len = 0;
            return ci_errorf(CI_ERR_IO, "%s: mmap: %s", path, strerror(e));
        }
        f->map = m;
    }
    close(fd);
    return ci_safetensors_parse(f->map, f->len, path, &f->tensors, &f->count);
}

void ci_checkpoint_close(ci_checkpoint *ck) {
    if (!ck) return;
    for (int i = 0; i < ck->nfiles; i++) {
        st_file *f = &ck->files[i];
        ci_safetensors_free_tensors(f->tensors, f->count);
        if (f->map) munmap(f->map, f->len);
        free(f->path);
    }
    free(ck->files);
    free(ck->tensors);
    free(ck->slots);
    free(ck);
}

static ci_status build_index(ci_checkpoint *ck) {
    size_t cap = 16;
    while (cap < ck->count * 2)
        cap <<= 1;
    ck->slots = calloc(cap, sizeof *ck->slots);
    if (!ck->slots) return ci_errorf(CI_ERR_NOMEM, "checkpoint index: out of memory");
    ck->cap = cap;
    ck->total_bytes = 0;
    for (size_t i = 0; i < ck->count; i++) {
        size_t h = (size_t)name_hash(ck->tensors[i].name) & (cap - 1);
        while (ck->slots[h]) {
            if (!strcmp(ck->tensors[ck->slots[h] - 1].name, ck->tensors[i].name))
                return ci_errorf(CI_ERR_FORMAT, "checkpoint: tensor '%.100s' appears twice",
                                 ck->tensors[i].name);
            h = (h + 1) & (cap - 1);
        }
        ck->slots[h] = i + 1;
        ck->total_bytes += ck->tensors[i].nbytes;
    }
    return ci_ok();
}

static ci_status open_single(ci_checkpoint *ck, const char *path) {
    ck->files = calloc(1, sizeof *ck->files);
    if (!ck->files) return ci_errorf(CI_ERR_NOMEM, "%s: out of memory", path);
    ck->nfiles = 1;
    CI_TRY(map_file(path, &ck->files[0]));
    st_file *f = &ck->files[0];
    ck->count = f->count;
    if (f->count) {
        ck->tensors = malloc(f->count * sizeof *ck->tensors);
        if (!ck->tensors) return ci_errorf(CI_ERR_NOMEM, "%s: out of memory", path);
        memcpy(ck->tensors, f->tensors, f->count * sizeof *ck->tensors);
    }
    return build_index(ck);
}

static ci_status open_sharded(ci_checkpoint *ck, const char *dir, const char *index_path) {
    const char *iname = "model.safetensors.index.json";
    json_error_t jerr;
    json_t *root = json_load_file(index_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return ci_errorf(CI_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %.120s", index_path,
                         jerr.line, jerr.column, jerr.text);
    ci_status s = ci_ok();
    const json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(root) || !json_is_object(wm)) {
        s = ci_errorf(CI_ERR_FORMAT, "%s: field 'weight_map' missing or not an object", iname);
        goto done;
    }
    size_t nt = json_object_size(wm);
    ck->files = calloc(nt ? nt : 1, sizeof *ck->files);
    ck->tensors = calloc(nt ? nt : 1, sizeof *ck->tensors);
    if (!ck->files || !ck->tensors) {
        s = ci_errorf(CI_ERR_NOMEM, "%s: out of memory", iname);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)wm, key, val) {
        if (!json_is_string(val)) {
            s = ci_errorf(CI_ERR_FORMAT, "%s: weight_map['%.100s'] must be a file name", iname,
                          key);
            goto done;
        }
        const char *fname = json_string_value(val);
        if (!fname[0] || strchr(fname, '/') || !strcmp(fname, ".") || !strcmp(fname, "..")) {
            s = ci_errorf(CI_ERR_FORMAT,
                          "%s: weight_map['%.100s'] = '%.100s' is not a file name in the model "
                          "directory",
                          iname, key, fname);
            goto done;
        }
        char path[4096];
        int pn = snprintf(path, sizeof path, "%s/%s", dir, fname);
        if (pn < 0 || (size_t)pn >= sizeof path) {
            s = ci_errorf(CI_ERR_INVALID, "%s: shard path too long", iname);
            goto done;
        }
        int fi = -1;
        for (int i = 0; i < ck->nfiles; i++)
            if (!strcmp(ck->files[i].path, path)) fi = i;
        if (fi < 0) { /* each shard mapped once */
            fi = ck->nfiles++;
            s = map_file(path, &ck->files[fi]);
            if (s.code != CI_OK) goto done;
            for (size_t j = 0; j < ck->files[fi].count; j++)
                ck->files[fi].tensors[j].file_index = fi;
        }
        const ci_st_tensor *t = find_in(ck->files[fi].tensors, ck->files[fi].count, key);
        if (!t) {
            s = ci_errorf(CI_ERR_FORMAT,
                          "%s: tensor '%.100s' is mapped to '%.100s' but that shard has no such "
                          "tensor",
                          iname, key, fname);
            goto done;
        }
        ck->tensors[ck->count++] = *t;
    }
    s = build_index(ck);
done:
    json_decref(root);
    return s;
}

ci_status ci_checkpoint_open(const char *model_dir, ci_checkpoint **out) {
    if (!model_dir || !out) return ci_errorf(CI_ERR_INVALID, "ci_checkpoint_open: NULL argument");
    *out = NULL;
    char path[4096];
    ci_checkpoint *ck = calloc(1, sizeof *ck);
    if (!ck) return ci_errorf(CI_ERR_NOMEM, "ci_checkpoint_open: out of memory");
    ci_status s;
    int n = snprintf(path, sizeof path, "%s/model.safetensors.index.json", model_dir);
    if (n < 0 || (size_t)n >= sizeof path) {
        free(ck);
        return ci_errorf(CI_ERR_INVALID, "%.200s: path too long", model_dir);
    }
    if (access(path, F_OK) == 0) {
        ck->sharded = 1;
        s = open_sharded(ck, model_dir, path);
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors", model_dir);
        s = open_single(ck, path);
    }
    if (s.code != CI_OK) {
        ci_checkpoint_close(ck);
        return s;
    }
    *out = ck;
    return ci_ok();
}

const ci_st_tensor *ci_checkpoint_find(const ci_checkpoint *ck, const char *name) {
    if (!ck || !name || !ck->cap) return NULL;
    size_t h = (size_t)name_hash(name) & (ck->cap - 1);
    while (ck->slots[h]) {
        const ci_st_tensor *t = &ck->tensors[ck->slots[h] - 1];
        if (!strcmp(t->name, name)) return t;
        h = (h + 1) & (ck->cap - 1);
    }
    return NULL;
}

size_t ci_checkpoint_num_tensors(const ci_checkpoint *ck) {
    return ck ? ck->count : 0;
}

const ci_st_tensor *ci_checkpoint_tensor(const ci_checkpoint *ck, size_t i) {
    return ck && i < ck->count ? &ck->tensors[i] : NULL;
}

size_t ci_checkpoint_total_bytes(const ci_checkpoint *ck) {
    return ck ? ck->total_bytes : 0;
}

const char *ci_checkpoint_file_name(const ci_checkpoint *ck, int file_index) {
    if (ck && file_index == -1)
        return ck->sharded ? "model.safetensors.index.json" : "model.safetensors";
    if (!ck || file_index < 0 || file_index >= ck->nfiles) return "?";
    const char *p = ck->files[file_index].path;
    const char *slash = strrchr(p, '/');
    return slash ? slash + 1 : p;
}

float ci_st_elem_f32(const ci_st_tensor *t, size_t i) {
    const unsigned char *b = t->data;
    if (t->dtype == CI_F32) {
        float f;
        memcpy(&f, b + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, b + 2 * i, 2);
    return t->dtype == CI_BF16 ? ci_bf16_to_f32(h) : ci_f16_to_f32(h);
}
