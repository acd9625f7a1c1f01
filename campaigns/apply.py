"""A campaign's measured save rate written to the offer settings (`churn campaign report
--apply`): refused while the campaign has not shown that the calls save anyone."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from campaigns.report import CampaignReport
from scoring.settings import Settings, write_settings


class ApplyError(ValueError):
    """No save rate to apply, or one whose interval includes 0 (without `force`)."""


def apply_save_rate(settings: Settings, rep: CampaignReport, campaign_id: str,
                    force: bool = False) -> dict:
    """Write the suggested save rate to mlruns/settings.toml ([offer] save_rate), keeping what
    else the file holds. Refused while the save rate's interval includes 0 (a 0 would stop every
    profit cut), unless `force`. Returns the path, the rate and a sentence for people."""
    s = rep.suggested_save_rate
    if not s.known:
        raise ApplyError("no save rate to apply yet (needs churn from the data in both arms, "
                         "and some churn in the control arm)")
    if not force and not s.low > 0:
        raise ApplyError(f"the measured save rate {s.value:.2f} has the interval "
                         f"[{s.low:.2f}, {s.high:.2f}], which includes 0: this campaign has not "
                         "shown that the calls save anyone, so the offer settings are left as "
                         "they are (--force writes it anyway)")
    why = (f"offer.save_rate from campaign {campaign_id}: {s.value:.4f} "
           f"[{s.low:.4f}, {s.high:.4f}] at {100 * rep.level:g}%, "
           f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    try:
        path = write_settings(settings.home, {"offer": {"save_rate": round(s.value, 4)}},
                              "campaign report --apply", why)
    except ValueError as exc:
        raise ApplyError(str(exc)) from None
    message = (f"applied: offer.save_rate = {s.value:.4f} written to {path} (churn score, train "
               "and a restarted service read it)")
    if os.environ.get("CHURN_OFFER__SAVE_RATE"):
        message += "; CHURN_OFFER__SAVE_RATE is set in this environment and overrides it"
    return {"path": str(path), "save_rate": s.value, "message": message}
