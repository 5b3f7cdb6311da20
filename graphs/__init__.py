"""Graph wiring: each module exports ``builder`` (uncompiled) and ``graph`` (compiled)."""
