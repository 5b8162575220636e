// Shared by the attention shaders: the push-constant block, the input
// bindings 0..5, key visibility and the dropout multiplier.
//
// Layouts (ref_attention_forward in tests/reference/ref.h): q (B,H,T,D),
// k and v (B,H,S,D), prefix keys and values (H,L,D), keep (B,S) bytes.
// Column j of a score row is prefix j when j < L, else key j - L. A
// dispatch covers the heads bh0 .. bh0 + gl_NumWorkGroups.y - 1 (bh = b*H + h);
// the per-head tensors are bound from head bh0 on, so they are indexed with
// the local head gl_WorkGroupID.y, while keep, the prefixes and the dropout
// counter use the absolute bh.
//
// Two variants: attention_*.comp stage keys (or queries) in shared-memory
// tiles of TILE rows (GPUs); attention_texel_*.comp (CPUs) read
// through texel buffers and share rows between lanes with subgroup shuffles
// (they define ATTN_TEXEL and ATTN_SG, the subgroup size). Define: HEAD_DIM.
#ifndef VP_ATTENTION_COMMON_GLSL
#define VP_ATTENTION_COMMON_GLSL

// attention.c sets these; the defaults let a shader compile on its own.
#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef ATTN_SG
#define ATTN_SG VP_SUBGROUP_SIZE
#endif

#include "common.glsl"
#include "philox.glsl"

// Rows of D values are read as vec4 when D allows it.
#if HEAD_DIM % 4 == 0
#define VEC vec4
#define DV (HEAD_DIM / 4)
#else
#define VEC float
#define DV HEAD_DIM
#endif

// Rows per shared-memory tile (tiled variant).
layout(constant_id = 1) const uint TILE = 16;

// C twin: struct attention_push in runtime/kernels/attention.c
layout(push_constant) uniform Push {
    uint B, H, T, S;
    uint L;        // prefix length
    uint bh0;      // first head of this dispatch
    uint causal;   // 1: key s is visible to query t only if s <= t + S - T
    uint has_keep; // 1: binding 5 holds the (B,S) key keep mask
    float scale;      // score = scale * q.k
    float keep_scale; // dropout: 1/(1-p) for kept entries (0 when p = 1)
    uint threshold;   // dropout: ref_dropout_threshold(p); 0 = no dropout
    uint step;
    uint seed_lo, seed_hi, stream;
    uint pad;
} p;

// q, k, v, the prefixes and the keep mask, read through q_in(i) ... pv_in(i)
// (i in VECs) and keep_word(i). ATTN_TEXEL (the CPU variant): uniform texel
// buffers (RGBA32F views, R32F when D is not a multiple of 4; R32UI for the
// mask), since lavapipe turns a texel fetch into a vector gather but a
// storage-buffer load inside a loop into a per-lane scalar loop. Otherwise
// storage buffers.
#ifdef ATTN_TEXEL
layout(binding = 0) uniform samplerBuffer q_tex;
layout(binding = 1) uniform samplerBuffer k_tex;
layout(binding = 2) uniform samplerBuffer v_tex;
layout(binding = 3) uniform samplerBuffer pk_tex;
layout(binding = 4) uniform samplerBuffer pv_tex;
layout(binding = 5) uniform usamplerBuffer keep_tex;
#if HEAD_DIM % 4 == 0
#define ATTN_FETCH(t, i) texelFetch(t, int(i))
#else
#define ATTN_FETCH(t, i) texelFetch(t, int(i)).x
#endif
VEC q_in(uint i) { return ATTN_FETCH(q_tex, i); }
VEC k_in(uint i) { return ATTN_FETCH(k_tex, i); }
VEC v_in(uint i) { return ATTN_FETCH(v_tex, i); }
VEC pk_in(uint i) { return ATTN_FETCH(pk_tex, i); }
VEC pv_in(uint i) { return ATTN_FETCH(pv_tex, i); }
uint keep_word(uint i) { return texelFetch(keep_tex, int(i)).x; }
#else
layout(std430, binding = 0) readonly buffer Q { VEC q_buf[]; };
layout(std430, binding = 1) readonly buffer K { VEC k_buf[]; };
layout(std430, binding = 2) readonly buffer V { VEC v_buf[]; };
layout(std430, binding = 3) readonly buffer PK { VEC pk_buf[]; };
layout(std430, binding = 4) readonly buffer PV { VEC pv_buf[]; };
layout(std430, binding = 5) readonly buffer Keep { uint keep_words[]; };
VEC q_in(uint i) { return q_buf[i]; }
VEC k_in(uint i) { return k_buf[i]; }
VEC v_in(uint i) { return v_buf[i]; }
VEC pk_in(uint i) { return pk_buf[i]; }
VEC pv_in(uint i) { return pv_buf[i]; }
uint keep_word(uint i) { return keep_words[i]; }
#endif

