// Workgroup reductions through shared memory for the row-wise kernels
// (norms, softmax): a fixed binary tree over the invocations, so the order
// of every sum depends only on the workgroup width, never on timing.
//
// Define VP_RED_WG (the workgroup width, a power of two, equal to VP_WG_X)
// before including. Every invocation of the workgroup must call these
// functions (they contain barriers), with workgroup-uniform control flow.
#ifndef VP_REDUCE_GLSL
#define VP_REDUCE_GLSL

shared vec2 vp_red[VP_RED_WG];

// Both components summed over the workgroup; every invocation gets the sums.
vec2 vp_wg_sum2(vec2 v) {
    uint l = gl_LocalInvocationID.x;
    barrier();  // a previous reduction's readers are done with vp_red
    vp_red[l] = v;
    barrier();
    for (uint s = VP_RED_WG / 2u; s > 0u; s >>= 1) {
        if (l < s) vp_red[l] += vp_red[l + s];
        barrier();
    }
    return vp_red[0];
}

float vp_wg_sum(float v) { return vp_wg_sum2(vec2(v, 0.0)).x; }

float vp_wg_max(float v) {
    uint l = gl_LocalInvocationID.x;
    barrier();
    vp_red[l].x = v;
    barrier();
    for (uint s = VP_RED_WG / 2u; s > 0u; s >>= 1) {
        if (l < s) vp_red[l].x = max(vp_red[l].x, vp_red[l + s].x);
        barrier();
    }
    return vp_red[0].x;
}

#endif
