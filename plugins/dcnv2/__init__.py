"""AdnetDCNv2: modulated deformable convolution with the mask sigmoid fused (docs/design.md §6)."""
