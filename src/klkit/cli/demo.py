"""klkit demo: the classic worked examples of KL divergence, every number
computed with klkit.

  1. A weather forecast against a coin flip: KL is not symmetric.
  2. Coin flips: KL(data || model) is smallest at the data's own frequency.
  3. Maximum likelihood is forward-KL minimisation: the mean negative
     log-likelihood of the data is H(data) + KL(data || model).
  4. Mode covering and mode seeking: one Gaussian fitted to two peaks by
     forward KL (wide, over both) and by reverse KL (narrow, on one).

--plot FILE.png draws example 4 (needs matplotlib: pip install "klkit[plot]").
"""
import argparse
import math
import os
import tempfile

import numpy as np

from . import CliError

#: example 4: the two-peak target, the x grid, and the (mu, sigma) grid searched
PEAKS = (-3.0, 3.0)
PEAK_SD = 1.0
X_GRID = (-10.0, 10.0, 2001)
MU_GRID = (-5.0, 5.0, 101)        # steps of 0.1
SIGMA_GRID = (0.5, 5.0, 91)       # steps of 0.05


def add_parser(sub, name):
    p = sub.add_parser(name, help="the classic worked examples of KL divergence",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plot", metavar="FILE.png",
                   help="also draw the two-peak example (mixture and both fits) as a PNG")
    return p


# --------------------------------------------------------------------------
# the examples (each returns its numbers; report() prints them)
# --------------------------------------------------------------------------

def weather():
    """P = rain 70% / sun 30% (a forecast), Q = 50/50 (a coin flip)."""
    import klkit as kk

    p, q = np.array([0.7, 0.3]), np.array([0.5, 0.5])
    return dict(p=p, q=q,
                kl_pq=float(kk.kl_div(p, q, kind="probs")),
                kl_qp=float(kk.kl_div(q, p, kind="probs")),
                kl_pq_bits=float(kk.kl_div(p, q, kind="probs", base=2)),
                kl_qp_bits=float(kk.kl_div(q, p, kind="probs", base=2)))


def coins(heads=70, flips=100, models=(0.5, 0.6, 0.7, 0.8)):
    """KL(data || model) of the observed (heads, tails) frequencies against
    coins with p(heads) in `models`."""
    import klkit as kk

    data = np.array([heads / flips, 1 - heads / flips])
    m = np.asarray(models, dtype=np.float64)
    kl = kk.kl_div(data, np.stack([m, 1 - m], axis=-1), kind="probs")
    return dict(heads=heads, flips=flips, models=m, kl=kl, best=float(m[np.argmin(kl)]))


def mle(heads=70, flips=100, grid=None):
    """Scan p(heads) over `grid`: KL(data || model_p), and the mean negative
    log-likelihood of the flips themselves (klkit.token_logprobs of each
    flip under each model), which equals H(data) + KL(data || model_p)."""
    import klkit as kk

    grid = np.round(np.linspace(0.01, 0.99, 99), 10) if grid is None else np.asarray(grid)
    data = np.array([heads / flips, 1 - heads / flips])
    models = np.stack([grid, 1 - grid], axis=-1)                  # [G, 2]: heads, tails
    kl = kk.kl_div(data, models, kind="probs")
    outcomes = np.repeat([0, 1], [heads, flips - heads])          # 0 = heads, 1 = tails
    logp = np.broadcast_to(np.log(models)[:, None, :], (grid.size, flips, 2))
    nll = -kk.token_logprobs(logp, np.broadcast_to(outcomes, (grid.size, flips))).mean(-1)
    h = float(kk.entropy(data, kind="probs"))
    return dict(grid=grid, kl=kl, nll=nll, entropy=h,
                argmin_kl=float(grid[np.argmin(kl)]), argmin_nll=float(grid[np.argmin(nll)]),
                mle=heads / flips, identity_gap=float(np.max(np.abs(nll - (h + kl)))))


def _gauss_logits(x, mu, sigma):
    """Log-density of N(mu, sigma) at x, up to a constant (normalised later
    over the grid)."""
    z = (x - mu) / sigma
    return -0.5 * z * z


