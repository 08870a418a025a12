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
# Run ``python eca_assignment.py`` (in Jupyter: run the last cell). Each
# backward is compared with central differences of YOUR forward; the forwards
# are checked for their types and shapes, on known answers (a shift kernel,
# large |z|), and against each other (1D conv vs band matrix). Every line
# should end in "ok". A check that never ends points at an endless loop.
import contextlib  # noqa: E402 (the self-check's own imports)
import io  # noqa: E402


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


def _out(result, shape, what):
    """The array a function returned, after checking it is a float64 array of the given shape."""
    if what.endswith("_forward"):
        if not isinstance(result, tuple) or len(result) != 2:
            raise TypeError(f"{what} must return (out, cache), got {type(result).__name__}")
        result = result[0]
    if not isinstance(result, np.ndarray) or result.dtype != np.float64:
        raise TypeError(f"{what} must return a float64 NumPy array, got {type(result).__name__}")
    if result.shape != tuple(shape):
        raise TypeError(f"{what} returned shape {result.shape}, expected {tuple(shape)}")
    return result


def _self_check():
    rng = np.random.default_rng(0)
    # channel means of size ~1 (a constant per channel on top of the noise), so GAP matters
    x = rng.standard_normal((2, 5, 3, 3)) + rng.standard_normal((2, 5, 1, 1))
    # SE's hidden units: w1 makes some ReLU units on and some off (none near 0), so a backward
    # without the path through GAP -> f -> sigmoid is caught (with every unit off it would not be)
    w1 = rng.standard_normal((3, 5))
    w2 = rng.standard_normal((5, 3))
    z = rng.standard_normal((2, 5))
    w = np.array([0.5, -1.0, 2.0])  # not symmetric: a flipped kernel changes the output
    dout = rng.standard_normal(x.shape)
    N, C = x.shape[:2]

    def fwd(f, *args):
        return _out(f(*args), (N, C) if f is gap_forward else args[0].shape, f.__name__)

    def shift_known():  # w = [1, 0, 0] gives z[n, i] = y[n, i - 1] (and 0 at i = 0): a cross-correlation
        y = x.mean(axis=(2, 3))
        z_known = np.concatenate([np.zeros((N, 1)), y[:, :-1]], axis=1)
        return fwd(eca_forward, x, np.array([1.0, 0.0, 0.0])), x / (1 + np.exp(-z_known))[:, :, None, None]

    checks = [
        ("gap", lambda: (_out(gap_backward(z, gap_forward(x)[1]), x.shape, "gap_backward"),
                         _numerical_gradient(lambda a: fwd(gap_forward, a), x.copy(), z))),
        ("sigmoid", lambda: (_out(sigmoid_backward(z, sigmoid_forward(z)[1]), z.shape, "sigmoid_backward"),
                             _numerical_gradient(lambda a: fwd(sigmoid_forward, a), z.copy(), z))),
        ("sigmoid big", lambda: (fwd(sigmoid_forward, np.array([-800.0, 0.0, 800.0])), np.array([0.0, 0.5, 1.0]))),
        ("eca dx", lambda: (eca_backward(dout, eca_forward(x, w)[1])[0],
                            _numerical_gradient(lambda a: fwd(eca_forward, a, w), x.copy(), dout))),
        ("eca dw", lambda: (eca_backward(dout, eca_forward(x, w)[1])[1],
                            _numerical_gradient(lambda a: fwd(eca_forward, x, a), w.copy(), dout))),
        ("eca shift", shift_known),
        ("eca vs band", lambda: (fwd(eca_forward, x, w), fwd(eca_band_forward, x, w))),
        ("se dx", lambda: (se_backward(dout, se_forward(x, w1, w2)[1])[0],
                           _numerical_gradient(lambda a: fwd(se_forward, a, w1, w2), x.copy(), dout))),
        ("se dw1", lambda: (se_backward(dout, se_forward(x, w1, w2)[1])[1],
                            _numerical_gradient(lambda a: fwd(se_forward, x, a, w2), w1.copy(), dout))),
        ("se dw2", lambda: (se_backward(dout, se_forward(x, w1, w2)[1])[2],
                            _numerical_gradient(lambda a: fwd(se_forward, x, w1, a), w2.copy(), dout))),
    ]
    bad = 0
    for name, run in checks:
        print(f"{name:12s} ", end="", flush=True)  # a check that never finishes stays visible
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                analytic, numerical = run()
            analytic, numerical = np.asarray(analytic), np.asarray(numerical)
            if analytic.shape != numerical.shape:
                verdict = f"shape {analytic.shape}, expected {numerical.shape}  WRONG"
            else:
                err = _error(analytic, numerical)  # "diff": against a known answer
                label = "diff " if name in ("sigmoid big", "eca shift") else "error"
                verdict = f"{label} {err:.1e}  {'ok' if err < 1e-6 else 'WRONG'}"
        except NotImplementedError:
            verdict = "not implemented yet"
        except Exception as exc:  # show the problem, go on with the next check
            verdict = f"{type(exc).__name__}: {exc}  WRONG"
        if len(printed.getvalue()) > 10_000:
            verdict += f"  (and it printed {len(printed.getvalue()):,} characters: remove debugging prints)"
        bad += not verdict.endswith("ok")
        print(verdict)
    print("kernel_size  ", end="", flush=True)
    try:
        got = [kernel_size(C) for C in (4, 8, 64, 128, 512, 2048)]
        ok = got == [1, 3, 3, 5, 5, 7]
        print(f"{got} (expected [1, 3, 3, 5, 5, 7])  {'ok' if ok else 'WRONG'}")
    except NotImplementedError:
        print("not implemented yet")
        ok = False
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}  WRONG")
        ok = False
    bad += not ok
    print("all checks ok" if bad == 0 else f"{bad} check(s) not ok yet")


if __name__ == "__main__":
    _self_check()
