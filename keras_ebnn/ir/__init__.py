"""IR and reference: the graph IR, the fused blocks, the NumPy executor that defines the semantics."""