def modes():
    """Fit one Gaussian N(mu, sigma) to an equal mixture of N(-3, 1) and
    N(+3, 1) on a grid, by forward KL(mix || N) and by reverse KL(N || mix),
    searching a (mu, sigma) grid.  Every distribution is the grid's
    normalised log-probabilities (klkit.log_softmax of the log-density), and
    the KLs are klkit.kl_div(kind="logprobs") over the grid."""
    import klkit as kk

    x = np.linspace(*X_GRID)
    comp = np.stack([_gauss_logits(x, m, PEAK_SD) for m in PEAKS])
    lp_mix = kk.log_softmax(kk.logsumexp(comp, axis=0), axis=-1)           # equal weights
    mus = np.round(np.linspace(*MU_GRID), 10)
    sigmas = np.round(np.linspace(*SIGMA_GRID), 10)
    fwd = np.empty((mus.size, sigmas.size))
    rev = np.empty((mus.size, sigmas.size))
    half_d2 = _gauss_logits(x[None, :], mus[:, None], 1.0)         # [mu, x]: -(x - mu)^2 / 2
    for j, s in enumerate(sigmas):
        lq = kk.log_softmax(half_d2 / (s * s), axis=-1)             # N(mu, s) for every mu
        fwd[:, j] = kk.kl_div(lp_mix, lq, kind="logprobs")
        rev[:, j] = kk.kl_div(lq, lp_mix, kind="logprobs")

    def fit(table):
        i, j = np.unravel_index(np.argmin(table), table.shape)
        mu, sigma = float(mus[i]), float(sigmas[j])
        lq = kk.log_softmax(_gauss_logits(x, mu, sigma), axis=-1)
        return dict(mu=mu, sigma=sigma, logprobs=lq,
                    forward=float(kk.kl_div(lp_mix, lq, kind="logprobs")),
                    reverse=float(kk.kl_div(lq, lp_mix, kind="logprobs")))

    f, r = fit(fwd), fit(rev)
    mirror = kk.log_softmax(_gauss_logits(x, -r["mu"], r["sigma"]), axis=-1)
    return dict(x=x, logprobs=lp_mix, mus=mus, sigmas=sigmas, forward_fit=f, reverse_fit=r,
                mirror_reverse=float(kk.kl_div(mirror, lp_mix, kind="logprobs")))


# --------------------------------------------------------------------------
# report and plot
# --------------------------------------------------------------------------

