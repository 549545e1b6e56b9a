/* comm.h — a tensor-parallel group's collectives between its ranks.
 *
 * One ci_comm per group, shared by the ranks (threads of one process, one
 * backend each: ci_backend's comm and rank). The in-process all-reduce here
 * serves backends whose tensors are host memory (the CPU backend, so the
 * sharded forward runs and is tested without GPUs): every rank posts its
 * buffer, each rank sums one slice over all ranks in rank order and writes
 * the sum back to every rank's buffer, so all ranks hold the same bits.
 * A CUDA group runs NCCL's collectives behind the same backend ops; the
 * comm then carries its id, epochs and abort hooks (below). */
#ifndef CINFER_BACKEND_COMM_H
#define CINFER_BACKEND_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "util/status.h"

#define CI_COMM_MAX_RANKS 64
/* what a backend's all_reduce says when another rank aborted the step */
#define CI_COMM_ABORTED_MSG "another rank failed this step"

typedef struct ci_comm ci_comm;

ci_status ci_comm_create(int size, ci_comm **out);
void ci_comm_destroy(ci_comm *c);
int ci_comm_size(const ci_comm *c);

/* Every rank calls it with its own x of the same n: afterwards each x holds
 * the sum over the ranks (summed in rank order). -1 (x undefined) when the
 * group was aborted. */
int ci_comm_all_reduce_f32(ci_comm *c, int rank, float *x, int64_t n);

/* Point to point (pipeline stages): send hands n bytes at p to rank dst and
 * returns once dst's recv has copied them (the buffer stays the sender's
 * until then); recv waits for src's send. -1 once aborted. */
int ci_comm_send(ci_comm *c, int src, int dst, const void *p, size_t n);
int ci_comm_recv(ci_comm *c, int dst, int src, void *p, size_t n);

/* Every rank calls it with its part [rows][cols] (cols may differ by rank):
 * rank root's out [rows][ldo] receives the parts side by side in rank
 * order. -1 once aborted. */
int ci_comm_gather_cols_f32(ci_comm *c, int rank, int root, const float *part, int64_t rows,
                            int64_t cols, float *out, int64_t ldo);

/* Every rank calls it; returns when all have (0), or -1 once aborted. */
int ci_comm_barrier(ci_comm *c);

/* A rank that cannot finish its step: every rank waiting in, or later
 * entering, a collective returns -1 until ci_comm_reset, which the owner
 * calls once every rank has left the step. */
void ci_comm_abort(ci_comm *c);
void ci_comm_reset(ci_comm *c);
int ci_comm_aborted(ci_comm *c);

/* A device library's group riding on the comm (NCCL on CUDA: one
 * communicator per rank, all made from one id). Epochs: a reset starts a
 * new one, in which every rank builds its device group again (an abort
 * tore the old one down). ci_comm_device_id copies the epoch's id (n <=
 * CI_COMM_ID_BYTES) into out, made by make() for the first rank that asks;
 * 0, or -1 when make failed, the epoch is over or the comm is aborted. An
 * abort runs every hook registered for the epoch (hook(arg), outside the
 * comm's lock): NCCL's abort, which frees ranks stuck in a device
 * collective whose peer never came. */
#define CI_COMM_ID_BYTES 256
unsigned ci_comm_epoch(ci_comm *c);
int ci_comm_device_id(ci_comm *c, unsigned epoch, void *out, size_t n,
                      int (*make)(void *id, size_t n));
void ci_comm_on_abort(ci_comm *c, int rank, void (*hook)(void *arg), void *arg);

#endif
