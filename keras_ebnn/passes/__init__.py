"""Passes over the IR: conv/pool fusion, exact threshold folding, int8 weights, integer-only graphs."""
