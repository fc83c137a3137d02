"""What every benchmark in benchmarks/ needs besides its workload.

- `common`: paths, `log`, `BenchmarkError`, `free_port`, running a checked command;
- `databases`: a fresh SQLite file or PostgreSQL `bench_*` database (`--database`,
  `--pg-server`, `--pg-database`), dropped again afterwards;
- `app`: the app's `NEWSLETTERS_*` settings for CLI subprocesses, `flask db upgrade` +
  `flask seed`, the app in this process;
- `seeding`: N subscribers (and confirmed subscriptions) in a few set-based statements;
- `smtp`: an SMTP sink on loopback in its own process (Postfix's smtp-sink or ours);
- `measure`: CPU, RSS and the machine's load from /proc, timing a child process;
- `report`: each figure beside its baseline and bar, in one table.

The scripts run as `.venv/bin/python benchmarks/NAME.py`, so `benchmarks/` is on
sys.path and they import this package as `harness`.
"""