def report(w, c, m, g):
    """The printed report of the four examples' results."""
    ln2 = math.log(2.0)
    f, r = g["forward_fit"], g["reverse_fit"]
    lines = [
        "KL divergence, worked examples (every number computed with klkit)",
        "",
        "1. Weather: a forecast P (rain 70%, sun 30%) against a coin flip Q (50/50)",
        f"   KL(P||Q) = {w['kl_pq']:.4f} nats = {w['kl_pq_bits']:.4f} bits",
        f"   KL(Q||P) = {w['kl_qp']:.4f} nats = {w['kl_qp_bits']:.4f} bits",
        "   KL is not symmetric: the cost of using Q when the truth is P differs",
        "   from the cost of using P when the truth is Q.",
        "",
        f"2. Coin flips: {c['heads']} heads in {c['flips']} flips, against coins with "
        "p(heads) =",
    ]
    kmin = int(np.argmin(c["kl"]))
    for k, (p, kl) in enumerate(zip(c["models"], c["kl"])):
        mark = "  <- smallest: the data's own frequency" if k == kmin else ""
        lines.append(f"   {p:.1f}: KL(data||model) = {kl:.4f} nats{mark}")
    i50 = int(np.argmin(np.abs(m["grid"] - 0.5)))
    lines += [
        "",
        "3. Maximum likelihood = forward-KL minimisation: the same flips, p(heads) scanned",
        f"   over {m['grid'][0]:.2f}..{m['grid'][-1]:.2f} ({m['grid'].size} values)",
        f"   p minimising KL(data||model_p):                {m['argmin_kl']:.2f}",
        f"   p minimising the mean negative log-likelihood: {m['argmin_nll']:.2f}",
        f"   maximum-likelihood estimate heads / flips:     {m['mle']:.2f}",
        "   The mean negative log-likelihood of the flips is H(data) + KL(data||model) at",
        f"   every p (e.g. p = 0.50: {m['nll'][i50]:.4f} = {m['entropy']:.4f} + "
        f"{m['kl'][i50]:.4f}; largest difference {m['identity_gap']:.1e}),",
        "   and H(data) does not depend on the model: maximising the likelihood minimises",
        "   KL(data||model).",
        "",
        "4. Mode covering vs mode seeking: an equal mixture of N(-3, 1) and N(+3, 1) on",
        f"   {g['x'].size} points of [{g['x'][0]:g}, {g['x'][-1]:g}], fitted by one Gaussian "
        "N(mu, sigma) searched over",
        f"   {g['mus'].size} mu x {g['sigmas'].size} sigma values:",
        f"   {'':30s} {'mu':>5s}  {'sigma':>5s}  {'KL(mix||N)':>10s}  {'KL(N||mix)':>10s}",
    ]
    for label, fit in (("minimising forward KL(mix||N)", f),
                       ("minimising reverse KL(N||mix)", r)):
        lines.append(f"   {label:30s} {fit['mu']:+5.2f}  {fit['sigma']:5.2f}  "
                     f"{fit['forward']:10.4f}  {fit['reverse']:10.4f}")
    lines += [
        "   Forward KL (what maximum likelihood minimises) is mode covering: wherever the",
        "   mixture has mass the fit must too, so it spreads wide over both peaks and the",
        "   empty valley between them.",
        "   Reverse KL is mode seeking: wherever the fit has mass the mixture must too, so it",
        f"   locks onto one peak (the mirror fit at mu = {-r['mu']:+.2f} is as good: "
        f"{g['mirror_reverse']:.4f}) and pays",
        f"   about log 2 = {ln2:.4f} for ignoring the other half of the mixture.",
    ]
    return "\n".join(lines)


def _matplotlib():
    """matplotlib's Agg canvas and Figure, or CliError if it is not installed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise CliError('--plot needs matplotlib: pip install "klkit[plot]"') from None
    return FigureCanvasAgg, Figure


def _check_plot_path(path):
    if not path.lower().endswith(".png"):
        raise CliError(f"--plot writes a PNG: give a file name ending in .png, not {path!r}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CliError(f"--plot: directory {parent} does not exist")
    return parent


def plot(g, path, parent):
    """Draw the mixture and both fits to `path` (a PNG), written to a
    temporary file in the same directory and renamed at the end."""
    FigureCanvasAgg, Figure = _matplotlib()
    x = g["x"]
    dx = x[1] - x[0]
    fig = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    f, r = g["forward_fit"], g["reverse_fit"]
    ax.fill_between(x, np.exp(g["logprobs"]) / dx, color="0.85",
                    label="mixture of N(-3, 1) and N(+3, 1)")
    ax.plot(x, np.exp(f["logprobs"]) / dx, lw=2,
            label=f"forward KL(mix||N) fit: N({f['mu']:+.2f}, {f['sigma']:.2f}), mode covering")
    ax.plot(x, np.exp(r["logprobs"]) / dx, lw=2, ls="--",
            label=f"reverse KL(N||mix) fit: N({r['mu']:+.2f}, {r['sigma']:.2f}), mode seeking")
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.set_title("One Gaussian fitted to two peaks: forward vs reverse KL")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                   dir=parent)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)          # mkstemp's file is private (0600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def run(args):
    parent = None
    if args.plot:
        parent = _check_plot_path(args.plot)
        _matplotlib()                      # fail before the work if it is missing
    g = modes()
    print(report(weather(), coins(), mle(), g))
    if args.plot:
        plot(g, args.plot, parent)
        print(f"\nplot written to {args.plot}")
    return 0
