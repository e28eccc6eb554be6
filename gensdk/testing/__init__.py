"""Test doubles and the model-family conformance kit, shipped with the library for plugin authors.

    from gensdk.testing import MockFamily, KeywordPolicy, make_engine

    engine = make_engine(tmp_path, policies=[KeywordPolicy({"words": ["secret"]})])
    model = MockFamily().enqueue("a secret", "fine")
    result = engine.generate(model, n=2, seed=1)
    assert result.texts == ["fine"]

`make_engine` never picks up whatever happens to be installed: it loads only the plugins you pass.
"""

from gensdk.testing.doubles import (
    InMemoryFamily,
    KeywordPolicy,
    MarkerProcessor,
    MockFamily,
    NoopPolicy,
    ProcessorPolicy,
    RaisingPolicy,
    RecordingPolicy,
    SlowPolicy,
)
from gensdk.testing.helpers import make_engine

__all__ = [
    "InMemoryFamily",
    "KeywordPolicy",
    "MarkerProcessor",
    "MockFamily",
    "NoopPolicy",
    "ProcessorPolicy",
    "RaisingPolicy",
    "RecordingPolicy",
    "SlowPolicy",
    "make_engine",
]
