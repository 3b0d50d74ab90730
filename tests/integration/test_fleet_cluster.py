"""Ten gateways on a 3-node NATS cluster (MQTT): the node each is on is killed, every reading
is still delivered (counted per gateway), and a pushed configuration reaches all ten."""

from __future__ import annotations

from pathlib import Path

from tests.support.fleet_cluster import cluster_run


def test_ten_gateways_survive_their_nodes_and_take_a_pushed_configuration(
    tmp_path: Path,
) -> None:
    run = cluster_run(tmp_path, gateways=10)
    summary = run.table()
    for tally in run.gateways:
        assert tally.failovers, f"{tally.gateway} never lost its node\n{summary}"
        assert tally.served == tally.accepted, summary
        assert tally.lost == 0, summary
        assert tally.dropped == 0, summary
    assert {g: (r or {}).get("state") for g, r in run.reports.items()} == {
        f"gw{i:02d}": "in_sync" for i in range(10)
    }, run.reports
    rows = {row["gateway"]: row for row in run.fleet_json}
    assert len(rows) == 10
    assert {(r["state"], r["config_state"], r["config_version"]) for r in rows.values()} == {
        ("online", "in_sync", 1)
    }, run.fleet_table
    assert all(r["devices"] == 2 for r in rows.values()), run.fleet_table
