"""AdnetDCNv2: modulated deformable convolution with the mask sigmoid fused (DESIGN.md §6)."""
