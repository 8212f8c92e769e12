"""Per-study rule configuration: which rule effects differ from the defaults, and why.

Only row-level rules and the volume warning can be changed; file-level rejection and the
reconciliation proof stay blocking for every study (see `DatasetContract.with_effects`).
"""

from __future__ import annotations

from spark_jobs.contracts.model import Effect

# study -> dataset -> rule name -> effect
STUDY_OVERRIDES: dict[str, dict[str, dict[str, Effect]]] = {
    # Example: a legacy study whose CRO sends free-text epochs; keep them, do not warn.
    "LEGACY01": {"ae": {"terminology": Effect.FLAG}},
}
