"""The dossier of one asset as a single HTML page an auditor opens without the platform.

Self-contained: inline CSS, the lineage graph drawn as inline SVG, no script and nothing
fetched from elsewhere. Built from `dossier.asset_dossier`, so it says exactly what the JSON
form says: the landed files, every partition the asset was computed from with its record and
checks, rows quarantined by reason, and the verify result when it was generated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from clinical_platform.lineage.dossier import RECORD_FIELDS
from spark_jobs.contracts import Effect
from spark_jobs.contracts.layout import Zone
from spark_jobs.contracts.outputs import every_asset_output

# Columns of the graph, left to right: the landed files, then each zone.
_COLUMNS = (Zone.LANDING, Zone.RAW, Zone.CURATED, Zone.FEATURES)
_ZONES = {o.asset_key: o.zone for o in every_asset_output()}
_NODE_W, _NODE_H, _GAP_X, _GAP_Y, _MARGIN = 200, 28, 70, 12, 12

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #1b1f24; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; } h3 { font-size: 15px; }
table { border-collapse: collapse; margin: 8px 0; }
td, th { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } code { font-size: 12px; }
.ok { color: #1a7f37; } .bad { color: #cf222e; font-weight: 600; }
.verdict { padding: 8px 12px; border-radius: 6px; display: inline-block; }
.verdict.ok { background: #dafbe1; } .verdict.bad { background: #ffebe9; }
svg text { font: 12px ui-monospace, monospace; }
"""


def render_html(dossier: Mapping[str, Any]) -> str:
    """The page for one asset's dossier (`asset_dossier`)."""
    verification = dossier["verification"]
    holds = bool(verification["holds"])
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Audit dossier: {escape(dossier['asset'])} {escape(dossier['delivery'])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Audit dossier: <code>{escape(dossier['asset'])}</code>, delivery "
        f"<code>{escape(dossier['delivery'])}</code></h1>",
        f"<p>Generated at {escape(str(dossier['generated_at']))} from the lake's lineage "
        "records and files.</p>",
        f'<p class="verdict {"ok" if holds else "bad"}">{escape(verification["summary"])}</p>',
    ]
    if verification["problems"]:
        parts.append("<ul>")
        parts += [f'<li class="bad">{escape(p)}</li>' for p in verification["problems"]]
        parts.append("</ul>")
    parts += ["<h2>Lineage, from the landed files</h2>", lineage_svg(dossier)]
    parts += _landed_files(dossier["landed_files"])
    if "column_lineage" in dossier:
        parts += _column_section(dossier["column_lineage"])
    for hop in dossier["assets"]:
        parts += _hop_section(hop)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _column(asset: str) -> int:
    zone = _ZONES.get(asset)
    return _COLUMNS.index(zone) if zone in _COLUMNS else len(_COLUMNS) - 1


def lineage_svg(dossier: Mapping[str, Any]) -> str:
    """The graph as inline SVG: a box per landed file read and per partition, an arrow per
    input."""
    nodes: dict[str, tuple[int, str]] = {}  # id -> (column, label)
    edges: list[tuple[str, str]] = []
    for hop in dossier["assets"]:
        node = f"{hop['asset']} {hop['partition']}"
        nodes[node] = (_column(hop["asset"]), hop["asset"])
        for upstream in hop.get("inputs", []):
            edges.append((upstream, node))
        for source in hop.get("sources", []):
            file_node = f"file {hop['partition']} {source['name']}"
            nodes[file_node] = (0, source["name"])
            edges.append((file_node, node))
    rows: dict[int, list[str]] = {}
    for node, (column, _) in sorted(nodes.items(), key=lambda item: (item[1][1], item[0])):
        rows.setdefault(column, []).append(node)
    place = {
        node: (
            _MARGIN + column * (_NODE_W + _GAP_X),
            _MARGIN + index * (_NODE_H + _GAP_Y),
        )
        for column, members in rows.items()
        for index, node in enumerate(members)
    }
    width = _MARGIN * 2 + len(_COLUMNS) * _NODE_W + (len(_COLUMNS) - 1) * _GAP_X
    height = _MARGIN * 2 + max(len(m) for m in rows.values()) * (_NODE_H + _GAP_Y) if rows else 60
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="lineage graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
        'markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#57606a"/>'
        "</marker></defs>",
    ]
    for upstream, downstream in edges:
        if upstream not in place or downstream not in place:
            continue
        (x1, y1), (x2, y2) = place[upstream], place[downstream]
        svg.append(
            f'<line x1="{x1 + _NODE_W}" y1="{y1 + _NODE_H // 2}" x2="{x2}" '
            f'y2="{y2 + _NODE_H // 2}" stroke="#8c959f" marker-end="url(#arrow)"/>'
        )
    fills = ("#fff8c5", "#ddf4ff", "#dafbe1", "#fbefff")
    for node, (x, y) in place.items():
        column, label = nodes[node]
        svg.append(
            f'<g><title>{escape(node)}</title><rect x="{x}" y="{y}" width="{_NODE_W}" '
            f'height="{_NODE_H}" rx="5" fill="{fills[column]}" stroke="#57606a"/>'
            f'<text x="{x + 8}" y="{y + 18}">{escape(label)}</text></g>'
        )
    svg.append("</svg>")
    return "\n".join(svg)


