/* test_fixtures.c — random-weight checkpoints of every architecture
 * (tests/data/<name>, made by tools/make_fixtures.py with transformers) must
 * give transformers' fp32 logits (norm-wise relative error <= 1e-3) and its
 * greedy continuations token for token. The prompt is also replayed in
 * chunks (chunked prefill over a cached prefix) and with other block sizes:
 * the continuation must not change (tests/fixture_runner.h). The
 * sliding-window fixtures (mistral_swa, qwen2_swa) are checked when
 * generated, else skipped with a message. */
#include "fixture_runner.h"

int main(void) {
    check_all_fixtures("cpu", NULL, "");
    return test_finish("test_fixtures");
}
