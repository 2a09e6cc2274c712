"""Run every nb2pipe benchmark: python benchmarks/run.py [--quick]. Exit 1 if a target is missed."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    plan = [("bench_core.py", ["--repeat", "10", "--cli-repeat", "5"] if quick else []),
            ("bench_export.py", ["--repeat", "10", "--cli-repeat", "3"] if quick else []),
            ("bench_runs.py", ["--quick"] if quick else []),
            ("bench_events.py", ["--quick"] if quick else []),
            ("bench_pytest.py", ["--quick"] if quick else []),
            ("bench_lab.py", ["--quick"] if quick else []),
            ("bench_docker.py", ["--quick"] if quick else [])]
    codes = []
    for script, args in plan:
        print(f"== {script}", flush=True)
        codes.append(subprocess.call([sys.executable, str(HERE / script), *args]))
    return 1 if any(codes) else 0


if __name__ == "__main__":
    sys.exit(main())
