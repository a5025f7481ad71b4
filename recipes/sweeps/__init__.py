"""Many runs: grids of runs (`grid`: comparisons and sweeps), their tables
(`report`) and figures (`figures`)."""

__all__ = []
