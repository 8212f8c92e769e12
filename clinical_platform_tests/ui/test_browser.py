"""The Dagster UI in a real browser: headless Chromium clicks through `dagster dev`.

A user on a fresh instance opens the asset graph, materializes the raw stage of one delivery
and backfills it for two more, then a CRO drops a fourth delivery into landing and the landing
sensor's run materializes every stage of it; the user reads an asset's partitions, checks and
lineage. Every
step is a click; the assertions are on what the pages show. Screenshots of each page are saved
in `.artifacts/browser/<test>/` at the repository root (`.artifacts/` ignores itself in git),
beside `dagster-dev.log`, the server's output.

Debian's `chromium` drives the pages (Playwright's own browser download is not used): absent,
the test skips, or fails when `CI` is set.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Locator, Page, Route, expect, sync_playwright

from clinical_platform.clinical.assets import CLINICAL_ASSETS
from clinical_platform.clinical.sensors import DELIVERY_TAG, ENTRY_TAG, SENSOR_NAME
from clinical_platform.generators.sdtm import generate_sdtm
from clinical_platform.lineage.dossier import asset_dossier
from clinical_platform.lineage.html import render_html
from clinical_platform.runs import register_delivery
from clinical_platform_tests.conftest import PROJECT_ROOT, TEST_PSEUDONYM_KEY, PilotRun
from clinical_platform_tests.helpers import land, lineage
from spark_jobs.contracts.layout import Delivery, LakeLayout
from spark_jobs.contracts.outputs import RAW_OUTPUTS

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = Path("/usr/lib/chromium/chromium")  # /usr/bin/chromium is a wrapper that warns first
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
ARTIFACTS = PROJECT_ROOT / ".artifacts"
SINGLE = Delivery("SYNTH01", "2024-03-01")
BACKFILLED = (Delivery("SYNTH01", "2024-03-02"), Delivery("SYNTH01", "2024-03-03"))
SENSED = Delivery("SYNTH01", "2024-03-04")  # dropped into landing; the sensor runs it
PROFILE = "features_subject_profile"
# One subject per delivery keeps Spark's time low. Different seeds make different files, which
# `land` requires of two deliveries.
SEEDS = {SINGLE: 20240115, BACKFILLED[0]: 2, BACKFILLED[1]: 4, SENSED: 6}
RUN_TIMEOUT_MS = 360_000  # a run of all three stages takes about two minutes on 2 cores


@dataclass(frozen=True)
class DagsterUi:
    url: str
    home: Path
    lake: Path


class Screenshots:
    """Numbered PNGs of the pages, in the order the test saw them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.taken = 0

    def take(self, page: Page, name: str) -> None:
        self.taken += 1
        page.screenshot(path=self.folder / f"{self.taken:02d}-{name}.png")

    def record(self, name: str, measured: object) -> None:
        """A measurement taken on the page, beside the screenshots (appended per call)."""
        with (self.folder / f"{name}.jsonl").open("a") as out:
            out.write(json.dumps(measured) + "\n")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    message = f"{CHROMIUM} not found; install Debian's chromium: apt-get install -y chromium"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def artifacts_root() -> Path:
    folder = ARTIFACTS / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / ".gitignore").write_text("# screenshots and logs of the browser tests\n*\n")
    return folder


