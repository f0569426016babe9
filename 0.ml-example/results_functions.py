"""Data loading, models and metrics for the lung-cancer lesson (`ml_health_example.ipynb`).

The notebook imports this file from its own folder (run it with the working
directory set to `0.ml-example/`). Everything here is plain pandas / NumPy /
scikit-learn so a participant can open the file and read how each number is made.

Main pieces, in the order the lesson uses them:

- `load_survey(path)`: read the Kaggle CSV, clean the headers, check the values,
  recode 1/2, M/F and YES/NO to 0/1.
- `find_duplicates` / `remove_duplicates`: the 33 repeated rows, removed *before*
  the train/test split so that no person can sit in both sets.
- `split_train_test`, `stratified_cv`, `make_models`: the experiment set-up.
- `sensitivity`, `specificity`, `balanced_accuracy`, `roc_auc`, `pr_auc`,
  `brier_score`, `confusion_counts`, `choose_threshold`: the metrics.
- `results_table`: one row per model and decision threshold rule.
- `build_results_table(df)`: the whole experiment in one call (what the tests rerun).

Example (from `0.ml-example/`)::

    from results_functions import load_survey, remove_duplicates, build_results_table
    table = build_results_table(remove_duplicates(load_survey("dataset/survey_lung_cancer.csv")))
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict, cross_validate, train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

SEED = 42
"""One seed for every random step (split, folds, forests, bootstrap, permutations)."""

TARGET = "lung_cancer"
"""Outcome column after clean-up: 1 = YES (lung cancer), 0 = NO."""

SYMPTOM_COLUMNS = [
    "smoking", "yellow_fingers", "anxiety", "peer_pressure", "chronic_disease", "fatigue",
    "allergy", "wheezing", "alcohol_consuming", "coughing", "shortness_of_breath",
    "swallowing_difficulty", "chest_pain",
]
"""Yes/no survey answers, coded 1 = no / 2 = yes in the file and 0 / 1 after `recode_survey`."""

FEATURE_COLUMNS = ["male", "age", *SYMPTOM_COLUMNS]
"""Model inputs after clean-up (`male`: 1 = M, 0 = F; `age` in years)."""

RAW_GENDER, RAW_AGE, RAW_TARGET = "gender", "age", "lung_cancer"
AGE_RANGE = (0, 120)
"""Plausible ages in years; anything outside is a data-entry error."""


# --------------------------------------------------------------------------- loading

def clean_column_names(columns) -> list[str]:
    """Lower-case, strip and snake-case headers: `"FATIGUE "` -> `"fatigue"`, `"CHEST PAIN"` -> `"chest_pain"`."""
    return [re.sub(r"[^0-9a-z]+", "_", str(c).strip().lower()).strip("_") for c in columns]


def check_raw_survey(df: pd.DataFrame) -> None:
    """Check a header-cleaned, not yet recoded table; raise ValueError listing every problem found.

    Checks: all expected columns present, no missing cells, symptom codes in {1, 2},
    GENDER in {M, F}, LUNG_CANCER in {YES, NO}, AGE a whole number in `AGE_RANGE`.
    """
    problems = []
    expected = [RAW_GENDER, RAW_AGE, *SYMPTOM_COLUMNS, RAW_TARGET]
    missing_cols = [c for c in expected if c not in df.columns]
    if missing_cols:
        raise ValueError(f"missing columns: {missing_cols} (have {list(df.columns)})")
    n_missing = int(df[expected].isna().sum().sum())
    if n_missing:
        problems.append(f"{n_missing} missing cells")
    for col in SYMPTOM_COLUMNS:
        bad = df.index[~df[col].isin([1, 2])]
        if len(bad):
            problems.append(f"{col}: values other than 1/2 in rows {list(bad[:5])}")
    bad = df.index[~df[RAW_GENDER].astype(str).str.strip().str.upper().isin(["M", "F"])]
    if len(bad):
        problems.append(f"gender: values other than M/F in rows {list(bad[:5])}")
    bad = df.index[~df[RAW_TARGET].astype(str).str.strip().str.upper().isin(["YES", "NO"])]
    if len(bad):
        problems.append(f"lung_cancer: values other than YES/NO in rows {list(bad[:5])}")
    age = pd.to_numeric(df[RAW_AGE], errors="coerce")
    bad = df.index[age.isna() | (age < AGE_RANGE[0]) | (age > AGE_RANGE[1]) | (age % 1 != 0)]
    if len(bad):
        problems.append(f"age: not a whole number in {AGE_RANGE} in rows {list(bad[:5])}")
    if problems:
        raise ValueError("; ".join(problems))


def recode_survey(df: pd.DataFrame) -> pd.DataFrame:
    """Recode a checked table to numbers: symptoms 1/2 -> 0/1, GENDER M/F -> `male` 1/0, YES/NO -> 1/0.

    Returns a new frame with columns `FEATURE_COLUMNS + [TARGET]`, all integers.
    """
    out = pd.DataFrame(index=df.index)
    out["male"] = (df[RAW_GENDER].astype(str).str.strip().str.upper() == "M").astype(int)
    out["age"] = df[RAW_AGE].astype(int)
    for col in SYMPTOM_COLUMNS:
        out[col] = (df[col] == 2).astype(int)
    out[TARGET] = (df[RAW_TARGET].astype(str).str.strip().str.upper() == "YES").astype(int)
    return out


def load_survey(path) -> pd.DataFrame:
    """Read the survey CSV, clean the headers, check the values and recode them (see `recode_survey`).

    Duplicates are kept: removing them is a visible step of the lesson (`remove_duplicates`).
    """
    raw = pd.read_csv(Path(path))
    raw.columns = clean_column_names(raw.columns)
    try:
        check_raw_survey(raw)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return recode_survey(raw)


def find_duplicates(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that repeat an earlier row exactly (every column equal); the first copy is not included."""
    return df[df.duplicated(keep="first")]


