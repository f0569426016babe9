"""Tests for the lung-cancer lesson in `0.ml-example/`: its two modules and the notebook itself.

The modules are loaded from their files (the notebook imports them from its own folder,
not from the package). Expected results table: `tests/fixtures/ml_example_results.csv`,
written by `build_results_table` (regeneration command in `0.ml-example/README.md`).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import Pipeline

REPO = Path(__file__).resolve().parents[1]
LESSON = REPO / "0.ml-example"
DATA = LESSON / "dataset" / "survey_lung_cancer.csv"
EXPECTED = REPO / "tests" / "fixtures" / "ml_example_results.csv"
FIGURES = ["class_balance", "age_by_class", "symptom_prevalence", "correlation_heatmap", "cv_roc_auc",
           "threshold_tradeoff", "roc_curves", "pr_curves_yes", "pr_curves_no", "confusion_matrices",
           "calibration", "permutation_importance"]


def _load(name: str, filename: str):
    spec = importlib.util.spec_from_file_location(name, LESSON / filename)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rf = _load("ml_example_results_functions", "results_functions.py")
gr = _load("ml_example_graphics", "graphics.py")

# The first five data rows of the real CSV, header spelling kept (trailing spaces included).
RAW_HEADER = ("GENDER,AGE,SMOKING,YELLOW_FINGERS,ANXIETY,PEER_PRESSURE,CHRONIC DISEASE,FATIGUE ,ALLERGY ,"
              "WHEEZING,ALCOHOL CONSUMING,COUGHING,SHORTNESS OF BREATH,SWALLOWING DIFFICULTY,CHEST PAIN,LUNG_CANCER")
RAW_ROWS = ["M,69,1,2,2,1,1,2,1,2,2,2,2,2,2,YES", "M,74,2,1,1,1,2,2,2,1,1,1,2,2,2,YES",
            "F,59,1,1,1,2,1,2,1,2,1,2,2,1,2,NO", "M,63,2,2,2,1,1,1,1,1,2,1,1,2,2,NO",
            "F,63,1,2,1,1,1,1,1,2,1,2,2,1,1,NO"]


def _write_csv(tmp_path, rows, name="survey.csv") -> Path:
    path = tmp_path / name
    path.write_text("\r\n".join([RAW_HEADER, *rows]), encoding="utf-8")  # CRLF like the original
    return path


def _read_expected() -> pd.DataFrame:
    return pd.read_csv(EXPECTED, dtype={"rule": str})


def _assert_same_table(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    got = got.reset_index(drop=True).copy()
    got["rule"] = got["rule"].astype(str)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_exact=False, rtol=1e-6, atol=1e-9)


@pytest.fixture(scope="module")
def survey():
    """The real survey, loaded and de-duplicated once for the module."""
    return rf.remove_duplicates(rf.load_survey(DATA))


@pytest.fixture(scope="module")
def split(survey):
    return rf.split_train_test(survey, test_size=0.25, seed=rf.SEED)


@pytest.fixture(scope="module")
def fitted(split):
    """The two logistic regressions fitted on the real training split (fast; enough for the model helpers)."""
    X_train, _, y_train, _ = split
    models = rf.make_models(seed=rf.SEED)
    return rf.fit_models({k: models[k] for k in ("logreg", "logreg_balanced")}, X_train, y_train)


# -- loading -------------------------------------------------------------------------------------
def test_load_survey_real_file_counts_and_columns():
    df = rf.load_survey(DATA)
    assert len(df) == 309
    assert list(df.columns) == rf.FEATURE_COLUMNS + [rf.TARGET]
    assert "fatigue" in df.columns and "allergy" in df.columns        # trailing spaces gone
    assert df[rf.TARGET].value_counts().to_dict() == {1: 270, 0: 39}
    assert int(df["male"].sum()) == 162                               # 162 M / 147 F (SOURCES.md)
    assert (df.drop(columns="age").isin([0, 1])).all().all()
    assert df["age"].between(21, 87).all()


def test_duplicates_found_and_removed_before_split(survey):
    df = rf.load_survey(DATA)
    dups = rf.find_duplicates(df)
    assert len(dups) == 33
    assert len(survey) == 276 and list(survey.index) == list(range(276))
    assert survey[rf.TARGET].value_counts().to_dict() == {1: 238, 0: 38}
    assert not survey.duplicated().any()


def test_clean_column_names():
    # trailing space, inner space, mixed case with leading space, punctuation
    assert rf.clean_column_names(["FATIGUE ", "CHEST PAIN", " Lung_Cancer", "A-B (c)"]) == [
        "fatigue", "chest_pain", "lung_cancer", "a_b_c"]


def test_recode_survey_first_real_rows(tmp_path):
    raw = pd.read_csv(_write_csv(tmp_path, RAW_ROWS[:3]))
    raw.columns = rf.clean_column_names(raw.columns)
    out = rf.recode_survey(raw)
    assert out["male"].tolist() == [1, 1, 0]
    assert out["age"].tolist() == [69, 74, 59]
    assert out["smoking"].tolist() == [0, 1, 0]                      # 1 = no -> 0, 2 = yes -> 1
    assert out["fatigue"].tolist() == [1, 1, 1]
    assert out[rf.TARGET].tolist() == [1, 1, 0]


@pytest.mark.parametrize("bad_row, message", [
    ("M,69,3,2,2,1,1,2,1,2,2,2,2,2,2,YES", "smoking: values other than 1/2"),    # code 3
    ("X,69,1,2,2,1,1,2,1,2,2,2,2,2,2,YES", "gender: values other than M/F"),     # unknown gender
    ("M,69,1,2,2,1,1,2,1,2,2,2,2,2,2,MAYBE", "lung_cancer: values other than"),  # unknown label
    ("M,150,1,2,2,1,1,2,1,2,2,2,2,2,2,YES", "age: not a whole number"),          # impossible age
    ("M,69,1,2,2,1,1,,1,2,2,2,2,2,2,YES", "missing cells"),                      # empty cell
])
def test_load_survey_rejects_bad_values_with_file_and_row(tmp_path, bad_row, message):
    path = _write_csv(tmp_path, [RAW_ROWS[0], bad_row])
    with pytest.raises(ValueError, match=message) as err:
        rf.load_survey(path)
    assert str(path) in str(err.value) and "[1]" in str(err.value)


def test_check_raw_survey_missing_column():
    with pytest.raises(ValueError, match="missing columns"):
        rf.check_raw_survey(pd.DataFrame({"gender": ["M"], "age": [50]}))


def test_find_and_remove_duplicates_hand_made():
    # rows 0 and 2 identical, row 3 repeats row 1 twice: 3 extra copies, first copies kept in order
    df = pd.DataFrame({"a": [1, 2, 1, 2, 2], "b": [0, 1, 0, 1, 1]})
    assert list(rf.find_duplicates(df).index) == [2, 3, 4]
    assert rf.remove_duplicates(df).to_dict("list") == {"a": [1, 2], "b": [0, 1]}


def test_split_features_target(survey):
    X, y = rf.split_features_target(survey)
    assert list(X.columns) == rf.FEATURE_COLUMNS and y.name == rf.TARGET and len(X) == len(y) == 276


def test_split_is_stratified_and_disjoint(split):
    X_train, X_test, y_train, y_test = split
    assert (len(y_train), len(y_test)) == (207, 69)
    assert (int((y_train == 0).sum()), int((y_test == 0).sum())) == (28, 10)
    assert set(X_train.index).isdisjoint(X_test.index)


def test_stratified_cv_keeps_the_ratio(split):
    X_train, _, y_train, _ = split
    negatives = [int((y_train.iloc[test] == 0).sum()) for _, test in rf.stratified_cv(5).split(X_train, y_train)]
    assert sorted(negatives) == [5, 5, 6, 6, 6]


# -- models --------------------------------------------------------------------------------------
def test_make_models_are_pipelines_with_the_lesson_models():
    models = rf.make_models()
    assert list(models) == ["baseline", "logreg", "logreg_balanced", "random_forest", "gradient_boosting", "knn"]
    assert all(isinstance(m, Pipeline) and list(m.named_steps) == ["prepare", "model"] for m in models.values())
    assert models["random_forest"].named_steps["model"].n_jobs == 1
    assert models["logreg_balanced"].named_steps["model"].class_weight == "balanced"


def test_cross_validation_helpers(split):
    X_train, _, y_train, _ = split
    models = {k: v for k, v in rf.make_models().items() if k in ("baseline", "logreg")}
    folds = rf.cross_validate_models(models, X_train, y_train, rf.stratified_cv(3))
    assert len(folds) == 6 and set(folds.columns) == {"model", "fold", "roc_auc", "pr_auc", "brier"}
    summary = rf.summarise_cv(folds).set_index("model")
    assert summary.loc["baseline", "roc_auc_mean"] == 0.5                  # constant score = coin
    assert summary.loc["logreg", "roc_auc_mean"] > 0.8
    oof = rf.out_of_fold_scores(models, X_train, y_train, rf.stratified_cv(3))
    assert oof["logreg"].shape == (207,) and ((oof["logreg"] >= 0) & (oof["logreg"] <= 1)).all()
    thresholds = rf.choose_thresholds(oof, y_train, min_sensitivity=0.9)
    assert list(thresholds) == ["0.5", "youden_cv", "sens>=0.9_cv"]
    assert thresholds["0.5"] == {"baseline": 0.5, "logreg": 0.5}
    keep = oof["logreg"] >= thresholds["sens>=0.9_cv"]["logreg"]
    assert rf.sensitivity(y_train, keep) >= 0.9


def test_fit_predict_odds_ratios_and_importance(fitted, split):
    _, X_test, _, y_test = split
    scores = rf.predict_scores(fitted, X_test)
    assert set(scores) == {"logreg", "logreg_balanced"} and scores["logreg"].shape == (69,)
    # class weights move the probabilities towards NO
    assert scores["logreg_balanced"].mean() < scores["logreg"].mean()
    odds = rf.logistic_odds_ratios(fitted["logreg"])
    assert set(odds["feature"]) == set(rf.FEATURE_COLUMNS)
    assert odds["odds_ratio"].is_monotonic_decreasing
    assert np.allclose(odds["odds_ratio"], np.exp(odds["coefficient"]))
    imp = rf.permutation_importance_table(fitted["logreg"], X_test, y_test, n_repeats=3)
    assert set(imp["feature"]) == set(rf.FEATURE_COLUMNS) and imp["importance_mean"].is_monotonic_decreasing
    again = rf.permutation_importance_table(fitted["logreg"], X_test, y_test, n_repeats=3)
    pd.testing.assert_frame_equal(imp, again)                              # seeded


# -- metrics on hand-made arrays -------------------------------------------------------------------
Y = [1, 1, 1, 0, 0]
P = [1, 0, 1, 0, 1]            # 2 TP, 1 FN, 1 TN, 1 FP


def test_confusion_sensitivity_specificity_balanced_accuracy():
    assert rf.confusion_counts(Y, P) == {"tn": 1, "fp": 1, "fn": 1, "tp": 2}
    assert rf.sensitivity(Y, P) == pytest.approx(2 / 3)
    assert rf.specificity(Y, P) == pytest.approx(1 / 2)
    assert rf.balanced_accuracy(Y, P) == pytest.approx(7 / 12)
    assert rf.balanced_accuracy([1, 1, 0, 0], [1, 1, 1, 1]) == 0.5        # "always YES"
    assert np.isnan(rf.specificity([1, 1], [1, 0]))                       # no NO at all


def test_roc_auc_known_values_and_sklearn_agreement():
    assert rf.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75        # 3 of 4 pairs ordered right
    assert rf.roc_auc([0, 1], [0.5, 0.5]) == 0.5                         # a tie counts one half
    assert rf.roc_auc([0, 1], [0.9, 0.1]) == 0.0
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200), 1)                                     # many ties
    assert rf.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    with pytest.raises(ValueError, match="both classes"):
        rf.roc_auc([1, 1], [0.2, 0.3])


def test_pr_auc_both_classes_and_brier():
    y, s = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    assert rf.pr_auc(y, s) == pytest.approx(average_precision_score(y, s)) == pytest.approx(5 / 6)
    # NO as the class of interest: ranking by 1 - s gives NO, YES, NO, YES -> AP = (1 + 2/3) / 2
    assert rf.pr_auc(y, s, positive=0) == pytest.approx(5 / 6)
    assert rf.pr_auc([1, 1, 1, 0], [0.5] * 4) == pytest.approx(0.75)       # no skill = prevalence
    assert rf.brier_score([1, 0], [0.8, 0.4]) == pytest.approx(0.1)
    assert rf.brier_score([1, 0], [1.0, 0.0]) == 0.0


def test_choose_threshold_rules():
    y, s = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    # candidates 0.1 (all YES), 0.225, 0.375, 0.6, just above 0.8; J ties at 0.225 and 0.6 -> lower wins
    assert rf.choose_threshold(y, s) == pytest.approx(0.225)
    assert rf.choose_threshold(y, s, min_sensitivity=1.0) == pytest.approx(0.225)
    assert rf.choose_threshold(y, s, min_sensitivity=0.5) == pytest.approx(0.6)
    assert rf.choose_threshold([0, 1, 1], [0.86, 0.86, 0.86]) == 0.86         # constant score: all YES


def test_bootstrap_interval():
    assert rf.bootstrap_interval([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], n_boot=50) == (1.0, 1.0)
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(20, int), np.ones(40, int)]
    s = rng.random(60) + 0.3 * y
    low, high = rf.bootstrap_interval(y, s, n_boot=200, seed=3)
    assert low < rf.roc_auc(y, s) < high
    assert (low, high) == rf.bootstrap_interval(y, s, n_boot=200, seed=3)


def test_evaluate_scores_and_results_table():
    y = [1, 1, 1, 0, 0]
    scores = {"perfect": [0.9, 0.8, 0.7, 0.2, 0.1], "flat": [0.6] * 5}
    one = rf.evaluate_scores(y, scores["perfect"], 0.75)                 # 0.7 falls below: one FN
    assert (one["tp"], one["fn"], one["tn"], one["fp"]) == (2, 1, 2, 0)
    assert one["roc_auc"] == 1.0 and one["sensitivity"] == pytest.approx(2 / 3) and one["specificity"] == 1.0
    table = rf.results_table(y, scores, {"0.5": {"perfect": 0.5, "flat": 0.5},
                                         "strict": {"perfect": 0.75, "flat": 0.75}}, n_boot=20)
    assert list(table[["model", "rule"]].itertuples(index=False, name=None)) == [
        ("perfect", "0.5"), ("perfect", "strict"), ("flat", "0.5"), ("flat", "strict")]
    row = table.set_index(["model", "rule"]).loc[("flat", "0.5")]
    assert (row["roc_auc"], row["balanced_accuracy"], row["tp"], row["fp"]) == (0.5, 0.5, 3, 2)
    assert row["brier"] == pytest.approx((3 * 0.16 + 2 * 0.36) / 5)
    assert table.loc[0, "balanced_accuracy"] == 1.0


def test_build_results_table_matches_expected_csv(survey):
    _assert_same_table(rf.build_results_table(survey), _read_expected())


@pytest.mark.slow
def test_build_results_table_is_reproducible(survey):
    pd.testing.assert_frame_equal(rf.build_results_table(survey), rf.build_results_table(survey))


# -- graphics ----------------------------------------------------------------------------------------
def _assert_png(path: Path) -> None:
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_every_plot_function_writes_a_png(tmp_path, survey):
    y = np.array([1, 1, 1, 1, 0, 0, 1, 0, 1, 1])
    scores = {"a": np.linspace(0.05, 0.95, 10), "b": np.array([0.9, 0.8, 0.7, 0.95, 0.2, 0.4, 0.6, 0.1, 0.85, 0.3])}
    importance = pd.DataFrame({"feature": ["allergy", "age"], "importance_mean": [0.03, 0.0],
                               "importance_std": [0.01, 0.005]})
    small = survey.head(60)
    calls = {
        "class_balance": lambda p: gr.plot_class_balance(survey[rf.TARGET], p),
        "age_by_class": lambda p: gr.plot_age_by_class(small, p),
        "symptom_prevalence": lambda p: gr.plot_symptom_prevalence(small, p),
        "correlation_heatmap": lambda p: gr.plot_correlation_heatmap(small, p),
        "roc": lambda p: gr.plot_roc_curves(y, scores, p),
        "pr_yes": lambda p: gr.plot_pr_curves(y, scores, p),
        "pr_no": lambda p: gr.plot_pr_curves(y, scores, p, positive=0),
        "confusion": lambda p: gr.plot_confusion_matrices(y, {k: (v >= 0.5).astype(int) for k, v in scores.items()}, p),
        "calibration": lambda p: gr.plot_calibration(y, scores, p, n_bins=3),
        "threshold": lambda p: gr.plot_threshold_tradeoff(y, scores["b"], p, marks={"0.5": 0.5}),
        "importance": lambda p: gr.plot_permutation_importance(importance, p),
        "cv": lambda p: gr.plot_cv_scores({"a": [0.8, 0.9, 0.85], "b": [0.5, 0.5, 0.5]}, p),
    }
    for name, call in calls.items():
        path = tmp_path / "sub" / f"{name}.png"                        # folder created on demand
        assert call(path) == path
        _assert_png(path)


def test_figures_are_byte_identical_across_calls(tmp_path, survey):
    a = gr.plot_class_balance(survey[rf.TARGET], tmp_path / "a.png")
    b = gr.plot_class_balance(survey[rf.TARGET], tmp_path / "b.png")
    assert a.read_bytes() == b.read_bytes()


def test_show_returns_a_sized_image(tmp_path):
    path = gr.plot_class_balance([1, 0, 1], tmp_path / "x.png")
    image = gr.show(path, width=300)
    assert image.width == 300 and image.data[:8] == b"\x89PNG\r\n\x1a\n"


# -- the notebook ------------------------------------------------------------------------------------
def test_committed_notebook_is_executed_small_and_clean():
    nb = nbformat.read(LESSON / "ml_health_example.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code)             # reads with outputs on GitHub
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert (LESSON / "ml_health_example.ipynb").stat().st_size < 600_000
    for name in FIGURES:
        _assert_png(LESSON / "images" / f"{name}.png")


@pytest.mark.slow
def test_notebook_executes_writes_figures_and_reproduces_the_table(tmp_path):
    work = tmp_path / "0.ml-example"
    shutil.copytree(LESSON, work, ignore=shutil.ignore_patterns("images", "__pycache__", ".ipynb_checkpoints"))
    nb = nbformat.read(work / "ml_health_example.ipynb", as_version=4)
    # extra last cell: which environment ran the kernel, and the table the lesson built step by step
    nb.cells.append(nbformat.v4.new_code_cell(
        "import sys\nopen('kernel_prefix.txt', 'w').write(sys.prefix)\n"
        "table.to_csv('notebook_table.csv', index=False)"))
    start = time.monotonic()
    NotebookClient(nb, kernel_name="python3", timeout=240, record_timing=False,
                   resources={"metadata": {"path": str(work)}}).execute()
    # its speed (about 20 s on an idle 2-core box) is reported in 0.ml-example/README.md, not asserted here
    print(f"notebook executed in {time.monotonic() - start:.0f} s")
    assert (work / "kernel_prefix.txt").read_text() == sys.prefix      # the venv's python ran the kernel
    for name in FIGURES:
        _assert_png(work / "images" / f"{name}.png")
    _assert_same_table(pd.read_csv(work / "notebook_table.csv", dtype={"rule": str}), _read_expected())