@pytest.fixture
def screenshots(artifacts_root: Path, request: pytest.FixtureRequest) -> Screenshots:
    folder = artifacts_root / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    print(f"screenshots: {folder}")
    return Screenshots(folder)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=5):
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                raise AssertionError(
                    f"dagster dev did not come up; its log ends:\n{tail}"
                ) from None
            time.sleep(1)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C for the whole process group, as in a terminal; killed if it lingers."""
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def dagster_ui(
    chromium: Path, artifacts_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DagsterUi]:
    """`dagster dev` as `make ui` starts it, on a free port, a fresh instance and an empty lake."""
    base = tmp_path_factory.mktemp("browser")
    home, lake = base / "dagster_home", base / "lake"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "CLINICAL_LAKE_URI": str(lake),
        "CLINICAL_PSEUDONYM_KEY": TEST_PSEUDONYM_KEY,
    }
    dagster = Path(sys.executable).parent / "dagster"
    log = artifacts_root / "dagster-dev.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_serving(url, process, log)
            yield DagsterUi(url, home, lake)
        finally:
            stop(process)


@pytest.fixture
def page(chromium: Path, screenshots: Screenshots) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        context.set_default_timeout(30_000)
        page = context.new_page()
        # A fresh instance greets the first visitor with a community pop-up over every page.
        page.add_locator_handler(
            page.get_by_role("button", name="Skip", exact=True), lambda skip: skip.click()
        )
        try:
            yield page
        finally:
            with contextlib.suppress(PlaywrightError):  # never hide the test's own error
                page.screenshot(path=screenshots.folder / "last-page.png")
            browser.close()


def visible(locator: Locator) -> Locator:
    """The UI keeps hidden copies of menus and of truncated labels: only the one shown."""
    return locator.filter(visible=True).first


def nav(page: Page, name: str) -> None:
    """A page of the left-hand navigation (its links are named after their icons too)."""
    links = page.get_by_role("navigation").get_by_role("link")
    visible(links.filter(has_text=re.compile(f"^{name}$"))).click()


def generated(ui: DagsterUi, delivery: Delivery) -> Path:
    folder = ui.home.parent / "deliveries" / delivery.delivery
    generate_sdtm(folder, 1, study=delivery.study, seed=SEEDS[delivery])
    return folder


def land_deliveries(ui: DagsterUi, deliveries: Sequence[Delivery]) -> None:
    """Generate, land and register deliveries as `clinical-platform land` does."""
    instance = dg.DagsterInstance.from_config(str(ui.home))
    try:
        for delivery in deliveries:
            land(generated(ui, delivery), delivery, ui.lake)
            register_delivery(instance, delivery)
    finally:
        instance.dispose()


def landing_sensor_switch(page: Page) -> tuple[Locator, Locator]:
    """The landing sensor's on/off switch on the Automation page: (its label, its checkbox)."""
    nav(page, "Automation")
    row = visible(page.locator("[data-index]").filter(has_text=SENSOR_NAME))
    return row.locator("label").last, row.get_by_role("checkbox").last


def switch_landing_sensor(page: Page, running: bool) -> None:
    """Turn the landing sensor off (it starts running with the instance) or on, by its switch."""
    label, switch = landing_sensor_switch(page)
    # Unchecked is also how the switch looks until the sensor's state has loaded.
    expect(switch).to_be_checked(checked=not running)
    mutation = "StartSensor" if running else "StopRunningSensor"
    with page.expect_response(lambda r: mutation in (r.request.post_data or "")) as done:
        label.click()
    status = "RUNNING" if running else "STOPPED"
    assert f'"status":"{status}"' in done.value.text(), done.value.text()
    expect(switch).to_be_checked(checked=running)


def drop_delivery_for_the_sensor(ui: DagsterUi, delivery: Delivery) -> str:
    """A CRO drops a delivery (files, then its manifest) into landing; nobody registers it.
    The landing sensor, running since the instance started, must start one run for it."""
    land(generated(ui, delivery), delivery, ui.lake)
    instance = dg.DagsterInstance.from_config(str(ui.home))
    try:
        deadline = time.monotonic() + 180  # the daemon ticks the sensor every 30 s
        runs: Sequence[dg.DagsterRun] = []
        while not runs and time.monotonic() < deadline:
            time.sleep(2)
            runs = instance.get_runs(filters=dg.RunsFilter(tags={DELIVERY_TAG: delivery.key}))
        assert len(runs) == 1, f"the landing sensor started {len(runs)} runs for {delivery.key}"
        run = runs[0]
    finally:
        instance.dispose()
    assert run.tags[ENTRY_TAG] == "sensor" and run.tags["dagster/partition"] == delivery.key
    return run.run_id


def open_asset_graph(page: Page) -> None:
    nav(page, "Lineage")
    # The graph is empty for a moment before the assets load: wait for a group to be drawn.
    expect(visible(page.locator('[data-tooltip="raw"]'))).to_be_visible()


# What a partition chip shows of its key: Dagster 1.13 draws each chip at most 120 px wide
# (TagSelector's default tag), the key cut in the middle to fit, the whole key in its title.
MEASURE_CHIP = """el => {
    const key = el.getAttribute('title');
    const context = document.createElement('canvas').getContext('2d');
    context.font = getComputedStyle(el).font;
    const width = el.getBoundingClientRect().width;
    const perCharacter = context.measureText(key).width / key.length;
    // The first line is what is drawn; a hidden copy of the whole key follows it.
    return {key: key, shown: el.innerText.split('\\n')[0], width_px: Math.round(width),
            key_px: Math.round(context.measureText(key).width),
            characters_that_fit: Math.floor(width / perCharacter)};
}"""


