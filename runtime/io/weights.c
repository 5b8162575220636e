/* A model folder's weights: model.safetensors, or shards named by
 * model.safetensors.index.json ("weight_map": tensor name -> shard file). */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct io_weights {
    struct io_safetensors **shards;
    size_t shard_count;
    const struct io_tensor **tensors;
    size_t count;
};

/* Takes ownership of f, also on failure. */
static vp_status add_shard(struct io_weights *w, struct io_safetensors *f) {
    struct io_safetensors **ns = realloc(w->shards, (w->shard_count + 1) * sizeof *ns);
    if (!ns) {
        io_safetensors_close(f);
        return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory opening weights");
    }
    w->shards = ns;
    w->shards[w->shard_count++] = f;
    size_t n = io_safetensors_count(f);
    const struct io_tensor **nt = realloc(w->tensors, (w->count + n) * sizeof *nt);
    if (!nt) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory opening weights");
    w->tensors = nt;
    for (size_t i = 0; i < n; i++) {
        const struct io_tensor *t = io_safetensors_at(f, i);
        if (io_weights_find(w, t->name))
            return vp_fail(VP_ERROR_BAD_INPUT, "%s: tensor '%s' is also in another shard",
                           io_safetensors_path(f), t->name);
        w->tensors[w->count++] = t;
    }
    return VP_OK;
}

/* A shard name must be a plain file name in the folder: no path tricks. */
static bool plain_name(const char *s) {
    return *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static vp_status open_sharded(struct io_weights *w, const char *dir, const char *index_path) {
    void *text;
    size_t size;
    vp_status s = vp_file_read(index_path, &text, &size);
    if (s != VP_OK) return s;
    cJSON *root = cJSON_ParseWithLength(text, size);
    free(text);
    const cJSON *map = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(root);
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: no \"weight_map\" object; the index is corrupt",
                       index_path);
    }
    for (const cJSON *e = map->child; e && s == VP_OK; e = e->next) {
        if (!cJSON_IsString(e) || !plain_name(e->valuestring)) {
            s = vp_fail(VP_ERROR_BAD_INPUT, "%s: weight_map[\"%s\"] is not a shard file name",
                        index_path, e->string);
            break;
        }
        bool open_already = false;
        for (size_t i = 0; i < w->shard_count && !open_already; i++) {
            const char *p = io_safetensors_path(w->shards[i]);
            const char *base = strrchr(p, '/');
            open_already = strcmp(base ? base + 1 : p, e->valuestring) == 0;
        }
        if (!open_already) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dir, e->valuestring);
            struct io_safetensors *f;
            s = io_safetensors_open(path, &f);
            if (s == VP_OK) s = add_shard(w, f);
        }
    }
    /* Every tensor the index names must be where it says. */
    for (const cJSON *e = map->child; e && s == VP_OK; e = e->next) {
        if (!io_weights_find(w, e->string))
            s = vp_fail(VP_ERROR_BAD_INPUT, "%s names tensor '%s' in %s, but that shard lacks it",
                        index_path, e->string, e->valuestring);
    }
    cJSON_Delete(root);
    return s;
}

vp_status io_weights_open(const char *dir, struct io_weights **out) {
    *out = NULL;
    struct io_weights *w = calloc(1, sizeof *w);
    if (!w) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory opening weights");
    char single[4096], index[4096];
    snprintf(single, sizeof single, "%s/model.safetensors", dir);
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    vp_status s;
    if (access(single, F_OK) == 0) {
        struct io_safetensors *f;
        s = io_safetensors_open(single, &f);
        if (s == VP_OK) s = add_shard(w, f);
    } else if (access(index, F_OK) == 0) {
        s = open_sharded(w, dir, index);
    } else {
        s = vp_fail(VP_ERROR_BAD_INPUT,
                    "%s has neither model.safetensors nor model.safetensors.index.json; "
                    "vkpeft reads safetensors weights (convert .bin checkpoints first)", dir);
    }
    if (s != VP_OK) {
        io_weights_close(w);
        return s;
    }
    *out = w;
    return VP_OK;
}

void io_weights_close(struct io_weights *w) {
    if (!w) return;
    for (size_t i = 0; i < w->shard_count; i++) io_safetensors_close(w->shards[i]);
    free(w->shards);
    free(w->tensors);
    free(w);
}

const struct io_tensor *io_weights_find(const struct io_weights *w, const char *name) {
    for (size_t i = 0; i < w->count; i++)
        if (strcmp(w->tensors[i]->name, name) == 0) return w->tensors[i];
    return NULL;
}

size_t io_weights_count(const struct io_weights *w) { return w->count; }
const struct io_tensor *io_weights_at(const struct io_weights *w, size_t i) {
    return i < w->count ? w->tensors[i] : NULL;
}
