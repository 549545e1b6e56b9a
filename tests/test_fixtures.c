/* test_fixtures.c — random-weight checkpoints of every architecture
 * (tests/data/<name>, made by tools/make_fixtures.py with transformers) must
 * give transformers' fp32 logits (norm-wise relative error <= 1e-3) and its
 * greedy continuations token for token. The prompt is also replayed in
 * chunks (chunked prefill over a cached prefix) and with other block sizes:
 * the continuation must not change (tests/fixture_runner.h). */
#include "fixture_runner.h"

int main(void) {
    for (size_t i = 0; i < sizeof FIXTURES / sizeof FIXTURES[0]; i++)
        check_fixture(FIXTURES[i], "cpu", NULL, "");
    return test_finish("test_fixtures");
}
