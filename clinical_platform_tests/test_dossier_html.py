"""The HTML dossier's content per hop, from a dossier as `asset_dossier` returns it: the
checks with their results, rows quarantined by reason, the files with what ingest did with
them, a column's walk, and a verification that failed. (The browser test opens the pilot's.)"""

from __future__ import annotations

from typing import Any

from clinical_platform.lineage.html import render_html

PARTITION = "S01/2024-01-15"


def dossier(**more: Any) -> dict[str, Any]:
    raw = {
        "asset": "raw_vs",
        "partition": PARTITION,
        "status": "accepted",
        "emr_step_id": "s-1ABC",
        "checks": [{"check": "contract_columns", "effect": "warn", "passed": True}],
        "inputs": [],
        "sources": [{"name": "vs.xpt", "size": 10, "sha256": "ab" * 32}],
    }
    curated = {
        "asset": "curated_vs",
        "partition": PARTITION,
        "status": "accepted",
        "checks": [
            {
                "check": "plausible_range",
                "effect": "quarantine",
                "passed": False,
                "metadata": {"failing_rows": 3, "summary": "3 rows outside the range"},
            },
            {"check": "natural_key", "effect": "quarantine", "passed": True, "metadata": {}},
        ],
        "inputs": [f"raw_vs {PARTITION}"],
    }
    return {
        "delivery": PARTITION,
        "asset": "curated_vs",
        "generated_at": "2026-11-30T08:00:00+00:00",
        "computed_from": [{"partition": PARTITION, "file": "vs.xpt", "sha256": "ab" * 32}],
        "landed_files": [
            {
                "name": "vs.xpt",
                "size": 10,
                "sha256": "ab" * 32,
                "disposition": "accepted",
                "ingested": True,
                "computed_from": True,
            },
            {
                "name": "define.xml",
                "size": 5,
                "sha256": "cd" * 32,
                "disposition": "skipped",
                "ingested": False,
                "computed_from": False,
            },
        ],
        "assets": [curated, raw],
        "verification": {
            "holds": False,
            "summary": f"{PARTITION}: 1 problem(s)",
            "problems": ["file:/lake/landing/vs.xpt: modified (listed in the manifest)"],
        },
        **more,
    }


def test_each_hop_shows_its_checks_and_its_quarantine_by_reason() -> None:
    html = render_html(dossier())
    assert '<p class="verdict bad">S01/2024-01-15: 1 problem(s)</p>' in html
    assert (
        '<li class="bad">file:/lake/landing/vs.xpt: modified (listed in the manifest)</li>' in html
    )
    assert "<h3>Rows quarantined, by reason</h3><ul>\n<li>plausible_range: 3</li>\n</ul>" in html
    assert (
        '<tr><td>plausible_range</td><td>quarantine</td><td><span class="bad">failed</span>'
        "</td><td>3</td><td>3 rows outside the range</td></tr>"
    ) in html
    assert '<td>natural_key</td><td>quarantine</td><td><span class="ok">passed</span>' in html
    assert html.count("Rows quarantined, by reason") == 1  # raw quarantined nothing
    assert "<td>define.xml</td><td>5</td>" in html and "<td>skipped</td><td>no</td>" in html
    assert "<tr><th>emr_step_id</th><td><code>s-1ABC</code></td></tr>" in html
    assert "Column lineage" not in html


def test_a_column_walk_is_drawn_down_to_the_landed_variable() -> None:
    walk = {
        "asset": "curated_vs",
        "column": "VSSTRESN",
        "partition": PARTITION,
        "committed": True,
        "files": [],
        "upstream": [
            {
                "asset": "raw_vs",
                "column": "VSSTRESN",
                "partition": PARTITION,
                "committed": True,
                "files": [{"name": "vs.xpt", "sha256": "ab" * 32}],
                "upstream": [],
            }
        ],
    }
    html = render_html(dossier(column_lineage=walk))
    assert "<h2>Column lineage of <code>curated_vs.VSSTRESN</code></h2>" in html
    assert (
        f"variable <code>VSSTRESN</code> of <code>vs.xpt</code> (sha256 <code>{'ab' * 32}" in html
    )
