"""Graph wiring only: each module exports ``build()``, ``builder`` (uncompiled) and ``graph``."""
