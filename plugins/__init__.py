"""TensorRT plugins of the ADNet pipeline and their CPU twins."""
