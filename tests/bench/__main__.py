"""`make bench`: prints performance figures; it asserts nothing about time."""

from __future__ import annotations

from tests.bench import bench_cycle, bench_dag, bench_sandbox, bench_wave

if __name__ == "__main__":
    bench_sandbox.main()
    print()
    bench_cycle.main()
    print()
    bench_wave.main()
    print()
    bench_dag.main()