def remove_duplicates(df: pd.DataFrame) -> pd.DataFrame:
    """Keep the first copy of each exact duplicate and renumber the rows 0..n-1.

    Done before the split: a repeated row could otherwise land in train *and* test,
    and the test score would partly measure memory, not generalisation (data leakage).
    """
    return df.drop_duplicates(keep="first").reset_index(drop=True)


def split_features_target(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """`(X, y)`: the feature columns and the 0/1 outcome."""
    return df[FEATURE_COLUMNS], df[TARGET]


def split_train_test(df: pd.DataFrame, test_size: float = 0.25, seed: int = SEED):
    """Stratified hold-out split: `(X_train, X_test, y_train, y_test)` with the same YES/NO ratio in both."""
    X, y = split_features_target(df)
    return train_test_split(X, y, test_size=test_size, stratify=y, random_state=seed)


# --------------------------------------------------------------------------- models

def stratified_cv(n_splits: int = 5, seed: int = SEED) -> StratifiedKFold:
    """Stratified k-fold: each fold keeps the 86/14 YES/NO ratio (a plain k-fold could leave a fold with 2 NOs)."""
    return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)


def _scale_age() -> ColumnTransformer:
    # Only age needs scaling: the symptoms are already 0/1. Scaling matters for the
    # penalised logistic regression and for k-NN distances, not for the trees.
    return ColumnTransformer([("age", StandardScaler(), ["age"])], remainder="passthrough",
                             verbose_feature_names_out=False)


