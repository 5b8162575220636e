/* Delta specs: the JSON form (a spec or a saved delta.json) and the preset
 * form ("mam:l=16,r=16"). An accepted spec must survive its own round trip
 * through delta_spec_to_json unchanged. */
#include "fuzz.h"

#include "spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void round_trip(const struct delta_spec *spec) {
    char *json = delta_spec_to_json(spec);
    if (!json) return; /* out of memory */
    struct delta_spec back;
    if (delta_spec_parse(json, strlen(json), "round-trip", &back) != VP_OK) {
        fprintf(stderr, "round trip of an accepted spec fails: %s\n%s\n", vp_last_error(), json);
        abort();
    }
    char *again = delta_spec_to_json(&back);
    if (again && strcmp(json, again) != 0) {
        fprintf(stderr, "round trip changes the spec:\n%s\n%s\n", json, again);
        abort();
    }
    free(again);
    free(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct delta_spec spec;
    if (delta_spec_parse((const char *)data, size, "fuzz/delta.json", &spec) == VP_OK) round_trip(&spec);
    else fuzz_rejected();
    if (size < 256) {
        char *text = fuzz_strndup(data, size);
        if (delta_spec_preset(text, &spec) == VP_OK) round_trip(&spec);
        else fuzz_rejected();
        free(text);
    }
    return 0;
}
