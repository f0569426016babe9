"""Figures for the lung-cancer lesson (`ml_health_example.ipynb`).

Every `plot_*` function draws one figure with matplotlib, saves it as a PNG at
`path` (folders are created), closes it and returns the path. The notebook then
shows the file with `show(path)`, so the figures live in `images/` and read on
GitHub, and the notebook itself stays small.

Colours are fixed per class (NO = blue, YES = orange) and per model, so the same
thing has the same colour in every figure.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no window, same output in Jupyter, CI and Slurm jobs

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402  (installed with matplotlib)
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import auc, precision_recall_curve, roc_curve  # noqa: E402

CLASS_COLORS = {0: "#4C72B0", 1: "#DD8452"}
CLASS_NAMES = {0: "NO (no lung cancer)", 1: "YES (lung cancer)"}
MODEL_COLORS = ["#7f7f7f", "#1f77b4", "#17becf", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]
DPI = 100
"""Resolution of the saved PNGs: sharp enough on screen, small enough to commit."""


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    # A 256-colour palette makes the files ~3x smaller with no visible change on these
    # flat plots, which keeps the committed images and the executed notebook small.
    # Pillow writes no software/date stamp, so the same figure gives the same bytes.
    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                      dither=Image.Dither.NONE).save(path, format="PNG", optimize=True)
    return path


def _model_colors(names) -> dict:
    return {n: MODEL_COLORS[i % len(MODEL_COLORS)] for i, n in enumerate(names)}


def show(path, width: int = 560):
    """Display a saved PNG in the notebook at a modest width."""
    from IPython.display import Image as IPythonImage

    return IPythonImage(filename=str(path), width=width)


def plot_class_balance(y, path) -> Path:
    """Bar chart of how many people answered YES / NO, with percentages."""
    y = pd.Series(np.asarray(y).astype(int))
    counts = [int((y == k).sum()) for k in (0, 1)]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    bars = ax.bar([CLASS_NAMES[0], CLASS_NAMES[1]], counts, color=[CLASS_COLORS[0], CLASS_COLORS[1]])
    for bar, n in zip(bars, counts):
        ax.annotate(f"{n} ({n / len(y):.1%})", (bar.get_x() + bar.get_width() / 2, n),
                    ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("people")
    ax.set_ylim(0, max(counts) * 1.15)
    ax.set_title(f"Class balance (n = {len(y)})")
    return _save(fig, path)


def plot_age_by_class(df: pd.DataFrame, path, age: str = "age", target: str = "lung_cancer") -> Path:
    """Age histograms of each class (as shares, so the small NO group stays visible) and a box plot."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8.5, 3.2), gridspec_kw={"width_ratios": [2, 1]})
    bins = np.arange(df[age].min() // 5 * 5, df[age].max() + 6, 5)
    groups = [df.loc[df[target] == k, age] for k in (0, 1)]
    for k, values in zip((0, 1), groups):
        ax1.hist(values, bins=bins, density=True, alpha=0.55, color=CLASS_COLORS[k],
                 label=f"{CLASS_NAMES[k]}, n = {len(values)}")
    ax1.set_xlabel("age (years)")
    ax1.set_ylabel("share per year")
    ax1.legend(fontsize=8)
    box = ax2.boxplot(groups, patch_artist=True)
    for patch, k in zip(box["boxes"], (0, 1)):
        patch.set_facecolor(CLASS_COLORS[k])
    ax2.set_xticks([1, 2], ["NO", "YES"])
    ax2.set_ylabel("age (years)")
    fig.suptitle("Age by class")
    return _save(fig, path)


def plot_symptom_prevalence(df: pd.DataFrame, path, columns=None, target: str = "lung_cancer") -> Path:
    """Share of people answering yes to each 0/1 column, side by side for NO and YES, sorted by the gap."""
    if columns is None:
        columns = [c for c in df.columns if c != target and set(df[c].unique()) <= {0, 1}]
    prev = pd.DataFrame({k: df.loc[df[target] == k, columns].mean() for k in (0, 1)})
    prev = prev.assign(gap=prev[1] - prev[0]).sort_values("gap")
    pos = np.arange(len(prev))
    fig, ax = plt.subplots(figsize=(6.5, 0.32 * len(prev) + 1.2))
    ax.barh(pos - 0.2, prev[0], height=0.4, color=CLASS_COLORS[0], label=CLASS_NAMES[0])
    ax.barh(pos + 0.2, prev[1], height=0.4, color=CLASS_COLORS[1], label=CLASS_NAMES[1])
    ax.set_yticks(pos, [c.replace("_", " ") for c in prev.index], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share answering yes")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Symptom and habit prevalence by class")
    return _save(fig, path)


def plot_correlation_heatmap(df: pd.DataFrame, path) -> Path:
    """Pearson correlation of every pair of numeric columns (phi coefficient for two 0/1 columns)."""
    corr = df.select_dtypes("number").corr()
    labels = [c.replace("_", " ") for c in corr.columns]
    n = len(labels)
    fig, ax = plt.subplots(figsize=(0.45 * n + 2, 0.45 * n + 1))
    im = ax.imshow(corr.values, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    for i in range(n):
        for j in range(n):
            v = corr.values[i, j]
            if i != j and not np.isnan(v):
                ax.text(j, i, f"{v:.2f}".replace("0.", ".", 1), ha="center", va="center",
                        fontsize=5.5, color="white" if abs(v) > 0.6 else "black")
    fig.colorbar(im, ax=ax, shrink=0.7, label="correlation")
    ax.set_title("Correlation between variables")
    return _save(fig, path)


def plot_roc_curves(y_true, scores: dict, path) -> Path:
    """ROC curve (sensitivity against 1 - specificity) of each model, AUC in the legend."""
    colors = _model_colors(scores)
    fig, ax = plt.subplots(figsize=(5, 4.4))
    for name, score in scores.items():
        fpr, tpr, _ = roc_curve(y_true, score)
        auc_value = auc(fpr, tpr)
        ax.plot(fpr, tpr, color=colors[name], lw=1.6, label=f"{name} (AUC {auc_value:.2f})")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    ax.set_xlabel("1 - specificity (false alarms among NO)")
    ax.set_ylabel("sensitivity (YES found)")
    ax.set_title("ROC curves (test set)")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def plot_pr_curves(y_true, scores: dict, path, positive: int = 1) -> Path:
    """Precision-recall curve of each model for class `positive`, with the no-skill line at its prevalence."""
    y = np.asarray(y_true).astype(int)
    colors = _model_colors(scores)
    fig, ax = plt.subplots(figsize=(5, 4.4))
    target = y if positive == 1 else 1 - y
    for name, score in scores.items():
        s = np.asarray(score, dtype=float) if positive == 1 else 1 - np.asarray(score, dtype=float)
        precision, recall, _ = precision_recall_curve(target, s)
        ax.step(recall, precision, where="post", color=colors[name], lw=1.6, label=name)
    prevalence = target.mean()
    ax.axhline(prevalence, ls=":", color="grey", lw=1, label=f"no skill ({prevalence:.2f})")
    label = "YES" if positive == 1 else "NO"
    ax.set_xlabel(f"recall of {label}")
    ax.set_ylabel(f"precision of {label}")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Precision-recall curves for {label} (test set)")
    ax.legend(fontsize=7, loc="lower left")
    return _save(fig, path)


def plot_confusion_matrices(y_true, predictions: dict, path, ncols: int = 3) -> Path:
    """One 2x2 confusion matrix (rows = truth, columns = prediction) per model, counts in the cells."""
    y = np.asarray(y_true).astype(int)
    n = len(predictions)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.5 * nrows), squeeze=False)
    for ax, (name, pred) in zip(axes.flat, predictions.items()):
        p = np.asarray(pred).astype(int)
        m = np.array([[np.sum((y == t) & (p == q)) for q in (0, 1)] for t in (0, 1)])
        ax.imshow(m, cmap="Blues", vmin=0, vmax=max(m.max(), 1))
        for t in (0, 1):
            for q in (0, 1):
                ax.text(q, t, str(m[t, q]), ha="center", va="center", fontsize=11,
                        color="white" if m[t, q] > m.max() / 2 else "black")
        ax.set_xticks([0, 1], ["NO", "YES"])
        ax.set_yticks([0, 1], ["NO", "YES"])
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        ax.set_title(name, fontsize=9)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


