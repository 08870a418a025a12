"""ECA-Net assignment: channel attention with hand-written backward passes.

Implement every function below in plain NumPy (no other library, no eca_ref,
no autograd). Keep the names and signatures: the grader calls them.

Every attention module here follows one recipe. For a feature map x of shape
(N, C, H, W):

    y   = GAP(x)                     (N, C)        mean over H and W
    z   = f(y)                       (N, C)        the only part that differs
    s   = sigmoid(z)                 (N, C)        the gate, one weight per channel
    out = x * s[:, :, None, None]    (N, C, H, W)

x reaches out along TWO paths: directly through the rescale, and through
GAP -> f -> sigmoid. The backward pass must add both.

Each forward returns (out, cache); put in the cache whatever your backward
needs. All inputs are float64 NumPy arrays; return float64 NumPy arrays (not
lists). Check your work before you submit: ``python eca_assignment.py``
runs the gradient checks at the bottom of this file.
"""
import numpy as np

STARTER_VERSION = "1.0"  # the interface this file implements; keep this line


# ---------------------------------------------------------------------- GAP
def gap_forward(x):
    """Global average pooling: y[n, c] = mean over i, j of x[n, c, i, j].

    Args:
        x: (N, C, H, W) float64.

    Returns:
        (y, cache): y of shape (N, C).
    """
    raise NotImplementedError


def gap_backward(dy, cache):
    """Gradient of GAP: dx[n, c, i, j] = dy[n, c] / (H * W).

    Args:
        dy: (N, C) upstream gradient.
        cache: from gap_forward.

    Returns:
        dx: (N, C, H, W).
    """
    raise NotImplementedError


# ------------------------------------------------------------------ sigmoid
def sigmoid_forward(z):
    """s = 1 / (1 + exp(-z)), elementwise, for an array of any shape.

    Must not overflow for large |z| (e.g. z = -800 or z = 800): give 0 and 1
    there, never NaN or inf.

    Returns:
        (s, cache): s of z's shape.
    """
    raise NotImplementedError


def sigmoid_backward(ds, cache):
    """dz = ds * s * (1 - s).

    Args:
        ds: upstream gradient, the shape of s.

    Returns:
        dz: the shape of z.
    """
    raise NotImplementedError


# ---------------------------------------------------------------------- ECA
def eca_forward(x, w):
    """ECA, 1D-convolution form: out = x * sigmoid(C1D_k(GAP(x))).

    The 1D "convolution" over the channel axis is a CROSS-CORRELATION (like
    PyTorch's Conv1d) with k = len(w) taps, k odd, and zero padding of
    p = (k - 1) // 2 channels at both ends:

        z[n, i] = sum_{j=0}^{k-1} w[j] * y[n, i + j - p]     (y outside 0..C-1 is 0)

    C may be smaller than k (then some taps never touch a channel).

    Args:
        x: (N, C, H, W) float64.
        w: (k,) the kernel, shared by all channels.

    Returns:
        (out, cache): out of shape (N, C, H, W).
    """
    raise NotImplementedError


def eca_backward(dout, cache):
    """Gradients of eca_forward.

    Add both paths from x to out:
        dx = dout * s[:, :, None, None]            (the rescale)
           + GAP's backward of dy                  (through GAP -> conv -> sigmoid)
    with ds[n, c] = sum_{i,j} dout[n, c, i, j] * x[n, c, i, j],
         dz = ds * s * (1 - s), and dy, dw the gradients of the 1D
         cross-correlation: dw[j] = sum_{n,i} dz[n, i] * y[n, i + j - p].

    Args:
        dout: (N, C, H, W) upstream gradient.
        cache: from eca_forward.

    Returns:
        (dx, dw): dx (N, C, H, W), dw (k,).
    """
    raise NotImplementedError


def eca_band_forward(x, w):
    """ECA, band-matrix form: the same output as eca_forward, computed as z = y @ B.T.

    B is the C x C banded (Toeplitz) matrix with B[i, i + j - p] = w[j] for
    every j with 0 <= i + j - p < C, and 0 elsewhere; then z[n] = B @ y[n].

    Args:
        x: (N, C, H, W) float64.
        w: (k,).

    Returns:
        (out, cache): out of shape (N, C, H, W).
    """
    raise NotImplementedError