#define VP_INF uintBitsToFloat(0x7F800000u)
#define VP_FLT_LOWEST uintBitsToFloat(0xFF7FFFFFu) // -FLT_MAX

// Key s of batch b is not padding.
bool attn_key_kept(uint b, uint s) {
    if (p.has_keep == 0u) return true;
    if (s >= p.S) return false; // never read past the mask
    uint i = b * p.S + s;
    return ((keep_word(i >> 2) >> ((i & 3u) * 8u)) & 0xFFu) != 0u;
}

// Key s is visible to query t (causal part only).
bool attn_causal_ok(uint t, uint s) {
    return p.causal == 0u || int(s) <= int(t) + int(p.S) - int(p.T);
}

// Dropout multiplier of P[bh, t, j]: element index ((bh*T + t)*(L+S) + j),
// the flat index into P (B,H,T,L+S), as 64 bits.
float attn_dropout(uint bh, uint t, uint j) {
    if (p.threshold == 0u) return 1.0;
    uint hi, lo, carry;
    umulExtended(bh * p.T + t, p.L + p.S, hi, lo);
    lo = uaddCarry(lo, j, carry);
    hi += carry;
    bool keep = vp_dropout_keep(uvec2(p.seed_lo, p.seed_hi), p.step, p.stream, lo, hi,
                                p.threshold);
    return keep ? p.keep_scale : 0.0;
}

// Column j (prefix or key) is visible to query t of batch b.
bool attn_visible(uint b, uint t, uint j) {
    if (j < p.L) return true;
    return attn_key_kept(b, j - p.L) && attn_causal_ok(t, j - p.L);
}

// Offset (in VECs) of row j of the concatenation [prefix; keys] for head h
// (prefix) or local head lbh (keys); `prefix` says which tensor to read.
uint attn_kv_row(uint j, uint h, uint lbh, out bool prefix) {
    prefix = j < p.L;
    return prefix ? (h * p.L + j) * DV : (lbh * p.S + (j - p.L)) * DV;
}

#ifdef ATTN_TEXEL
// Lane-shared rows (the CPU variant; needs GL_KHR_shader_subgroup_shuffle
// and GL_EXT_control_flow_attributes, enabled by the including shader).
// Lane l of a subgroup of ATTN_SG lanes fetches VECs l, l + SG, ... of a row
// (one vector gather each on lavapipe) and element d of the row is then
// subgroupShuffle(part[d / SG], d % SG): with d a constant after unrolling,
// a register broadcast. Shuffles are only made in uniform control flow.
#define SG ATTN_SG
#define NPART ((DV + SG - 1u) / SG)

// Row j of [prefix; keys] (values if `values`) of head h / local head lbh.
void attn_fetch_kv(uint j, uint h, uint lbh, bool values, out VEC part[NPART]) {
    bool pre;
    const uint r = attn_kv_row(j, h, lbh, pre);
    [[unroll]] for (uint i = 0u; i < NPART; i++) {
        const uint d = min(gl_SubgroupInvocationID + i * SG, DV - 1u);
        if (pre) part[i] = values ? pv_in(r + d) : pk_in(r + d);
        else part[i] = values ? v_in(r + d) : k_in(r + d);
    }
}

#define ATTN_PART(part, d) subgroupShuffle(part[(d) / SG], (d) % SG)
#endif

#endif