def plot_calibration(y_true, scores: dict, path, n_bins: int = 5) -> Path:
    """Reliability diagram: mean predicted P(YES) against the observed share of YES, in quantile bins."""
    colors = _model_colors(scores)
    fig, ax = plt.subplots(figsize=(5, 4.4))
    for name, score in scores.items():
        frac, mean_pred = calibration_curve(y_true, score, n_bins=n_bins, strategy="quantile")
        ax.plot(mean_pred, frac, marker="o", ms=4, color=colors[name], lw=1.4, label=name)
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="perfectly calibrated")
    ax.set_xlabel("mean predicted P(YES)")
    ax.set_ylabel("observed share of YES")
    ax.set_title(f"Calibration (test set, {n_bins} quantile bins)")
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def plot_threshold_tradeoff(y_true, score, path, marks: dict | None = None) -> Path:
    """Sensitivity and specificity of one model as the decision threshold moves, with chosen thresholds marked."""
    y = np.asarray(y_true).astype(int)
    s = np.asarray(score, dtype=float)
    grid = np.linspace(0, 1, 201)
    sens = [np.mean(s[y == 1] >= t) for t in grid]
    spec = [np.mean(s[y == 0] < t) for t in grid]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(grid, sens, color=CLASS_COLORS[1], lw=1.8, label="sensitivity (YES found)")
    ax.plot(grid, spec, color=CLASS_COLORS[0], lw=1.8, label="specificity (NO cleared)")
    for i, (label, t) in enumerate((marks or {}).items()):
        ax.axvline(t, color=MODEL_COLORS[(i + 1) % len(MODEL_COLORS)], ls="--", lw=1, label=f"{label}: {t:.2f}")
    ax.set_xlabel("threshold on P(YES)")
    ax.set_ylabel("rate")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("Choosing the decision threshold")
    return _save(fig, path)


