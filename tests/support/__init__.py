"""What the tests share: fakes at the seams, photo and config writers, the daemon run as a
subprocess, consistency checks. Nothing here imports a test module, and nothing outside
tests/ imports from here (the benchmarks launch the harness and trial runners by module name)."""
