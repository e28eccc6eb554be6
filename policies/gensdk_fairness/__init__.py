"""gensdk_fairness: bias audits with fairlearn's metric definitions, for tables, text and images.

* Tables (`audit_tables`): group representation, selection rates, demographic parity and the equalized odds of
  classifiers trained on real vs synthetic rows, with bootstrap intervals and threshold checks.
* Fairness-aware generation (`fair_generate`): table samples whose parity gap is within a target, with the
  before/after figures and the fidelity cost.
* Text (`counterfactual_audit`, `audit_texts`): completions of prompts that differ only in the group they name,
  scored by pluggable scorers, with intervals and permutation p-values.
* Images (`audit_images`): attribute shares from a pluggable classifier against a target distribution.
* In the engine: the windowed policies `fairness-table`, `fairness-text`, `fairness-image`; on files:
  `gensdk audit bias ...`; for readers: `render_html` / `write_html`.
* Fast group metrics (`group_metrics`, `demographic_parity_difference`, ...) that agree with fairlearn.

Importing this package imports numpy and pydantic only; fairlearn, scikit-learn, scipy, matplotlib, VADER and
torch are imported by the functions that use them.
"""

from gensdk_fairness.groups import Groups, binarize, encode_groups
from gensdk_fairness.metrics import (
    GroupMetrics,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    equalized_odds_ratio,
    group_metrics,
)
from gensdk_fairness.images import AttributeClassifier, ClassifierError, DigitsClassifier, ImageAudit, audit_images
from gensdk_fairness.prompts import AuditPrompt, PromptSet, builtin_prompts, load_bold
from gensdk_fairness.report import render_html, write_html
from gensdk_fairness.sampling import FairSample, fair_generate
from gensdk_fairness.scorers import Scorer, ScorerError, resolve_scorers
from gensdk_fairness.tables import TableAudit, TableThresholds, audit_tables
from gensdk_fairness.text import TextAudit, TextThresholds, audit_texts, counterfactual_audit
from gensdk_fairness.window import ImageWindowPolicy, TableWindowPolicy, TextWindowPolicy

__all__ = [
    "AttributeClassifier",
    "AuditPrompt",
    "ClassifierError",
    "DigitsClassifier",
    "FairSample",
    "GroupMetrics",
    "Groups",
    "ImageAudit",
    "ImageWindowPolicy",
    "PromptSet",
    "Scorer",
    "ScorerError",
    "TableAudit",
    "TableThresholds",
    "TableWindowPolicy",
    "TextAudit",
    "TextThresholds",
    "TextWindowPolicy",
    "audit_images",
    "audit_tables",
    "audit_texts",
    "binarize",
    "builtin_prompts",
    "counterfactual_audit",
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "encode_groups",
    "equalized_odds_difference",
    "equalized_odds_ratio",
    "fair_generate",
    "group_metrics",
    "load_bold",
    "render_html",
    "resolve_scorers",
    "write_html",
]
