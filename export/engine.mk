# Engine build rules, included by the top-level Makefile (filled in by the engine-build issue #5).
