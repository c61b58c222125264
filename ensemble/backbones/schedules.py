"""Learning-rate schedules: a factor of the peak rate per optimizer step, for `LambdaLR`.

Every schedule warms up linearly over `warmup` of the steps (step 0 already trains, at 1/warm of the
peak). After it: `cosine` decays to zero along half a cosine (ens's default, as Hugging Face's
Trainer with `lr_scheduler_type="cosine"`), `linear` decays linearly to zero, `constant` holds the peak,
and `tri-stage` holds the peak for `hold` of the steps, then decays linearly to zero — the wav2vec 2.0
paper's recipe as the background write-up asks for it (warm up 10 %, hold 40 %, decay; the paper's
fairseq version decays exponentially to 5 % of the peak instead).
"""

from __future__ import annotations

import math
from typing import Callable

from ensemble.errors import ConfigError
from ensemble.registry import Registry

Decay = Callable[[float], float]  # progress through the decay phase in [0, 1] → factor in [0, 1]

SCHEDULES: Registry[Decay] = Registry("schedule")
SCHEDULES.add("cosine", lambda t: 0.5 * (1.0 + math.cos(math.pi * t)))
SCHEDULES.add("linear", lambda t: 1.0 - t)
SCHEDULES.add("constant", lambda t: 1.0)
SCHEDULES.add("tri-stage", lambda t: 1.0 - t)  # after its hold phase (see `lr_factor`)


def check_schedule(name: str, warmup: float, hold: float) -> None:
    """Refuse an unknown schedule, or warmup/hold fractions outside [0, 1] or summing past 1."""
    SCHEDULES.get(name)
    if not 0.0 <= warmup <= 1.0:
        raise ConfigError(f"--warmup {warmup:g}: the warm-up is a fraction of the steps, in [0, 1]")
    if not 0.0 <= hold <= 1.0 or warmup + hold > 1.0:
        raise ConfigError(f"--hold {hold:g}: the hold is a fraction of the steps in [0, 1], and warmup + hold "
                          f"must not pass 1 (warmup is {warmup:g})")
    if hold and name != "tri-stage":
        raise ConfigError(f"--hold {hold:g} applies to the tri-stage schedule only (the schedule is {name!r})")


def lr_factor(step: int, total: int, warmup: float, schedule: str = "cosine", hold: float = 0.0) -> float:
    """The multiple of the peak learning rate at optimizer step `step` of `total` (0-based)."""
    decay = SCHEDULES.get(schedule)
    warm = max(1, int(round(warmup * total)))
    if step < warm:
        return (step + 1) / warm
    held = int(round(hold * total)) if schedule == "tri-stage" else 0
    if step < warm + held:
        return 1.0
    progress = (step - warm - held) / max(1, total - warm - held)
    return decay(min(1.0, progress))
