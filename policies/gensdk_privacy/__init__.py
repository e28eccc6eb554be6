"""gensdk_privacy: privacy policies for gensdk.

* ``pii`` (`PIIPolicy`): e-mail addresses, phone numbers, payment cards, IBANs, US SSNs, IP addresses and person
  names in prompts and generated text; redacted, masked, hashed (HMAC) or blocked per entity type.
* ``memorisation`` (`MemorisationPolicy`): generated table rows too close to a training record are replaced,
  dropped or blocked, judged against a held-out sample (`gensdk.reference.TrainingReference`).
* ``replay`` (`ReplayPolicy`): generated text that repeats a long verbatim span of the training text.

`gensdk privacy report DIR` measures a trained table generator: distances to closest records and a
membership-inference AUC (`report.privacy_report`).
"""

from gensdk_privacy.memorisation import MemorisationPolicy
from gensdk_privacy.pii import PIIPolicy, PIIScanner, StreamingPIIScanner
from gensdk_privacy.replay import ReplayIndex, ReplayPolicy  # noqa: E402

__all__ = ["MemorisationPolicy", "PIIPolicy", "PIIScanner", "ReplayIndex", "ReplayPolicy", "StreamingPIIScanner"]
