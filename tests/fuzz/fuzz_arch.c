/* config.json -> struct model_arch, and for an accepted one the delta
 * planner's parameter count for every preset (sizes come from the file). */
#include "fuzz.h"

#include "arch.h"
#include "spec.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct model_arch arch;
    if (model_arch_parse((const char *)data, size, "fuzz/config.json", &arch) != VP_OK) return fuzz_rejected();
    if (arch.hidden <= 0 || arch.layers <= 0 || arch.heads <= 0 || arch.vocab_size <= 0) abort();
    for (const char *const *name = delta_preset_names; *name; name++) {
        struct delta_spec spec;
        struct delta_counts counts;
        if (delta_spec_preset(*name, &spec) == VP_OK) (void)delta_count_params(&spec, &arch, &counts);
    }
    model_arch_finish(&arch);
    return 0;
}
