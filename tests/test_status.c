#include "test.h"
#include "util/half.h"
#include "util/status.h"

static ci_status fails(void) {
    return ci_errorf(CI_ERR_FORMAT, "tensor %s: bad", "x");
}
static ci_status chain(void) {
    CI_TRY(fails());
    return ci_ok();
}

int main(void) {
    ci_status s = chain();
    CHECK(s.code == CI_ERR_FORMAT);
    CHECK(strcmp(s.msg, "tensor x: bad") == 0);
    s = ci_status_wrap(s, "loading %s", "m");
    CHECK(strcmp(s.msg, "loading m: tensor x: bad") == 0);
    CHECK(ci_ok().code == CI_OK);
    /* half conversions round-trip exactly on representable values */
    float vals[] = {
        0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f, 5.9604644775390625e-08f, 0.333251953125f};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        CHECKF(ci_f16_to_f32(ci_f32_to_f16(vals[i])) == vals[i], "f16 %g", vals[i]);
    }
    CHECK(ci_bf16_to_f32(ci_f32_to_bf16(1.5f)) == 1.5f);
    CHECK(ci_f32_to_bf16(1.00390625f) == 0x3f80); /* ties to even */
    CHECK(ci_f32_to_f16(1e6f) == 0x7c00);         /* overflow -> inf */
    return test_finish("test_status");
}