def plot_permutation_importance(table: pd.DataFrame, path, top: int = 15) -> Path:
    """Horizontal bars of `importance_mean` +- `importance_std` per feature (from `permutation_importance_table`)."""
    t = table.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(t) + 1.2))
    ax.barh([f.replace("_", " ") for f in t["feature"]], t["importance_mean"], xerr=t["importance_std"],
            color="#4C72B0", ecolor="grey", capsize=2)
    ax.axvline(0, color="black", lw=0.8)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel("drop in ROC AUC when the column is shuffled")
    ax.set_title("Permutation importance (test set)")
    return _save(fig, path)


def plot_cv_scores(fold_scores: dict, path, metric: str = "ROC AUC") -> Path:
    """Box plot of a cross-validation metric per model (one point per fold): the spread is the message."""
    names = list(fold_scores)
    colors = _model_colors(names)
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    box = ax.boxplot([fold_scores[n] for n in names], patch_artist=True)
    for patch, n in zip(box["boxes"], names):
        patch.set_facecolor(colors[n])
        patch.set_alpha(0.6)
    for i, n in enumerate(names, start=1):
        ax.scatter(np.full(len(fold_scores[n]), i), fold_scores[n], color="black", s=10, zorder=3)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=20, fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(f"Cross-validated {metric} per fold (training set)")
    return _save(fig, path)
