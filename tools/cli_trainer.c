/* Options of the trainer that vkpeft train and vkpeft pretrain share. */
#include "cli_trainer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool cli_parse_double(const char *text, double *out) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v)) return false;
    *out = v;
    return true;
}

bool cli_parse_u64(const char *text, uint64_t *out) {
    char *end;
    errno = 0;
    if (!*text || *text == '-') return false;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end) return false;
    *out = v;
    return true;
}

bool cli_parse_int(const char *text, int *out) {
    uint64_t v;
    if (!cli_parse_u64(text, &v) || v > 1000000000) return false;
    *out = (int)v;
    return true;
}

static bool parse_storage(const char *text, enum encoder_storage *out) {
    if (strcmp(text, "f32") == 0) *out = ENCODER_STORAGE_F32;
    else if (strcmp(text, "f16") == 0) *out = ENCODER_STORAGE_F16;
    else if (strcmp(text, "bf16") == 0) *out = ENCODER_STORAGE_BF16;
    else return false;
    return true;
}

int cli_trainer_option(struct trainer_options *o, const char *name, const char *v) {
    bool ok = true;
    if (strcmp(name, "--optimizer") == 0) {
        ok = strcmp(v, "adamw") == 0 || strcmp(v, "sgd") == 0;
        o->optimizer = strcmp(v, "sgd") == 0 ? TRAINER_SGD : TRAINER_ADAMW;
    } else if (strcmp(name, "--lr") == 0) ok = cli_parse_double(v, &o->lr);
    else if (strcmp(name, "--weight-decay") == 0) ok = cli_parse_double(v, &o->weight_decay);
    else if (strcmp(name, "--betas") == 0) {
        char buf[128];
        snprintf(buf, sizeof buf, "%s", v);
        char *comma = strchr(buf, ',');
        ok = comma != NULL;
        if (ok) *comma = 0;
        ok = ok && cli_parse_double(buf, &o->beta1) && cli_parse_double(comma + 1, &o->beta2);
    } else if (strcmp(name, "--eps") == 0) ok = cli_parse_double(v, &o->eps);
    else if (strcmp(name, "--momentum") == 0) ok = cli_parse_double(v, &o->momentum);
    else if (strcmp(name, "--schedule") == 0) ok = schedule_parse_kind(v, &o->schedule) == VP_OK;
    else if (strcmp(name, "--warmup") == 0) {
        size_t n = strlen(v);
        if (n > 1 && v[n - 1] == '%') {
            char buf[64];
            snprintf(buf, sizeof buf, "%.*s", (int)(n - 1), v);
            ok = cli_parse_double(buf, &o->warmup_ratio) && o->warmup_ratio >= 0 && o->warmup_ratio <= 100;
            o->warmup_ratio /= 100;
            o->warmup_steps = 0;
        } else {
            ok = cli_parse_u64(v, &o->warmup_steps);
            o->warmup_ratio = 0;
        }
    } else if (strcmp(name, "--clip") == 0) ok = cli_parse_double(v, &o->clip);
    else if (strcmp(name, "--batch") == 0) ok = cli_parse_int(v, &o->batch) && o->batch > 0;
    else if (strcmp(name, "--accum") == 0) ok = cli_parse_int(v, &o->accum) && o->accum > 0;
    else if (strcmp(name, "--epochs") == 0) ok = cli_parse_int(v, &o->epochs) && o->epochs > 0;
    else if (strcmp(name, "--steps") == 0) ok = cli_parse_u64(v, &o->steps) && o->steps > 0;
    else if (strcmp(name, "--max-len") == 0 || strcmp(name, "--max-length") == 0)
        ok = cli_parse_int(v, &o->max_len) && o->max_len > 0;
    else if (strcmp(name, "--dropout") == 0) ok = cli_parse_double(v, &o->dropout) && o->dropout >= 0;
    else if (strcmp(name, "--label-smoothing") == 0) ok = cli_parse_double(v, &o->label_smoothing);
    else if (strcmp(name, "--seed") == 0) ok = cli_parse_u64(v, &o->seed);
    else if (strcmp(name, "--eval-every") == 0) ok = cli_parse_u64(v, &o->eval_every);
    else if (strcmp(name, "--weights") == 0) ok = parse_storage(v, &o->storage);
    else return -1;
    return ok ? 1 : 0;
}

bool cli_trainer_flag(struct trainer_options *o, const char *arg) {
    if (strcmp(arg, "--checkpoint-activations") != 0) return false;
    o->checkpoint_activations = true;
    return true;
}