# ----------------------------------------------------------------------- SE
def se_forward(x, w1, w2):
    """Squeeze-and-excitation without biases: z = w2 @ relu(w1 @ y) for each sample.

    Args:
        x: (N, C, H, W) float64.
        w1: (C // r, C) the first linear layer (PyTorch's (out, in) layout).
        w2: (C, C // r) the second linear layer.

    Returns:
        (out, cache): out = x * sigmoid(z)[:, :, None, None], shape (N, C, H, W).
    """
    raise NotImplementedError


def se_backward(dout, cache):
    """Gradients of se_forward (both paths from x, as in eca_backward).

    Returns:
        (dx, dw1, dw2): shapes (N, C, H, W), (C // r, C), (C, C // r).
    """
    raise NotImplementedError


# -------------------------------------------------------------- kernel size
def kernel_size(C, gamma=2, b=1):
    """ECA's adaptive kernel size k = psi(C) (the paper's Eq. 12), by the authors' code rule:

        t = int(abs((log2(C) + b) / gamma));   k = t if t is odd else t + 1

    e.g. C = 64 -> 3, C = 128 -> 5, C = 512 -> 5, C = 2048 -> 7, C < 8 -> 1.

    Returns:
        k: a Python int.
    """
    raise NotImplementedError


# =========================================================== check yourself
# Run ``python eca_assignment.py``. This compares each backward with central
# differences of YOUR forward (it cannot tell you whether the forward itself
# is right: compare a few values by hand, e.g. with the band matrix).

def _numerical_gradient(f, x, dout, h=1e-5):
    """d sum(f(x) * dout) / dx by central differences, one entry at a time."""
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        plus = np.sum(f(x) * dout)
        x[idx] = old - h
        minus = np.sum(f(x) * dout)
        x[idx] = old
        grad[idx] = (plus - minus) / (2 * h)
    return grad


def _error(a, b):
    """max|a - b| relative to the largest magnitudes (the grader's measure)."""
    return float(np.max(np.abs(a - b)) / max(1e-8, np.max(np.abs(a)) + np.max(np.abs(b))))


def _self_check():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 3, 3))
    z = rng.standard_normal((2, 5))
    w = rng.standard_normal(3)
    w1, w2 = rng.standard_normal((2, 5)), rng.standard_normal((5, 2))
    dout = rng.standard_normal(x.shape)
    checks = [
        ("gap", lambda: (gap_backward(z, gap_forward(x)[1]),
                         _numerical_gradient(lambda a: gap_forward(a)[0], x.copy(), z))),
        ("sigmoid", lambda: (sigmoid_backward(z, sigmoid_forward(z)[1]),
                             _numerical_gradient(lambda a: sigmoid_forward(a)[0], z.copy(), z))),
        ("eca dx", lambda: (eca_backward(dout, eca_forward(x, w)[1])[0],
                            _numerical_gradient(lambda a: eca_forward(a, w)[0], x.copy(), dout))),
        ("eca dw", lambda: (eca_backward(dout, eca_forward(x, w)[1])[1],
                            _numerical_gradient(lambda a: eca_forward(x, a)[0], w.copy(), dout))),
        ("eca vs band", lambda: (eca_forward(x, w)[0], eca_band_forward(x, w)[0])),
        ("se dx", lambda: (se_backward(dout, se_forward(x, w1, w2)[1])[0],
                           _numerical_gradient(lambda a: se_forward(a, w1, w2)[0], x.copy(), dout))),
        ("se dw1", lambda: (se_backward(dout, se_forward(x, w1, w2)[1])[1],
                            _numerical_gradient(lambda a: se_forward(x, a, w2)[0], w1.copy(), dout))),
        ("se dw2", lambda: (se_backward(dout, se_forward(x, w1, w2)[1])[2],
                            _numerical_gradient(lambda a: se_forward(x, w1, a)[0], w2.copy(), dout))),
    ]
    for name, run in checks:
        try:
            analytic, numerical = run()
            err = _error(np.asarray(analytic), np.asarray(numerical))
            print(f"{name:12s} error {err:.1e}  {'ok' if err < 1e-6 else 'WRONG'}")
        except NotImplementedError:
            print(f"{name:12s} not implemented yet")
        except Exception as exc:  # show the problem, go on with the next check
            print(f"{name:12s} {type(exc).__name__}: {exc}")
    try:
        got = [kernel_size(C) for C in (4, 8, 64, 128, 512, 2048)]
        print(f"kernel_size  {got} (expected [1, 3, 3, 5, 5, 7])")
    except NotImplementedError:
        print("kernel_size  not implemented yet")


if __name__ == "__main__":
    _self_check()