def choose_partitions(
    page: Page, dialog: Locator, deliveries: Sequence[Delivery], shots: Screenshots
) -> None:
    dialog.get_by_text("Select a partition or create one").click()
    for delivery in deliveries:
        visible(page.get_by_text(delivery.key, exact=True)).click()
    page.keyboard.press("Escape")
    # Each chosen key is a chip: measured, and its title is the whole key (shown on hover).
    chips = []
    for delivery in deliveries:
        chip = visible(dialog.locator(f'[title="{delivery.key}"]'))
        expect(chip).to_be_visible()
        chips.append(chip.evaluate(MEASURE_CHIP))
    shots.record("partition-chips", chips)
    for chip in chips:
        head, cut, tail = str(chip["shown"]).partition("…")
        whole = not cut and chip["shown"] == chip["key"]
        assert whole or (chip["key"].startswith(head) and chip["key"].endswith(tail)), chip
        assert whole == (chip["key_px"] <= chip["width_px"]), chip


def materialize_raw(page: Page, deliveries: Sequence[Delivery], shots: Screenshots) -> str:
    """Right-click the raw group in the graph, "Materialize assets", choose partitions, launch:
    one run for one partition, a backfill for several. Returns the run's or backfill's id."""
    visible(page.locator('[data-tooltip="raw"]')).click(button="right")
    visible(page.get_by_role("menuitem", name="Materialize assets")).click()
    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
    choose_partitions(page, dialog, deliveries, shots)
    if len(deliveries) == 1:
        shots.take(page, "materialize-dialog")
        dialog.get_by_role("button", name="Launch 1 run").click()
        toast = visible(page.get_by_text(re.compile(r"^Launched run \w+$")))
    else:
        shots.take(page, "backfill-dialog")
        dialog.get_by_role("button", name="Launch backfill").click()
        toast = visible(page.get_by_text(re.compile(r"^Created backfill \w+$")))
    return toast.inner_text().split()[-1]


def wait_for_run_success(page: Page, run_id: str) -> None:
    """On the Runs list, which polls lightly: a run's own page redraws its live timeline all
    along, and that Chromium's work slowed the Spark jobs of a two-core machine by half."""
    nav(page, "Runs")
    row = page.locator("[data-index]").filter(has_text=run_id)
    expect(visible(row.get_by_text("Success", exact=True))).to_be_visible(timeout=RUN_TIMEOUT_MS)
    visible(row.get_by_role("link", name=run_id)).click()


def open_backfill(page: Page, backfill_id: str) -> None:
    nav(page, "Runs")
    visible(page.get_by_text("Backfills", exact=True)).click()
    visible(page.get_by_role("link", name=backfill_id)).click()


def open_asset_tab(page: Page, asset: str, tab: str) -> None:
    nav(page, "Catalog")
    visible(page.get_by_role("link", name=asset)).click()
    page.get_by_role("tab", name=tab, exact=True).click()


def expected_checks(asset: str) -> list[str]:
    key = dg.AssetKey(asset)
    return sorted(s.name for a in CLINICAL_ASSETS for s in a.check_specs if s.asset_key == key)