def make_models(seed: int = SEED) -> dict[str, Pipeline]:
    """The lesson's models, each a `Pipeline(prepare -> classifier)`, small enough to fit in seconds.

    - `baseline`: always answers the training prevalence (majority class); any model must beat it.
    - `logreg`: logistic regression, no class weights (the imbalance left as it is).
    - `logreg_balanced`: the same with `class_weight="balanced"` (each NO counts ~6x a YES).
    - `random_forest`: 150 trees, balanced class weights, leaves of at least 2 people.
    - `gradient_boosting`: histogram gradient boosting, shallow trees, balanced class weights.
    - `knn`: 15 nearest neighbours (no class weights exist for k-NN: the threshold does that job).
    """
    return {
        "baseline": Pipeline([("prepare", _scale_age()),
                              ("model", DummyClassifier(strategy="prior"))]),
        "logreg": Pipeline([("prepare", _scale_age()),
                            ("model", LogisticRegression(C=1.0, max_iter=2000))]),
        "logreg_balanced": Pipeline([("prepare", _scale_age()),
                                     ("model", LogisticRegression(C=1.0, max_iter=2000,
                                                                  class_weight="balanced"))]),
        "random_forest": Pipeline([("prepare", _scale_age()),
                                   ("model", RandomForestClassifier(
                                       n_estimators=150, min_samples_leaf=2, class_weight="balanced",
                                       random_state=seed, n_jobs=1))]),
        "gradient_boosting": Pipeline([("prepare", _scale_age()),
                                       ("model", HistGradientBoostingClassifier(
                                           max_iter=100, learning_rate=0.05, max_depth=3,
                                           min_samples_leaf=10, class_weight="balanced",
                                           early_stopping=False, random_state=seed))]),
        "knn": Pipeline([("prepare", _scale_age()),
                         ("model", KNeighborsClassifier(n_neighbors=15))]),
    }


def cross_validate_models(models: dict, X, y, cv) -> pd.DataFrame:
    """Cross-validated ROC AUC, PR AUC and Brier score on the training set: one row per model and fold."""
    scoring = {"roc_auc": "roc_auc", "pr_auc": "average_precision", "brier": "neg_brier_score"}
    frames = []
    for name, model in models.items():
        res = cross_validate(model, X, y, cv=cv, scoring=scoring, n_jobs=1)
        frames.append(pd.DataFrame({"model": name, "fold": np.arange(len(res["test_roc_auc"])),
                                    "roc_auc": res["test_roc_auc"], "pr_auc": res["test_pr_auc"],
                                    "brier": -res["test_brier"]}))
    return pd.concat(frames, ignore_index=True)


