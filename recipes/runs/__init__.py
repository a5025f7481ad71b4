"""What a run leaves on disk: the run directory (`rundir`), its record
(`record`: `config.json` and `summary.json`) and its per-epoch backups
(`backup`)."""

__all__ = []
