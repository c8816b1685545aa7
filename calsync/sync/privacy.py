"""Private appointments reach the CRM as busy time only, unless the administrator allows details.

Exchange marks them Sensitivity=Private; the CRM shows time blocked by someone but must not
show what it is. The flag `details_withheld` tells the CRM why the fields are empty.
"""

from __future__ import annotations

import dataclasses

from calsync.sync.model import Appointment

PRIVATE_SENSITIVITIES = frozenset({"Private"})


def withhold_private_details(appt: Appointment, allow_details: bool) -> Appointment:
    if allow_details or appt.sensitivity not in PRIVATE_SENSITIVITIES:
        return appt
    return dataclasses.replace(
        appt,
        subject=None,
        body=None,
        body_type=None,
        location=None,
        attendees=(),
        details_withheld=True,
    )