def summarise_cv(folds: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over folds of each metric in a `cross_validate_models` table."""
    summary = folds.drop(columns="fold").groupby("model", sort=False).agg(["mean", "std"])
    summary.columns = [f"{metric}_{stat}" for metric, stat in summary.columns]
    return summary.reset_index()


def out_of_fold_scores(models: dict, X, y, cv) -> dict[str, np.ndarray]:
    """P(YES) for each training row from the fold model that did *not* see it (used to choose thresholds)."""
    return {name: cross_val_predict(m, X, y, cv=cv, method="predict_proba", n_jobs=1)[:, 1]
            for name, m in models.items()}


def fit_models(models: dict, X, y) -> dict:
    """Fit every pipeline on `(X, y)` in place; returns the same dict for chaining."""
    for model in models.values():
        model.fit(X, y)
    return models


def predict_scores(models: dict, X) -> dict[str, np.ndarray]:
    """P(YES) from each fitted model for the rows of `X`."""
    return {name: m.predict_proba(X)[:, 1] for name, m in models.items()}


def logistic_odds_ratios(pipeline: Pipeline) -> pd.DataFrame:
    """Odds ratios of a fitted logistic-regression pipeline, largest first (age per standard deviation)."""
    names = pipeline.named_steps["prepare"].get_feature_names_out()
    coef = pipeline.named_steps["model"].coef_[0]
    table = pd.DataFrame({"feature": names, "coefficient": coef, "odds_ratio": np.exp(coef)})
    return table.sort_values("odds_ratio", ascending=False, kind="stable").reset_index(drop=True)


def permutation_importance_table(model, X, y, n_repeats: int = 30, scoring: str = "roc_auc",
                                 seed: int = SEED) -> pd.DataFrame:
    """Drop in `scoring` when each column is shuffled (`n_repeats` times): mean and std, largest first."""
    res = permutation_importance(model, X, y, n_repeats=n_repeats, scoring=scoring,
                                 random_state=seed, n_jobs=1)
    table = pd.DataFrame({"feature": list(X.columns), "importance_mean": res.importances_mean,
                          "importance_std": res.importances_std})
    return table.sort_values("importance_mean", ascending=False, kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- metrics

def confusion_counts(y_true, y_pred) -> dict[str, int]:
    """`{"tn", "fp", "fn", "tp"}` with 1 = YES as the positive class."""
    t, p = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    return {"tn": int(np.sum((t == 0) & (p == 0))), "fp": int(np.sum((t == 0) & (p == 1))),
            "fn": int(np.sum((t == 1) & (p == 0))), "tp": int(np.sum((t == 1) & (p == 1)))}


def sensitivity(y_true, y_pred) -> float:
    """Recall of YES (sensibilidade): TP / (TP + FN); NaN when there is no YES."""
    c = confusion_counts(y_true, y_pred)
    return c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else float("nan")


def specificity(y_true, y_pred) -> float:
    """Recall of NO (especificidade): TN / (TN + FP); NaN when there is no NO."""
    c = confusion_counts(y_true, y_pred)
    return c["tn"] / (c["tn"] + c["fp"]) if c["tn"] + c["fp"] else float("nan")


def balanced_accuracy(y_true, y_pred) -> float:
    """Mean of sensitivity and specificity: 0.5 for a model that always says YES, whatever the prevalence."""
    return (sensitivity(y_true, y_pred) + specificity(y_true, y_pred)) / 2


def roc_auc(y_true, y_score) -> float:
    """Area under the ROC curve: the chance that a random YES scores above a random NO (0.5 = coin).

    Computed from ranks (Mann-Whitney U, ties count one half); equal to
    `sklearn.metrics.roc_auc_score` and fast enough to bootstrap. Raises ValueError
    when only one class is present.
    """
    y = np.asarray(y_true).astype(int)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs both classes in y_true")
    ranks = rankdata(np.asarray(y_score, dtype=float))
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pr_auc(y_true, y_score, positive: int = 1) -> float:
    """Area under the precision-recall curve (average precision) for class `positive`.

    A no-skill model scores the class prevalence: ~0.86 for YES here, ~0.14 for NO,
    which is why the NO version (`positive=0`) says more about this data set.
    """
    y = np.asarray(y_true).astype(int)
    s = np.asarray(y_score, dtype=float)
    if positive == 0:
        y, s = 1 - y, 1 - s
    return float(average_precision_score(y, s))


def brier_score(y_true, y_score) -> float:
    """Mean squared gap between P(YES) and the 0/1 outcome: 0 is perfect, lower is better calibrated."""
    y = np.asarray(y_true, dtype=float)
    s = np.asarray(y_score, dtype=float)
    return float(np.mean((s - y) ** 2))


def choose_threshold(y_true, y_score, min_sensitivity: float | None = None) -> float:
    """Decision threshold (predict YES when score >= threshold) chosen on held-out scores.

    Candidates are the midpoints between consecutive distinct scores, plus "all YES"
    (the lowest score) and "all NO" (just above the highest). Without `min_sensitivity`
    the rule is Youden's J (maximise sensitivity + specificity - 1); with it, the
    threshold with the best specificity among those keeping sensitivity >= `min_sensitivity`
    (a screening rule: missing a cancer costs more than a false alarm). Ties go to the
    lowest threshold, i.e. the more sensitive one.
    """
    y = np.asarray(y_true).astype(int)
    s = np.asarray(y_score, dtype=float)
    u = np.unique(s)
    candidates = np.concatenate([[u[0]], (u[:-1] + u[1:]) / 2, [np.nextafter(u[-1], np.inf)]])
    sens = np.array([sensitivity(y, s >= t) for t in candidates])
    spec = np.array([specificity(y, s >= t) for t in candidates])
    if min_sensitivity is None:
        return float(candidates[int(np.argmax(sens + spec))])
    ok = sens >= min_sensitivity
    return float(candidates[int(np.argmax(np.where(ok, spec, -1.0)))])


def bootstrap_interval(y_true, y_score, metric=roc_auc, n_boot: int = 1000, level: float = 0.95,
                       seed: int = SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of `metric(y_true, y_score)`, resampling YES and NO rows separately."""
    y = np.asarray(y_true).astype(int)
    s = np.asarray(y_score, dtype=float)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    vals = np.empty(n_boot)
    for i in range(n_boot):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        vals[i] = metric(y[idx], s[idx])
    alpha = (1 - level) / 2
    return float(np.quantile(vals, alpha)), float(np.quantile(vals, 1 - alpha))


def evaluate_scores(y_true, y_score, threshold: float) -> dict:
    """Every lesson metric for one model's scores and one threshold."""
    y_pred = (np.asarray(y_score, dtype=float) >= threshold).astype(int)
    return {"threshold": float(threshold),
            "roc_auc": roc_auc(y_true, y_score), "pr_auc": pr_auc(y_true, y_score),
            "pr_auc_no": pr_auc(y_true, y_score, positive=0), "brier": brier_score(y_true, y_score),
            "sensitivity": sensitivity(y_true, y_pred), "specificity": specificity(y_true, y_pred),
            "balanced_accuracy": balanced_accuracy(y_true, y_pred), **confusion_counts(y_true, y_pred)}


def results_table(y_true, scores: dict, thresholds: dict, n_boot: int = 1000,
                  seed: int = SEED) -> pd.DataFrame:
    """One row per model and threshold rule: metrics on the test set, with a bootstrap 95% interval of ROC AUC.

    `scores` maps model -> P(YES) on the test rows; `thresholds` maps rule name ->
    {model -> threshold}, e.g. `{"0.5": {...}, "youden_cv": {...}}`.
    """
    rows = []
    for name, score in scores.items():
        low, high = bootstrap_interval(y_true, score, roc_auc, n_boot=n_boot, seed=seed)
        for rule, per_model in thresholds.items():
            rows.append({"model": name, "rule": rule,
                         **evaluate_scores(y_true, score, per_model[name]),
                         "roc_auc_low": low, "roc_auc_high": high})
    cols = ["model", "rule", "threshold", "roc_auc", "roc_auc_low", "roc_auc_high", "pr_auc",
            "pr_auc_no", "brier", "sensitivity", "specificity", "balanced_accuracy",
            "tn", "fp", "fn", "tp"]
    return pd.DataFrame(rows)[cols]


def choose_thresholds(oof_scores: dict, y_train, min_sensitivity: float = 0.95) -> dict[str, dict[str, float]]:
    """The lesson's three threshold rules for every model, chosen on out-of-fold training scores (never on test)."""
    return {
        "0.5": {m: 0.5 for m in oof_scores},
        "youden_cv": {m: choose_threshold(y_train, s) for m, s in oof_scores.items()},
        f"sens>={min_sensitivity:g}_cv": {m: choose_threshold(y_train, s, min_sensitivity)
                                          for m, s in oof_scores.items()},
    }


def build_results_table(df: pd.DataFrame, seed: int = SEED, test_size: float = 0.25,
                        n_splits: int = 5) -> pd.DataFrame:
    """The whole experiment on a de-duplicated table: split, thresholds from CV, fit, test metrics.

    Same steps and defaults as the notebook, so both give the same table.
    """
    X_train, X_test, y_train, y_test = split_train_test(df, test_size=test_size, seed=seed)
    cv = stratified_cv(n_splits=n_splits, seed=seed)
    thresholds = choose_thresholds(out_of_fold_scores(make_models(seed), X_train, y_train, cv), y_train)
    models = fit_models(make_models(seed), X_train, y_train)
    return results_table(y_test, predict_scores(models, X_test), thresholds, seed=seed)
