"""`make demo`: generate (or take) a delivery, land it, materialize it all, say where to look."""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from pathlib import Path

from clinical_platform import settings
from clinical_platform.definitions import build_definitions
from clinical_platform.generators.sdtm import generate_sdtm
from clinical_platform.lake import LandingError, land_delivery
from clinical_platform.lineage.dossier import write_dossier
from clinical_platform.runs import local_instance, materialize_delivery, select_assets
from spark_jobs.contracts.layout import Delivery, LakeLayout, local_path
from spark_jobs.formats import xport

DEMO_STUDY = settings.DEMO_STUDY
DEMO_DELIVERY_DATE = "2024-01-15"  # fixed, so re-running the demo replaces the same partition


def study_of(folder: Path) -> str:
    """STUDYID of a delivery folder, read from the first row of its DM file."""
    override = os.environ.get("DEMO_STUDY")
    if override:
        return override
    dm = folder / "dm.xpt"
    if not dm.exists():
        raise LandingError(f"{folder}: no dm.xpt to read STUDYID from; set DEMO_STUDY")
    data = dm.read_bytes()
    try:
        layout = xport.inspect(data)
    except xport.XportFormatError as error:
        raise LandingError(f"{dm}: {error}") from None
    names = [v.name for v in layout.header.variables]
    first = next(xport.iter_rows(data, layout), None)
    if "STUDYID" not in names or first is None:
        raise LandingError(f"{dm}: no STUDYID value; set DEMO_STUDY")
    return str(first[names.index("STUDYID")])


def run_demo(subjects: int, delivery_folder: str | None) -> int:
    started = time.monotonic()
    if not os.environ.get(settings.PSEUDONYM_KEY_VAR):
        # Only the generated study's features may use it (Pseudonymization.key_env_for).
        os.environ.setdefault(settings.DEMO_PSEUDONYM_KEY_VAR, settings.DEMO_PSEUDONYM_KEY)
        print(
            f"Using the demo pseudonym key for the generated study {settings.DEMO_STUDY} only "
            f"({settings.PSEUDONYM_KEY_VAR} is not set); other studies need their own key."
        )
    layout = LakeLayout(settings.lake_uri())
    if delivery_folder:
        folder = Path(delivery_folder).resolve()
        delivery = Delivery(
            study_of(folder),
            os.environ.get("DEMO_DELIVERY_DATE") or dt.datetime.now(dt.UTC).date().isoformat(),
        )
        print(f"Using the delivery in {folder} as {delivery.key}")
    else:
        folder = Path(".demo", DEMO_STUDY).resolve()
        delivery = Delivery(DEMO_STUDY, DEMO_DELIVERY_DATE)
        print(f"Generating a synthetic SDTM delivery of {subjects} subjects in {folder}")
        for generated in generate_sdtm(folder, subjects, study=DEMO_STUDY):
            print(f"  {generated.name:<10} {generated.rows:>8} rows")

    landed = land_delivery(folder, delivery, layout)
    print(
        f"Landed {len(landed.files)} files in {landed.uri}"
        + (" (already there, same files)" if landed.already_landed else "")
    )

    defs = build_definitions(lake_uri=layout.root)
    selection = select_assets(defs, [])
    print(
        f"Materializing {len(selection)} assets of {delivery.key} through Spark "
        "(three Spark applications: raw, curated, features) ..."
    )
    outcome = materialize_delivery(defs, delivery, local_instance(), selection)

    lake_dir = Path(local_path(layout.root))
    dossier_path = Path(write_dossier(layout, delivery))

    print()
    print(f"{'asset':<26} {'rows':>8}  status")
    for key in selection:
        name = key.to_user_string()
        rows = outcome.rows.get(name)
        print(
            f"{name:<26} {'' if rows is None else rows:>8}  "
            f"{outcome.statuses.get(name, 'not materialized')}"
        )
    for problem in outcome.problems:
        print(f"  ! {problem}", file=sys.stderr)
    minutes, seconds = divmod(int(time.monotonic() - started), 60)
    print()
    print(
        f"Demo {'finished' if outcome.success else 'FAILED'} in {minutes}m{seconds:02d}s "
        f"(run {outcome.run_id})."
    )
    print(f"  Lake:          {lake_dir}  (landing/ raw/ curated/ quarantine/ features/)")
    print(f"  Audit dossier: {dossier_path}")
    print(
        f"                 or: clinical-platform dossier --study {delivery.study} "
        f"--delivery {delivery.delivery}"
    )
    print(
        f"  Verify:        clinical-platform verify --study {delivery.study} "
        f"--delivery {delivery.delivery}"
    )
    print("  Dagster UI:    make ui, then open http://127.0.0.1:3000")
    return 0 if outcome.success else 1
