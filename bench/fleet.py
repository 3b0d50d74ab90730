"""Fleet on a broker cluster: N gateways on a 3-node NATS cluster, the node each is on killed,
readings counted per gateway, failover times, a configuration pushed to all, and the
``gateway fleet`` listing at the end (tests/support/fleet_cluster.py, as the test runs it).

    python -m bench.fleet --gateways 10

Reuses the integration tests' process helpers (tests/support): run it from the repository.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tests.support.fleet_cluster import cluster_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as workdir:
        run = cluster_run(Path(workdir), args.gateways)
    print(run.table())
    states = {g: (r or {}).get("state") for g, r in run.reports.items()}
    print(f"\npushed configuration: {states}")
    print(f"\n$ gateway fleet --broker <node 3>\n{run.fleet_table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
