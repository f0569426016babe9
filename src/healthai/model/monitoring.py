"""What a training run records beside its result: peak memory, TensorBoard/MLflow callbacks, the loss plot."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from healthai.errors import ConfigError


class PeakMemory:
    """Peak resident memory of this process (sampled every 0.2 s) and peak GPU memory."""

    def __init__(self, device: str):
        self.device, self.rss_mb, self.gpu_mb = device, None, None
        self._stop = threading.Event()
        self._peak = 0

    def _rss(self) -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _loop(self):
        while not self._stop.wait(0.2):
            self._peak = max(self._peak, self._rss())

    def start(self) -> "PeakMemory":
        self._peak = self._rss()
        if self.device == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        self._peak = max(self._peak, self._rss())
        self.rss_mb = round(self._peak / 2 ** 20, 1)
        if self.device == "cuda":
            import torch

            self.gpu_mb = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)


def tensorboard_callback(folder: Path):
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    folder.mkdir(parents=True, exist_ok=True)
    return TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(folder)))


def mlflow_callback(cfg):
    """MLflow file store in the project dir; a missing package is a one-line ConfigError."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError("finetune.mlflow is true but mlflow is not installed (pip install -e '.[mlflow]', "
                          "or set finetune.mlflow=false)") from None
    from transformers.integrations import MLflowCallback

    uri = cfg.resolve(cfg.finetune.mlflow_tracking_uri)
    uri.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = uri.as_uri()
    os.environ["MLFLOW_EXPERIMENT_NAME"] = cfg.finetune.mlflow_experiment
    return MLflowCallback()


def plot_losses(metrics: dict, path: Path) -> Path:
    """Training and validation loss per step (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if metrics.get("train_losses"):
        xs, ys = zip(*metrics["train_losses"])
        ax.plot(xs, ys, label="train (assistant tokens)", color="tab:blue")
    if metrics.get("eval_losses"):
        xs, ys = zip(*metrics["eval_losses"])
        ax.plot(xs, ys, "o-", label="validation", color="tab:orange")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy loss")
    ax.set_title("LoRA fine-tuning")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