def test_sensor_materialize_backfill_checks_and_lineage_by_clicking(
    page: Page, dagster_ui: DagsterUi, screenshots: Screenshots
) -> None:
    page.goto(dagster_ui.url)
    sensed_run = drop_delivery_for_the_sensor(dagster_ui, SENSED)
    # Deliveries landed by hand from here on are run by clicking, not by the sensor.
    switch_landing_sensor(page, running=False)
    land_deliveries(dagster_ui, [SINGLE, *BACKFILLED])
    page.reload()  # the UI caches the partition list: load the one that has the new keys

    open_asset_graph(page)
    screenshots.take(page, "asset-graph")
    # The backfill first: the daemon picks it up on its next pass, up to 30 s later.
    backfill_id = materialize_raw(page, BACKFILLED, screenshots)
    run_id = materialize_raw(page, [SINGLE], screenshots)
    wait_for_run_success(page, run_id)
    expect(visible(page.get_by_text(f"partition: {SINGLE.key}", exact=True))).to_be_visible()
    expect(visible(page.get_by_text("RUN_SUCCESS", exact=True))).to_be_visible()
    screenshots.take(page, "run-success")

    open_backfill(page, backfill_id)
    for delivery in BACKFILLED:
        expect(visible(page.get_by_text(delivery.key, exact=True))).to_be_visible()
    status = page.locator('[data-tooltip="Succeeded"]')  # "Succeeded" is a column title too
    expect(visible(status)).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(page.get_by_text("100% completed", exact=True)).to_have_count(len(RAW_OUTPUTS))
    screenshots.take(page, "backfill-succeeded")

    wait_for_run_success(page, sensed_run[:8])  # the Runs list shows the short id
    expect(visible(page.get_by_text(f"partition: {SENSED.key}", exact=True))).to_be_visible()
    expect(visible(page.get_by_text("RUN_SUCCESS", exact=True))).to_be_visible()
    screenshots.take(page, "sensor-run-success")
    assert lineage(dagster_ui.lake, "curated", "dm", SENSED)["status"] == "accepted"
    assert lineage(dagster_ui.lake, "curated", "dm", SENSED)["run_id"] == sensed_run

    open_asset_tab(page, "curated_dm", "Partitions")
    expect(visible(page.get_by_text("Materialized (1)", exact=True))).to_be_visible()
    expect(visible(page.get_by_text("Missing (3)", exact=True))).to_be_visible()
    visible(page.get_by_text(SENSED.key, exact=True)).click()
    expect(visible(page.get_by_text("accepted", exact=True))).to_be_visible()
    screenshots.take(page, "curated-dm-partition")

    page.get_by_role("tab", name="Checks", exact=True).click()
    names = expected_checks("curated_dm")
    expect(visible(page.get_by_text(f"Checks ({len(names)})", exact=True))).to_be_visible()
    for name in names:
        expect(visible(page.get_by_text(name, exact=True))).to_be_visible()
    succeeded = page.get_by_text("Succeeded", exact=True).filter(visible=True)
    expect(succeeded).to_have_count(len(names))
    screenshots.take(page, "curated-dm-checks")

    page.get_by_role("tab", name="Lineage", exact=True).click()
    for neighbour in ("raw_dm", "features_subject_profile"):
        expect(visible(page.get_by_text(neighbour, exact=True))).to_be_visible()
    screenshots.take(page, "curated-dm-lineage")

    open_asset_tab(page, "raw_dm", "Partitions")
    expect(visible(page.get_by_text("Materialized (4)", exact=True))).to_be_visible()
    screenshots.take(page, "raw-dm-partitions")


def test_the_html_dossier_opens_offline_and_draws_the_lineage_graph(
    page: Page, pilot_run: PilotRun, screenshots: Screenshots
) -> None:
    """One self-contained file: opened from disk with every network request refused, it
    draws the graph from the landed files to the feature table and says the pilot verifies."""
    found = asset_dossier(LakeLayout(str(pilot_run.lake)), pilot_run.delivery, PROFILE)
    html = render_html(found)
    assert "<script" not in html and " src=" not in html and "<link" not in html
    dossier = screenshots.folder / "dossier.html"
    dossier.write_text(html)
    requested: list[str] = []

    def refuse(route: Route) -> None:
        requested.append(route.request.url)
        route.abort()

    page.route(re.compile(r"^(?!file:).*"), refuse)
    page.goto(dossier.as_uri())
    graph = page.locator('svg[aria-label="lineage graph"]')
    expect(graph).to_be_visible()
    for label in ("vs.xpt", "lbhe.xpt", "raw_lb", "curated_vs", PROFILE):
        expect(graph.locator("text", has_text=re.compile(f"^{label}$"))).to_have_count(1)
    expect(graph.locator("line")).to_have_count(len(graph_edges(found)))
    expect(page.get_by_text("all unchanged, chain intact")).to_be_visible()
    screenshots.take(page, "html-dossier")  # the top: verdict and graph
    page.screenshot(path=screenshots.folder / "html-dossier-whole.png", full_page=True)
    assert requested == []


def graph_edges(found: dict[str, Any]) -> list[tuple[str, str]]:
    """Each input and each source file of every partition in the dossier: one arrow each."""
    return [
        (upstream, hop["asset"])
        for hop in found["assets"]
        for upstream in [*hop.get("inputs", []), *[s["name"] for s in hop.get("sources", [])]]
    ]
