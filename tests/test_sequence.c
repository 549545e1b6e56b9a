/* Sequence: state machine, token capacity, clone. */
#include "engine/sequence.h"
#include "test.h"

int main(void) {
    int32_t p[5] = {1, 2, 3, 4, 5};
    ci_sequence *q = NULL;
    CHECK(ci_seq_create(1, p, 0, 4, 4, &q).code == CI_ERR_INVALID && !q);
    CHECK(ci_seq_create(1, p, 5, 0, 4, &q).code == CI_ERR_INVALID);
    CHECK(ci_seq_create(1, p, 5, 4, 0, &q).code == CI_ERR_INVALID);
    CHECK(ci_seq_create(1, p, 5, 0x7fffffff, 4, &q).code == CI_ERR_INVALID);
    CHECK_OK(ci_seq_create(7, p, 5, 3, 4, &q));
    CHECK(q->state == CI_SEQ_WAITING && q->num_tokens == 5 && q->token_capacity == 8 &&
          q->block_capacity == 2);
    CHECK(q->parent_id == -1 && q->group_id == 7 && ci_seq_num_output(q) == 0);
    /* WAITING -> RUNNING -> PREEMPTED -> RUNNING -> FINISHED */
    CHECK(ci_seq_transition(q, CI_SEQ_PREEMPTED).code == CI_ERR_INVALID);
    CHECK_OK(ci_seq_transition(q, CI_SEQ_RUNNING));
    CHECK(ci_seq_transition(q, CI_SEQ_WAITING).code == CI_ERR_INVALID);
    CHECK_OK(ci_seq_transition(q, CI_SEQ_PREEMPTED));
    CHECK(ci_seq_transition(q, CI_SEQ_WAITING).code == CI_ERR_INVALID);
    CHECK_OK(ci_seq_transition(q, CI_SEQ_RUNNING));
    for (int i = 0; i < 3; i++)
        CHECK_OK(ci_seq_append(q, 100 + i));
    ci_status st = ci_seq_append(q, 9);
    CHECK(st.code == CI_ERR_CAPACITY && strstr(st.msg, "max_tokens 3"));
    CHECK(ci_seq_num_output(q) == 3 && q->tokens[7] == 102);
    ci_sequence *c = NULL;
    CHECK_OK(ci_seq_clone(q, 8, &c));
    CHECK(c->id == 8 && c->parent_id == 7 && c->group_id == 7 && c->num_tokens == 8 &&
          c->num_blocks == 0);
    CHECK(!memcmp(c->tokens, q->tokens, 8 * sizeof(int32_t)) && c->tokens != q->tokens);
    CHECK_OK(ci_seq_transition(q, CI_SEQ_FINISHED));
    CHECK(ci_seq_is_finished(q) && ci_seq_transition(q, CI_SEQ_RUNNING).code == CI_ERR_INVALID);
    CHECK(!strcmp(ci_seq_state_name(CI_SEQ_PREEMPTED), "preempted"));
    CHECK(!strcmp(ci_finish_reason_name(CI_FINISH_LENGTH), "length"));
    ci_seq_destroy(q);
    ci_seq_destroy(c);
    ci_seq_destroy(NULL);
    return test_finish("test_sequence");
}
