"""The pieces of bench/run.py: subprocesses, the project, the raw sequence, rounds, cleanup, report."""
