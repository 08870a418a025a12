"""Make the PNG figures of docs/ from the package itself (needs the [plot] extra: matplotlib).

    python docs/figures.py              # writes docs/figures/*.png
    python docs/figures.py --out DIR    # somewhere else
    python docs/figures.py --run runs/eca_d8 --data-dir DATA   # also the figures of a real training run
    python docs/figures.py --ablate result.json   # also the kernel-size sweep of `eca-ref ablate --k ... --json`

Figures:
    band-matrices.png  the matrix of f for SE-Var3, SE-GC, ECA-NS and ECA (chapter 3)
    kernel-size.png    k = psi(C) of Eq. 12: the authors' code rule, the ties, timm's floor (chapter 6)
    training-curves.png  test and train accuracy per epoch of the run(s) given with --run (chapter 8)
    gates.png          the class-mean gates of every block of the first --run (chapter 9; needs CIFAR-10)
    k-sweep.png        test accuracy per fixed k, each seed and the mean, against the adaptive k of Eq. 12
                       (the paper's Figure 4 at CIFAR scale; docs/results.md)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from eca_ref import VARIANTS, band_matrix, kernel_size_info
from eca_ref.fileio import atomic_write

OUT = Path(__file__).resolve().parent / "figures"


def _save(fig, path: Path) -> None:
    """Write the PNG atomically (eca_ref.fileio: a temporary file beside it, then a rename)."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight",
                                             metadata={"Software": None}))


def matrices(C: int = 16, groups: int = 4, k: int = 3, seed: int = 0) -> list[tuple[str, np.ndarray, int]]:
    """(title, C x C matrix of f, number of parameters) for SE-Var3, SE-GC, ECA-NS and ECA."""
    from scipy.linalg import block_diag

    rng = np.random.default_rng(seed)
    full = VARIANTS["se-var3"].init_params(C, rng=rng)["W"]
    gc = VARIANTS["se-gc"].init_params(C, rng=rng, groups=groups)["W"]
    ns = VARIANTS["eca-ns"].init_params(C, rng=rng, k=k)["W"]
    w = VARIANTS["eca"].init_params(C, rng=rng, k=k)["w"]
    return [
        (f"SE-Var3: full W\n{C * C} parameters", full, C * C),
        (f"SE-GC: G = {groups} blocks\n{C * C // groups} parameters", block_diag(*gc), C * C // groups),
        (f"ECA-NS: band, k = {k}\n{k * C} parameters", band_matrix(ns, C), k * C),
        (f"ECA: one shared kernel, k = {k}\n{k} parameters", band_matrix(w, C), k),
    ]


def band_matrices_figure(path: Path) -> None:
    import matplotlib.pyplot as plt

    mats = matrices()
    vmax = max(float(np.abs(m).max()) for _, m, _ in mats)
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.9))
    for ax, (title, m, _) in zip(axes, mats):
        shown = np.ma.masked_where(m == 0, m)  # structural zeros stay white
        ax.imshow(shown, cmap="coolwarm", vmin=-vmax, vmax=vmax, interpolation="nearest")
        C = m.shape[0]
        ax.set_xticks(np.arange(-0.5, C, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, C, 1), minor=True)
        ax.grid(which="minor", color="0.85", linewidth=0.5)
        ax.tick_params(which="minor", length=0)
        ax.set_xticks([0, C - 1])
        ax.set_yticks([0, C - 1])
        ax.set_xlabel("input channel m (of y)")
        ax.set_title(title, fontsize=11)
    axes[0].set_ylabel("output channel i (of z)")
    fig.suptitle("The matrix of f: z = M y, C = 16 channels (colour = weight, white = structural zero)",
                 fontsize=12)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def kernel_size_figure(path: Path) -> None:
    import matplotlib.pyplot as plt

    Cs = np.unique(np.concatenate([np.round(np.logspace(0, 15, 2000, base=2)).astype(int),
                                   2 ** np.arange(16)]))  # every power of 2: the ties sit on them
    infos = [kernel_size_info(int(C)) for C in Cs]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    t = [i.t_exact for i in infos]
    ax.plot(Cs, t, color="0.6", linewidth=1, label="t = (log2 C + b) / γ  (γ = 2, b = 1)")
    ax.step(Cs, [i.k_timm for i in infos], where="post", color="tab:orange", linewidth=2.5, alpha=0.6,
            label="timm: max(k, 3)")
    ax.step(Cs, [i.k for i in infos], where="post", color="tab:blue", linewidth=1.5,
            label="k = ψ(C), the authors' code rule")
    ties = [i for i in infos if i.tie]
    for i in ties:
        lo, hi = i.k_nearest_odd
        ax.plot([i.C, i.C], [lo, hi], color="tab:red", linewidth=1, linestyle=":")
        ax.plot([i.C], [i.k], "o", color="tab:red")
        left = i.C > 2 ** 12  # keep the last label inside the axes
        ax.annotate(f"C = {i.C}: tie {lo} / {hi}", (i.C, i.k), textcoords="offset points",
                    xytext=(-8, 6) if left else (6, 6), ha="right" if left else "left", fontsize=9,
                    color="tab:red")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("channels C")
    ax.set_ylabel("kernel size k")
    ax.set_yticks([1, 3, 5, 7, 9])
    ax.set_ylim(0, 10.3)
    ax.grid(True, color="0.9")
    ax.legend(loc="upper left", fontsize=9)
    ax.set_title("Eq. 12: k grows with log2 C; ties (red) are rounded up by the authors' code", fontsize=11)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


