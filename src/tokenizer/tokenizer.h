/* tokenizer.h — HF tokenizer.json (+ tokenizer_config.json), no weights.
 *
 * Byte-level BPE (GPT-2 / Llama-3 / Qwen) and SentencePiece-style BPE with
 * byte fallback (Llama-2 / Mistral). Added and special tokens are matched
 * before the model; the post-processor adds BOS/EOS when asked. */
#ifndef CINFER_TOKENIZER_TOKENIZER_H
#define CINFER_TOKENIZER_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/status.h"

typedef struct ci_tokenizer ci_tokenizer;

/* Loads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json. */
ci_status ci_tokenizer_load(const char *model_dir, ci_tokenizer **out);
/* From texts in memory; config_json may be NULL. (Fuzzed entry point.) */
ci_status ci_tokenizer_load_json(const char *tokenizer_json, size_t len, const char *config_json,
                                 size_t config_len, ci_tokenizer **out);
void ci_tokenizer_free(ci_tokenizer *tok);

/* text must be valid UTF-8 (else CI_ERR_INVALID). *ids is malloc'd. */
ci_status ci_tokenizer_encode(const ci_tokenizer *tok, const char *text, size_t len,
                              bool add_special_tokens, int32_t **ids, size_t *n_ids);
/* *text is malloc'd and NUL-terminated. Out-of-range ids are an error. */
ci_status ci_tokenizer_decode(const ci_tokenizer *tok, const int32_t *ids, size_t n_ids,
                              bool skip_special_tokens, char **text, size_t *len);

int ci_tokenizer_vocab_size(const ci_tokenizer *tok); /* incl. added tokens */
int32_t ci_tokenizer_token_to_id(const ci_tokenizer *tok, const char *token); /* -1 */
const char *ci_tokenizer_id_to_token(const ci_tokenizer *tok, int32_t id);    /* NULL */
bool ci_tokenizer_is_special(const ci_tokenizer *tok, int32_t id);
int32_t ci_tokenizer_bos_id(const ci_tokenizer *tok); /* -1 when none */
int32_t ci_tokenizer_eos_id(const ci_tokenizer *tok); /* -1 when none */

/* Streaming detokenizer: feed ids one at a time; emits only complete UTF-8,
 * holding back bytes until a character is whole, and the text a full decode
 * would produce (decoder rules such as SentencePiece's leading-space strip
 * applied once, at the start). */
typedef struct ci_detok_stream ci_detok_stream;
ci_status ci_detok_stream_create(const ci_tokenizer *tok, bool skip_special_tokens,
                                 ci_detok_stream **out);
/* Sets *text to the newly completed text (may be empty), in a buffer owned
 * by the stream and valid until the next call: no allocation per token once
 * the stream's buffers have grown. */
ci_status ci_detok_stream_put(ci_detok_stream *s, int32_t id, const char **text, size_t *len);
/* Flushes what is held back (invalid tails become U+FFFD as in decode). */
ci_status ci_detok_stream_finish(ci_detok_stream *s, const char **text, size_t *len);
void ci_detok_stream_free(ci_detok_stream *s);

#endif
