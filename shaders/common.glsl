// Shared by every kernel.
//
// Kernels take their workgroup width from specialization constant 0 and
// read it through VP_WG_X, not gl_WorkGroupSize: Mesa 22's lavapipe leaves
// gl_WorkGroupSize at the declared default when local_size_x_id is used.
#ifndef VP_COMMON_GLSL
#define VP_COMMON_GLSL

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint VP_WG_X = 64;

// The flat invocation index over a 2-D grid of workgroups (a 1-D grid is
// limited to maxComputeWorkGroupCount[0], often 65535, so long vectors
// spill into y).
uint vp_flat_index() {
    uint group = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    return group * VP_WG_X + gl_LocalInvocationID.x;
}

#endif