def _landed_files(files: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = [
        f"<tr><td>{escape(f['name'])}</td><td>{f['size']}</td><td><code>{escape(f['sha256'])}"
        f"</code></td><td>{escape(str(f.get('disposition', '')))}</td>"
        f"<td>{'yes' if f['computed_from'] else 'no'}</td></tr>"
        for f in files
    ]
    return [
        "<h2>Files as landed</h2>",
        "<table><tr><th>file</th><th>bytes</th><th>sha256</th><th>at ingest</th>"
        "<th>computed from</th></tr>",
        *rows,
        "</table>",
    ]


def _column_section(walk: Mapping[str, Any]) -> list[str]:
    """A column's lineage as a nested list, down to the variables of the landed files."""

    def items(hop: Mapping[str, Any]) -> list[str]:
        state = "" if hop["committed"] else ", not committed"
        lines = [
            f"<li><code>{escape(hop['asset'])}.{escape(hop['column'])}</code> "
            f"({escape(hop['partition'])}{state})<ul>"
        ]
        lines += [
            f"<li>variable <code>{escape(hop['column'])}</code> of "
            f"<code>{escape(str(f.get('name')))}</code> (sha256 "
            f"<code>{escape(str(f.get('sha256')))}</code>)</li>"
            for f in hop["files"]
        ]
        for upstream in hop["upstream"]:
            lines += items(upstream)
        return [*lines, "</ul></li>"]

    title = f"{walk['asset']}.{walk['column']}"
    return [
        f"<h2>Column lineage of <code>{escape(title)}</code></h2>",
        "<ul>",
        *items(walk),
        "</ul>",
    ]


_SHOWN = tuple(name for name in RECORD_FIELDS if name != "partition")


def _hop_section(hop: Mapping[str, Any]) -> list[str]:
    lines = [
        f"<h2><code>{escape(hop['asset'])}</code> {escape(hop['partition'])}</h2>",
        "<table>",
    ]
    lines += [
        f"<tr><th>{escape(name)}</th><td><code>{escape(str(hop[name]))}</code></td></tr>"
        for name in _SHOWN
        if name in hop
    ]
    if hop.get("inputs"):
        read = ", ".join(escape(i) for i in hop["inputs"])
        lines.append(f"<tr><th>read</th><td>{read}</td></tr>")
    for source in hop.get("sources", []):
        lines.append(
            f"<tr><th>source</th><td>{escape(source['name'])} ({source.get('size')} bytes, "
            f"sha256 <code>{escape(str(source.get('sha256')))}</code>)</td></tr>"
        )
    lines.append("</table>")
    checks = hop.get("checks", [])
    quarantined = [
        (c["check"], c.get("metadata", {}).get("failing_rows"))
        for c in checks
        if c.get("effect") == Effect.QUARANTINE and c.get("metadata", {}).get("failing_rows")
    ]
    if quarantined:
        lines.append("<h3>Rows quarantined, by reason</h3><ul>")
        lines += [f"<li>{escape(name)}: {count}</li>" for name, count in quarantined]
        lines.append("</ul>")
    if checks:
        lines.append(
            "<h3>Checks</h3><table><tr><th>check</th><th>effect</th><th>result</th>"
            "<th>failing rows</th><th>said</th></tr>"
        )
        for check in checks:
            metadata = check.get("metadata", {})
            said = metadata.get("summary") or metadata.get("reason") or ""
            result = '<span class="ok">passed</span>'
            if not check.get("passed"):
                result = '<span class="bad">failed</span>'
            lines.append(
                f"<tr><td>{escape(check['check'])}</td><td>{escape(str(check.get('effect')))}"
                f"</td><td>{result}</td><td>{metadata.get('failing_rows', '')}</td>"
                f"<td>{escape(str(said))}</td></tr>"
            )
        lines.append("</table>")
    return lines
