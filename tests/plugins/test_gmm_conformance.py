"""The GMM family through the conformance kit every family must pass."""

from __future__ import annotations

import gensdk_gmm.plugin
from gensdk_gmm import GMMFamily
from threadpoolctl import threadpool_limits

from gensdk.testing.conformance import FamilyConformance


class TestGMMConformance(FamilyConformance):
    family = GMMFamily
    plugin = gensdk_gmm.plugin
    request = {"n": 25}

    def make_model(self) -> GMMFamily:
        from gensdk.datasets import load_adult

        table = load_adult().sample(1000, random_state=1).reset_index(drop=True)
        columns = ["age", "education_num", "hr_per_week", "sex", "race", "income"]
        with threadpool_limits(limits=1):  # small matrices: a BLAS thread pool only adds overhead
            return GMMFamily({"n_components": 3, "max_iter": 30, "seed": 0}).fit(table[columns])