FIGURES = {"band-matrices.png": band_matrices_figure, "kernel-size.png": kernel_size_figure}


def training_curves_figure(path: Path, runs: list[Path]) -> None:
    """Train (augmented batches) and test accuracy per epoch, read from each run's metrics.jsonl."""
    import json

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for run in runs:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        epochs = [r["epoch"] for r in rows]
        line, = ax.plot(epochs, [100 * r["test_acc"] for r in rows], marker="o", label=f"{run.name}: test")
        ax.plot(epochs, [100 * r["train_acc"] for r in rows], ls="--", color=line.get_color(),
                label=f"{run.name}: train (augmented)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("ECA-ResNet-8 (width 16) on CIFAR-10")
    _save(fig, path)
    plt.close(fig)


def k_sweep_figure(path: Path, result: Path) -> None:
    """Test accuracy against k from the JSON of ``eca-ref ablate --k ...``: each seed a dot, the mean
    with its standard deviation as a bar; the adaptive k (Eq. 12) as a line with its band."""
    import json

    import matplotlib.pyplot as plt

    res = json.loads(result.read_text())
    rows = [r for r in res["rows"] if r.get("k") is not None]
    if not rows:
        raise SystemExit(f"{result}: no kernel-size rows (run eca-ref ablate with --k)")
    cfg = res["config"]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for r in rows:
        acc = 100 * np.asarray(r["test_acc"])
        label = f"{r['variant']}, k per stage {','.join(map(str, r['kernels']))}"
        if r["k"] == "adaptive":
            ax.axhline(acc.mean(), color="C1", label=f"adaptive (Eq. 12): {label}")
            ax.axhspan(acc.mean() - acc.std(ddof=1), acc.mean() + acc.std(ddof=1), color="C1", alpha=0.15)
        else:
            ax.plot([r["k"]] * len(acc), acc, "o", color="C0", alpha=0.4, ms=4)
            ax.errorbar(r["k"], acc.mean(), yerr=acc.std(ddof=1), fmt="s", color="C0", capsize=4)
    fixed = sorted(r["k"] for r in rows if r["k"] != "adaptive")
    ax.plot([], [], "s", color="C0", label="fixed k: mean ± std (dots: seeds)")
    ax.set_xticks(fixed)
    ax.set_xlabel("k (the same in every block)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    seeds = len(rows[0]["test_acc"])
    images = f"the first {cfg['limit']:,}" if cfg.get("limit") else "all 50,000"
    ax.set_title(f"ECA-ResNet-{cfg['depth']} (width {cfg['width']}), {cfg['epochs']} epochs on {images} "
                 f"training images, {seeds} seeds", fontsize=10)
    _save(fig, path)
    plt.close(fig)


def gates_figure(path: Path, run: Path, data_dir) -> None:
    """Heat maps of the class-mean gate (classes x channels) of every block of a trained run."""
    import matplotlib.pyplot as plt

    from eca_ref.train.gates import gate_statistics

    g = gate_statistics(run, data_dir=data_dir)
    fig, axes = plt.subplots(1, len(g.blocks), figsize=(4.2 * len(g.blocks), 3.4),
                             gridspec_kw={"width_ratios": [b.channels for b in g.blocks]})
    for ax, b in zip(np.atleast_1d(axes), g.blocks):
        im = ax.imshow(b.class_mean, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{b.name} (C = {b.channels})\nclass spread {b.class_spread:.3f}", fontsize=9)
        ax.set_xlabel("channel")
        ax.set_yticks(range(len(g.class_names)))
        ax.set_yticklabels(g.class_names if ax is np.atleast_1d(axes)[0] else [], fontsize=8)
    fig.colorbar(im, ax=np.atleast_1d(axes).tolist(), shrink=0.8, label="mean gate over the class's test images")
    fig.suptitle(f"What the ECA gates learned ({g.n:,} test images)", y=1.08)
    _save(fig, path)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Make the figures of docs/.")
    ap.add_argument("--out", type=Path, default=OUT, help="output folder (default: docs/figures)")
    ap.add_argument("--run", type=Path, action="append", default=[],
                    help="a training run folder (repeatable): also draw its curves, and the first run's gates")
    ap.add_argument("--data-dir", default=None, help="CIFAR-10 location for the gates figure")
    ap.add_argument("--ablate", type=Path, default=None,
                    help="the JSON of `eca-ref ablate --k ... --json`: also draw the kernel-size sweep")
    opts = ap.parse_args(argv)
    try:
        import matplotlib
    except ImportError:
        print("figures need matplotlib: pip install -e '.[plot]'", file=sys.stderr)
        return 2
    matplotlib.use("Agg")
    opts.out.mkdir(parents=True, exist_ok=True)
    for name, make in FIGURES.items():
        make(opts.out / name)
        print(f"wrote {opts.out / name}")
    if opts.run:
        training_curves_figure(opts.out / "training-curves.png", opts.run)
        print(f"wrote {opts.out / 'training-curves.png'}")
        gates_figure(opts.out / "gates.png", opts.run[0], opts.data_dir)
        print(f"wrote {opts.out / 'gates.png'}")
    if opts.ablate:
        k_sweep_figure(opts.out / "k-sweep.png", opts.ablate)
        print(f"wrote {opts.out / 'k-sweep.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
