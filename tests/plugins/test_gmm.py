"""The GMM family on real data: marginals, conditional sampling, bad input, and corrupted model directories.

One mixture is fitted per module on 2,000 rows of UCI Adult (5 components, at most 30 EM iterations) and
shared, read-only, by the tests; tests that damage a model directory work on their own copy.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import gensdk_gmm.plugin
import numpy as np
import pandas as pd
import pytest
from gensdk_gmm import GMMFamily
from safetensors.numpy import load_file, save_file
from threadpoolctl import threadpool_limits

from gensdk.cli.main import run as cli_run
from gensdk.errors import ConfigError, DataError, ModelLoadError, RequestError, UnknownComponentError
from gensdk.family import MANIFEST_NAME
from gensdk.tabular import fingerprint
from gensdk.testing import make_engine
from gensdk.verdicts import Verdict

OPTIONS = {"n_components": 5, "max_iter": 30, "seed": 0, "license": "CC BY 4.0", "data_source": "UCI Adult sample"}
ROWS = 4000  # generated rows per statistical check: the share of a 30% category has sd ~0.007 at this size


@pytest.fixture(scope="module")
def real(adult_sample: pd.DataFrame) -> pd.DataFrame:
    return adult_sample


@pytest.fixture(scope="module")
def model(real: pd.DataFrame) -> GMMFamily:
    # One BLAS thread: EM on a 2,000 x 100 table is all small matrix products, where a thread pool costs more
    # than it saves (several times more on a busy 2-core machine).
    with threadpool_limits(limits=1):
        return GMMFamily(OPTIONS).fit(real)


@pytest.fixture(scope="module")
def saved(model: GMMFamily, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model.save(tmp_path_factory.mktemp("gmm") / "adult-gmm")


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    with make_engine(tmp_path, plugins=[gensdk_gmm.plugin]) as eng:
        yield eng


def generate(engine: Any, model: GMMFamily, **fields: Any) -> pd.DataFrame:
    result = engine.generate(model, n=fields.pop("n", ROWS), seed=fields.pop("seed", 7), **fields)
    assert result.verdict is Verdict.PASS
    return result.table()


# -- marginals, categories, ranges, dtypes ---------------------------------------------------------------------

def test_generated_marginals_are_close_to_the_real_ones(engine: Any, model: GMMFamily, real: pd.DataFrame) -> None:
    fake = generate(engine, model)
    assert len(fake) == ROWS
    assert abs(fake["age"].mean() - real["age"].mean()) < 2.0
    for column in ("sex", "income"):
        real_share = real[column].value_counts(normalize=True)
        fake_share = fake[column].value_counts(normalize=True).reindex(real_share.index, fill_value=0.0)
        assert (fake_share - real_share).abs().max() < 0.05, (column, fake_share, real_share)


def test_generated_values_stay_within_what_training_saw(engine: Any, model: GMMFamily, real: pd.DataFrame) -> None:
    fake = generate(engine, model, seed=8)
    assert list(fake.columns) == list(real.columns)
    assert [str(t) for t in fake.dtypes] == [str(t) for t in real.dtypes]
    for column in real.columns:
        if pd.api.types.is_integer_dtype(real[column]):
            assert fake[column].between(real[column].min(), real[column].max()).all(), column
        else:
            assert set(fake[column]) <= set(real[column]), (column, set(fake[column]) - set(real[column]))
    # a mixture of 5 components still spreads: most categories of a 7-valued column show up
    assert fake["relationship"].nunique() >= 4 and fake["age"].nunique() > 30


def test_micro_batches_add_up_to_the_request(tmp_path: Path, model: GMMFamily) -> None:
    with make_engine(tmp_path, plugins=[gensdk_gmm.plugin], config={"max_batch_size": 300}) as engine:
        result = engine.generate(model, n=1000, seed=3)
    assert [len(o.frame) for o in result.outputs] == [300, 300, 300, 100]
    assert len(result.table()) == 1000
    assert len({o.digest() for o in result.outputs}) == 4  # each micro-batch has its own seed


# -- conditional sampling -------------------------------------------------------------------------------------

def test_conditioning_on_a_category_fixes_it_and_shifts_the_rest(
    engine: Any, model: GMMFamily, real: pd.DataFrame
) -> None:
    rich = generate(engine, model, conditions={"income": ">50K"})
    poor = generate(engine, model, conditions={"income": "<=50K"})
    assert set(rich["income"]) == {">50K"} and set(poor["income"]) == {"<=50K"}
    by_income = real.groupby("income")["education_num"].mean()
    assert by_income[">50K"] - by_income["<=50K"] > 1.5  # what the data says ...
    assert rich["education_num"].mean() - poor["education_num"].mean() > 1.0  # ... and the model follows
    male = real.groupby("income")["sex"].apply(lambda s: (s == "Male").mean())
    assert male[">50K"] > male["<=50K"]
    assert (rich["sex"] == "Male").mean() > (poor["sex"] == "Male").mean() + 0.05


def test_conditioning_on_a_number(engine: Any, model: GMMFamily) -> None:
    young = generate(engine, model, n=2000, conditions={"age": 22})
    older = generate(engine, model, n=2000, conditions={"age": 50})
    assert set(young["age"]) == {22} and set(older["age"]) == {50}
    assert young["age"].dtype == np.int64
    # in the census, 22-year-olds are mostly never married and 50-year-olds mostly are
    assert (young["marital"] == "Never-married").mean() > (older["marital"] == "Never-married").mean() + 0.2


def test_conditioning_on_two_columns(engine: Any, model: GMMFamily) -> None:
    fake = generate(engine, model, n=500, conditions={"sex": "Female", "hr_per_week": 20})
    assert set(fake["sex"]) == {"Female"} and set(fake["hr_per_week"]) == {20}


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        ({"salary": ">50K"}, r"unknown column 'salary'; the table has: age, .*income"),
        ({"income": "rich"}, r"column 'income' has no category 'rich'; known: '<=50K', '>50K'"),
        ({"sex": 1}, r"column 'sex' has no category 1; known: 'Female', 'Male'"),
        ({"age": "thirty"}, r"numeric column 'age' must be a number, not 'thirty'"),
        ({"age": True}, r"numeric column 'age' must be a number"),
    ],
    ids=["unknown-column", "unknown-category", "number-for-category", "text-for-number", "bool-for-number"],
)
def test_bad_conditions_are_request_errors(engine: Any, model: GMMFamily, conditions: dict, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        engine.generate(model, n=5, seed=1, conditions=conditions)


def test_an_unfitted_model_refuses_to_generate(engine: Any) -> None:
    with pytest.raises(RequestError, match="has not been fitted"):
        engine.generate(GMMFamily(), n=5, seed=1)


def test_invalid_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="n_components"):
        GMMFamily({"n_components": 0})
    with pytest.raises(ConfigError, match="n_component"):
        GMMFamily({"n_component": 3})


# -- bad training data ------------------------------------------------------------------------------------------

def _csv(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _numbers_and(column: dict[str, list[Any]], rows: int = 60) -> str:
    frame = pd.DataFrame({"x": np.arange(rows), **{k: (v * rows)[:rows] for k, v in column.items()}})
    return frame.to_csv(index=False)


BAD_CSVS: dict[str, tuple[Callable[[], str | bytes], str]] = {
    "inconsistent-quoting": (lambda: 'name,city\n"Ann","Oslo"\n"Bob","Lima\nCid,Accra\n', "is not a readable CSV"),
    "ragged-rows": (lambda: "a,b\n1,2\n3,4,5,6\n", "is not a readable CSV"),
    "binary-junk": (lambda: bytes(np.random.default_rng(0).integers(128, 256, 4000, dtype=np.uint8)), "is not a readable CSV"),
    "empty": (lambda: "", "is empty"),
    "header-only": (lambda: "age,sex,income\n", r"is empty \(0 rows, 3 columns\)"),
    "nans": (lambda: "a,b\n1,x\n,y\n3,\n4,w\n,v\n", r"missing values in 'a' \(2 rows\), 'b' \(1 rows\)"),
    "mixed-types": (lambda: _numbers_and({"age": ["31", "40", "?", "52"]}), r"column 'age' mixes numbers and text"),
    "identifier": (lambda: _numbers_and({"name": [f"person-{i}" for i in range(600)]}, 600), r"column 'name' has 600 distinct values"),
    "dates": (lambda: _numbers_and({"joined": ["2021-03-01", "2021-04-01", "2022-01-15"]}), r"column 'joined' holds dates"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSVS))
def test_bad_training_data_is_a_data_error(tmp_path: Path, case: str) -> None:
    make, message = BAD_CSVS[case]
    path = _csv(tmp_path / f"{case}.csv", make())
    with pytest.raises(DataError, match=message):
        GMMFamily({"n_components": 2, "max_iter": 5}).fit(path)


@pytest.mark.parametrize("case", ["inconsistent-quoting", "header-only", "nans", "dates"])
def test_train_command_writes_nothing_on_bad_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    make, message = BAD_CSVS[case]
    path = _csv(tmp_path / f"{case}.csv", make())
    out = tmp_path / "model"
    code = cli_run(["train", "gmm", "--data", str(path), "--out", str(out), "--components", "2", "--max-iter", "5"])
    assert code == DataError.exit_code == 2
    assert not out.exists()
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error:"), err
    assert re.search(message, err[0]), err
    assert str(path) in err[0] or case in ("nans", "dates")  # read errors name the file, schema errors the column


def test_mixed_python_types_in_a_frame(real: pd.DataFrame) -> None:
    frame = real[["age", "sex"]].head(100).astype({"sex": object})
    frame.loc[5, "sex"] = 3
    with pytest.raises(DataError, match=r"column 'sex' mixes value types \(int, str\)"):
        GMMFamily({"n_components": 2, "max_iter": 5}).fit(frame)


def test_fewer_rows_than_components(real: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="3 rows cannot fit 5 mixture components"):
        GMMFamily({"n_components": 5, "holdout_fraction": 0}).fit(real.head(3))


# -- the saved directory ----------------------------------------------------------------------------------------

def test_saved_manifest_describes_model_and_data(saved: Path, model: GMMFamily, real: pd.DataFrame) -> None:
    manifest = json.loads((saved / MANIFEST_NAME).read_text())
    assert manifest["family"] == "gmm" and manifest["family_version"] == GMMFamily.version
    assert manifest["schema"] == model.schema.to_json()
    assert [c["name"] for c in manifest["schema"]] == list(real.columns)
    assert manifest["training_data_fingerprint"] == fingerprint(real)
    assert manifest["training_rows"] == len(real)
    assert manifest["license"] == "CC BY 4.0" and manifest["data_source"] == "UCI Adult sample"
    assert manifest["options"]["n_components"] == 5


def test_weights_are_safetensors_only(saved: Path) -> None:
    suffixes = {p.suffix for p in saved.rglob("*") if p.is_file()}
    assert suffixes <= {".json", ".safetensors"}, suffixes
    tensors = load_file(str(saved / "model.safetensors"))
    assert set(tensors) == {"weights", "means", "covariances", "center", "scale"}
    assert tensors["weights"].shape == (5,) and abs(float(tensors["weights"].sum()) - 1.0) < 1e-6


def test_loaded_model_generates_what_the_fitted_one_does(engine: Any, model: GMMFamily, saved: Path) -> None:
    loaded = engine.load_model(saved)
    identity = loaded.identity()
    assert identity["weights_digest"] and identity["license"] == "CC BY 4.0"
    conditions = {"income": ">50K"}
    from_disk = generate(engine, loaded, n=200, conditions=conditions)
    assert from_disk.equals(generate(engine, model, n=200, conditions=conditions))


def test_license_and_data_source_are_optional(tmp_path: Path, real: pd.DataFrame) -> None:
    small = GMMFamily({"n_components": 2, "max_iter": 5}).fit(real[["age", "sex"]])
    manifest = json.loads((small.save(tmp_path / "m") / MANIFEST_NAME).read_text())
    assert manifest["license"] is None and manifest["data_source"] is None


# -- corrupted model directories --------------------------------------------------------------------------------

def _damage_tensor(name: str, value: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], None]:
    def damage(directory: Path) -> None:
        tensors = load_file(str(directory / "model.safetensors"))
        tensors[name] = value(tensors[name])
        save_file(tensors, str(directory / "model.safetensors"))

    return damage


def _drop_tensor(name: str) -> Callable[[Path], None]:
    def damage(directory: Path) -> None:
        tensors = load_file(str(directory / "model.safetensors"))
        del tensors[name]
        save_file(tensors, str(directory / "model.safetensors"))

    return damage


def _edit_manifest(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(directory: Path) -> None:
        manifest = json.loads((directory / MANIFEST_NAME).read_text())
        edit(manifest)
        (directory / MANIFEST_NAME).write_text(json.dumps(manifest))

    return damage


def _truncate(directory: Path) -> None:
    data = (directory / "model.safetensors").read_bytes()
    (directory / "model.safetensors").write_bytes(data[: len(data) // 3])


CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "garbage-manifest": (lambda d: (d / MANIFEST_NAME).write_text("{family: gmm"), r"gensdk_model\.json is corrupted"),
    "manifest-not-an-object": (lambda d: (d / MANIFEST_NAME).write_text("[1, 2]"), r"gensdk_model\.json is corrupted"),
    "manifest-bad-options": (_edit_manifest(lambda m: m.update(options={"n_components": "many"})), r"gensdk_model\.json is corrupted.*n_components"),
    "manifest-bad-schema": (_edit_manifest(lambda m: m.update(schema=[{"nom": "age"}])), r"gensdk_model\.json is corrupted: bad schema"),
    "missing-weights": (lambda d: (d / "model.safetensors").unlink(), r"model\.safetensors is missing"),
    "truncated-weights": (_truncate, r"model\.safetensors is truncated or corrupted"),
    "missing-tensor": (_drop_tensor("covariances"), r"model\.safetensors lacks tensors \['covariances'\]"),
    "wrong-means-shape": (_damage_tensor("means", lambda t: t[:, :-1].copy()), r"model\.safetensors: means has shape"),
    "wrong-weights-shape": (_damage_tensor("weights", lambda t: t[:-1].copy()), r"model\.safetensors: weights has shape \(4,\), expected \(5,\)"),
    "wrong-scale-shape": (_damage_tensor("scale", lambda t: np.ones(2)), r"model\.safetensors: scale has shape \(2,\)"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupted_directories_are_refused_naming_the_file(tmp_path: Path, saved: Path, engine: Any, case: str) -> None:
    damage, message = CORRUPTIONS[case]
    broken = shutil.copytree(saved, tmp_path / case)
    damage(broken)
    with pytest.raises(ModelLoadError, match=message):
        GMMFamily.load(broken)
    with pytest.raises(ModelLoadError, match=message):
        engine.load_model(broken)


def test_missing_manifest(tmp_path: Path, saved: Path, engine: Any) -> None:
    broken = shutil.copytree(saved, tmp_path / "no-manifest")
    (broken / MANIFEST_NAME).unlink()
    with pytest.raises(ModelLoadError, match=r"gensdk_model\.json is missing"):
        GMMFamily.load(broken)
    with pytest.raises(ModelLoadError, match=re.escape(str(broken))):
        engine.load_model(broken)


def test_unknown_family_in_the_manifest(tmp_path: Path, saved: Path, engine: Any) -> None:
    broken = shutil.copytree(saved, tmp_path / "alien")
    _edit_manifest(lambda m: m.update(family="no-such-family"))(broken)
    with pytest.raises(UnknownComponentError, match=r"unknown model family 'no-such-family'.*gmm"):
        engine.load_model(broken)


def test_another_familys_directory(tmp_path: Path, saved: Path) -> None:
    other = shutil.copytree(saved, tmp_path / "mock")
    _edit_manifest(lambda m: m.update(family="mock"))(other)
    with pytest.raises(ModelLoadError, match="holds a 'mock' model, not a gmm model"):
        GMMFamily.load(other)


def test_missing_directory(tmp_path: Path, engine: Any) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        engine.load_model(tmp_path / "nowhere")
    with pytest.raises(ModelLoadError, match="does not exist"):
        GMMFamily.load(tmp_path / "nowhere")
