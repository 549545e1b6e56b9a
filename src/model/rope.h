/* rope.h — rotary embedding tables for every rope_scaling type.
 *
 * The scaling variants (linear, llama3, yarn) differ only in the inverse
 * frequencies and a magnitude factor, so they are resolved here, once, into a
 * cos/sin table; the backend's rope op just reads it. */
#ifndef CINFER_MODEL_ROPE_H
#define CINFER_MODEL_ROPE_H

#include "backend/backend.h"
#include "model/config.h"

/* Fills inv_freq[rot_dim/2] and *mscale (cos/sin multiplier, 1 unless yarn)
 * as transformers' ROPE_INIT_FUNCTIONS do. */
void ci_rope_inv_freq(const ci_rope_config *rc, int rot_dim, double *inv_freq, double *mscale);

/* Builds the table on the host and uploads it: cos_sin is F32
 * [max_positions][rot_dim], rot_dim = ci_config_rot_dim(cfg); row p holds
 * rot_dim/2 cosines then rot_dim/2 sines of p * inv_freq, times the yarn
 * mscale, rounded step by step as transformers computes them in float32.
 * max_positions <= 0 means cfg->max_position_embeddings. */
ci_status ci_rope_table_create(ci_backend *be, const ci_model_config *cfg, int max_positions,
                               ci_rope_table *out);
void ci_rope_table_free(ci_backend *be, ci_rope_table *t);

#endif
