"""Categorical diffusion (absorbing and marginal processes) against exact ground truths: closed-form transition
matrices and posteriors, the NELBO of exact denoisers (equal to -log p(x) where the theory says so), exact
ancestral sampling of independent tokens, convergence on a Markov chain, kept tokens and guidance."""
import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from unnoise import analytic, categorical, processes, schedules
from unnoise.categorical import CategoricalDenoiser, Marginal, Masked, NoiseLevels

K = 3


def _processes(levels=None):
    return [Masked(K, levels), Marginal(torch.tensor([0.5, 0.3, 0.2]), levels), Marginal.uniform(K, levels)]


@pytest.fixture(scope="module")
def product():
    g = torch.Generator().manual_seed(7)
    return analytic.ProductCategorical(torch.rand(3, K, generator=g, dtype=torch.float64) + 0.2)


@pytest.fixture(scope="module")
def chain():
    return analytic.MarkovChain(torch.tensor([0.2, 0.3, 0.5]),
                                torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.45, 0.45, 0.1]]), 4)


def _chi2_ok(counts, probs, alpha=1e-3):
    counts, probs = np.asarray(counts, float).ravel(), np.asarray(probs, float).ravel()
    stat = ((counts - counts.sum() * probs) ** 2 / (counts.sum() * probs)).sum()
    return stat < stats.chi2.ppf(1 - alpha, counts.size - 1), stat


def _pairs(x, i, j):
    return torch.bincount(x[:, i] * K + x[:, j], minlength=K * K)


# ------------------------------------------------------------------ closed forms
@pytest.mark.parametrize("process", _processes(), ids=["masked", "marginal", "uniform"])
def test_one_step_transitions_multiply_to_closed_form_and_keep_the_stationary_law(process):
    levels = [0.0, 0.3, 0.7, 1.6, 4.0]
    prod = torch.eye(process.num_states, dtype=torch.float64)
    for s, t in zip(levels[:-1], levels[1:]):
        q = process.transition(s, t)
        assert torch.allclose(q.sum(1), torch.ones(process.num_states, dtype=torch.float64))
        pi = process.stationary()
        assert torch.allclose(pi @ q, pi, atol=1e-15)  # m^T Q_t = m^T
        prod = prod @ q
    qbar = process.marginal_transition(4.0)
    alpha = math.exp(-4.0)
    assert torch.allclose(prod, qbar, atol=1e-14)
    assert torch.allclose(qbar, alpha * torch.eye(process.num_states, dtype=torch.float64)
                          + (1 - alpha) * process.stationary().expand(process.num_states, -1), atol=1e-15)


@pytest.mark.parametrize("process", _processes(), ids=["masked", "marginal", "uniform"])
def test_corruption_follows_the_marginal_transition(process):
    g = torch.Generator().manual_seed(0)
    n, sigma = 40000, 0.9
    x0 = torch.arange(K).repeat_interleave(n // K)
    x_t = process.corrupt(x0, torch.full((x0.shape[0],), sigma), process.noise(x0.shape, g))
    qbar = process.marginal_transition(sigma)
    for c in range(K):
        counts = torch.bincount(x_t[x0 == c], minlength=process.num_states)
        ok, stat = _chi2_ok(counts[qbar[c] > 0], qbar[c][qbar[c] > 0])
        assert ok, (c, stat)
        assert counts[qbar[c] == 0].sum() == 0
    u = process.noise(x0.shape, g)  # a pure function of (x0, sigma, u)
    assert torch.equal(process.corrupt(x0, sigma, u), process.corrupt(x0, sigma, u.clone()))


@pytest.mark.parametrize("process", _processes(), ids=["masked", "marginal", "uniform"])
def test_posterior_is_bayes_rule_summed_over_the_predicted_x0(process):
    g = torch.Generator().manual_seed(1)
    s, t = 0.4, 1.3
    q_ts, qbar_s, qbar_t = process.transition(s, t), process.marginal_transition(s), process.marginal_transition(t)
    for k in range(process.num_states):
        x_t = torch.tensor([k])
        p = torch.rand(1, K, generator=g, dtype=torch.float64)
        if isinstance(process, Masked) and k < K:
            p = torch.nn.functional.one_hot(x_t, K).double()  # the exact denoiser carries unmasked tokens over
        p = p / p.sum()
        expected = torch.zeros(process.num_states, dtype=torch.float64)
        for i in range(K):
            if qbar_t[i, k] > 0:
                expected += p[0, i] * q_ts[:, k] * qbar_s[i] / qbar_t[i, k]
        got = process.posterior(x_t, p, t, s)[0]
        assert torch.allclose(got, expected / expected.sum(), atol=1e-12), k
        assert abs(float(expected.sum()) - 1) < 1e-12


# ------------------------------------------------------------------ NELBO of exact denoisers
def _noise_atoms(process, x0_token, sigma):
    """The distinct outcomes of one token's corruption as (uniform draw, probability) pairs."""
    alpha = math.exp(-sigma)
    atoms = [(0.5 * (1 - alpha) + 0.5, alpha)] if alpha > 0 else []  # kept
    cdf = np.concatenate([[0.0], np.cumsum(process.stationary().numpy())])
    for j in range(process.num_states):
        lo, hi = cdf[j], cdf[j + 1]
        if hi > lo:
            atoms.append(((1 - alpha) * 0.5 * (lo + hi), (1 - alpha) * (hi - lo)))
    return atoms


def _expected(fn, process, x0, sigma):
    """E over x_sigma ~ q(. | x0) of fn(x_t batch, noise batch) (B,), by enumerating every corruption."""
    per_token = [_noise_atoms(process, int(c), sigma) for c in x0]
    combos = list(itertools.product(*per_token))
    noise = torch.tensor([[u for u, _ in c] for c in combos], dtype=torch.float64)
    weight = torch.tensor([math.prod(w for _, w in c) for c in combos], dtype=torch.float64)
    return (weight * fn(x0.expand(len(combos), -1), noise)).sum()


def _exact_nelbo_in_alpha(denoiser, process, x0, points=48):
    """int_0^inf d sigma E[integrand] (categorical.quadrature's nodes) with every corruption enumerated."""
    total = 0.0
    for a, w in zip(*categorical.quadrature(points)):
        sig = -math.log(a)

        def integrand(x0s, noise):
            sigma = torch.full((x0s.shape[0],), sig, dtype=torch.float64)
            x_t = process.corrupt(x0s, sigma, noise)
            return process.integrand(x0s, x_t, denoiser(x_t, sigma).double(), sigma)
        total += w * float(_expected(integrand, process, x0, sig))
    return total


def _exact_loss_in_time(denoiser, process, x0, points=48):
    """int_0^1 dt E[process.loss at sigma_t]: the training loss's expectation over t and the corruption."""
    nodes, weights = np.polynomial.legendre.leggauss(points)
    total = 0.0
    for t, w in zip((nodes + 1) / 2, weights / 2):
        sig = float(process.levels.sigma(torch.tensor(t)))

        def loss(x0s, noise):
            return process.loss(denoiser, x0s, torch.full((x0s.shape[0],), sig, dtype=torch.float64), noise)
        total += w * float(_expected(loss, process, x0, sig))
    return total


@pytest.mark.parametrize("levels", [NoiseLevels("loglinear", 0.0), NoiseLevels("cosine", 0.0)], ids=["loglinear", "cosine"])
@pytest.mark.parametrize("which", ["masked", "uniform"])
def test_nelbo_of_the_exact_denoiser_of_independent_tokens_is_minus_log_p(product, levels, which):
    process = Masked(K, levels) if which == "masked" else Marginal.uniform(K, levels)
    d = product.denoiser(process)
    for x0 in (torch.tensor([0, 2, 1]), torch.tensor([2, 2, 0])):
        exact = -float(product.log_prob(x0[None]))
        assert _exact_nelbo_in_alpha(d, process, x0, 64) == pytest.approx(exact, rel=1e-8)
        # the training loss (importance-weighted over t ~ U[0, 1] of the noise levels) has the same expectation
        assert _exact_loss_in_time(d, process, x0, 8 if which == "masked" else 160) == \
            pytest.approx(exact, rel=1e-9 if which == "masked" else 2e-3)


def test_nelbo_of_marginal_process_with_data_marginals_is_minus_log_p(product):
    process = Marginal(product.probs.mean(0))
    x0 = torch.tensor([1, 0, 2])
    got = _exact_nelbo_in_alpha(product.denoiser(process), process, x0, 64)
    assert got == pytest.approx(-float(product.log_prob(x0[None])), rel=1e-8)


@pytest.mark.parametrize("which", ["masked", "uniform"])
def test_continuous_nelbo_of_the_exact_markov_denoiser_is_minus_log_p(chain, which):
    """Dependent tokens too: the reverse process of continuous time changes one token at a time, and its rates
    need only the per-token posteriors that forward-backward gives exactly."""
    process = Masked(K) if which == "masked" else Marginal.uniform(K)
    for x0 in (torch.tensor([0, 0, 2, 1]), torch.tensor([2, 1, 2, 0])):
        exact = -float(chain.log_prob(x0[None]))
        # the masked density of L = 4 tokens is a polynomial of degree 11 in the quadrature variable: 6 nodes are exact
        points = 6 if which == "masked" else 64
        assert _exact_nelbo_in_alpha(chain.denoiser(process), process, x0, points) == pytest.approx(exact, rel=1e-9)


def test_nelbo_function_is_unbiased_and_in_bits(product):
    process = Masked(K)
    x0 = torch.tensor([0, 2, 1]).expand(3000, -1)
    d = product.denoiser(process)
    est = categorical.nelbo(d, process, x0, points=8)
    exact = -float(product.log_prob(x0[:1]))
    assert abs(float(est.mean()) - exact) < 4 * float(est.std()) / math.sqrt(len(est))
    assert torch.equal(est, categorical.nelbo(d, process, x0, points=8))  # deterministic by default
    bits = categorical.bits_per_token(d, process, x0[:5], points=8)
    assert torch.allclose(bits, categorical.nelbo(d, process, x0[:5], points=8) / (3 * math.log(2)))
    mc = categorical.nelbo(d, process, x0, points=2, method="mc", generator=torch.Generator().manual_seed(3))
    assert abs(float(mc.mean()) - exact) < 4 * float(mc.std()) / math.sqrt(len(mc)) + 0.01  # eps=1e-3 tail


def test_masked_loss_is_the_mdlm_weighted_cross_entropy():
    g = torch.Generator().manual_seed(2)
    process = Masked(5, NoiseLevels("loglinear", 1e-3))
    logits = torch.randn(4, 6, 5, generator=g, dtype=torch.float64)
    x0 = torch.randint(0, 5, (4, 6), generator=g)
    sigma = torch.tensor([0.1, 0.5, 1.0, 3.0], dtype=torch.float64)
    noise = process.noise(x0.shape, g, dtype=torch.float64)
    d = lambda x, s, c=None: torch.log_softmax(logits, -1)
    x_t = process.corrupt(x0, sigma, noise)
    alpha = torch.exp(-sigma)
    ce = -torch.log_softmax(logits, -1).gather(-1, x0[..., None])[..., 0]
    expected = ((x_t == 5) * ce).sum(1) * (1 - 1e-3) / (1 - alpha)  # -alpha'_t / (1 - alpha_t) x masked CE
    assert torch.allclose(process.loss(d, x0, sigma, noise), expected, rtol=1e-5)


def test_crossentropy_loss_is_the_mean_clean_cross_entropy_over_the_tokens_noise_may_have_changed():
    """DiGress's loss: for a masked process the mean cross-entropy over masked tokens, which times their number and
    the NELBO weight (1 - eps) / (1 - alpha) is the NELBO estimate; for a marginal process the mean over every
    token, the clean ones included (the network cannot tell them apart)."""
    g = torch.Generator().manual_seed(5)
    x0 = torch.randint(0, 5, (4, 6), generator=g)
    logits = torch.randn(4, 6, 5, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.1, 0.5, 1.0, 3.0], dtype=torch.float64)
    ce = -torch.log_softmax(logits, -1).gather(-1, x0[..., None])[..., 0]
    masked = Masked(5, NoiseLevels("loglinear", 1e-3))
    noise = masked.noise(x0.shape, g, dtype=torch.float64)
    d = lambda x, s, c=None: torch.log_softmax(logits, -1)
    x_t = masked.corrupt(x0, sigma, noise)
    count = (x_t == 5).sum(1)
    assert (count > 0).all()
    loss = masked.loss(d, x0, sigma, noise, weighting="crossentropy")
    torch.testing.assert_close(loss, ((x_t == 5) * ce).sum(1) / count)
    nelbo = masked.loss(d, x0, sigma, noise)
    torch.testing.assert_close(nelbo, loss * count * (1 - 1e-3) / (1 - torch.exp(-sigma)))
    marginal = Marginal(torch.tensor([0.4, 0.3, 0.1, 0.1, 0.1]))
    torch.testing.assert_close(marginal.loss(d, x0, sigma, noise, weighting="crossentropy"), ce.mean(1))
    with pytest.raises(ValueError, match="NELBO .uniform. or on crossentropy, not 'min_snr'"):
        marginal.loss(d, x0, sigma, noise, weighting="min_snr")


def test_crossentropy_is_refused_for_gaussian_data_in_one_line():
    from unnoise.losses import x0_weight
    with pytest.raises(ValueError, match="'crossentropy' loss is for categorical data"):
        x0_weight("crossentropy", torch.ones(2), torch.ones(2))


# ------------------------------------------------------------------ sampling
@pytest.mark.parametrize("steps", [1, 2, 9])
@pytest.mark.parametrize("which", ["masked", "marginal"])
def test_ancestral_sampling_of_independent_tokens_is_exact_at_any_step_count(product, steps, which):
    process = Masked(K) if which == "masked" else Marginal(torch.tensor([0.2, 0.5, 0.3]))
    g = torch.Generator().manual_seed(steps)
    x = categorical.sample(product.denoiser(process), process, (6000, 3), steps, generator=g)
    assert x.dtype == torch.long and int(x.max()) < K
    joint = (product.probs[0][:, None] * product.probs[2][None, :]).flatten()
    ok, stat = _chi2_ok(_pairs(x, 0, 2), joint)
    assert ok, stat
    ok, stat = _chi2_ok(torch.bincount(x[:, 1], minlength=K), product.probs[1])
    assert ok, stat


def test_markov_chain_pair_frequencies_converge_as_steps_grow(chain):
    process = Masked(K)
    exact = (chain.initial[:, None] * chain.transition).flatten()  # (x_1, x_2) pairs
    tv = {}
    for steps in (1, 4, 64):
        x = categorical.sample(chain.denoiser(process), process, (6000, 4), steps,
                               generator=torch.Generator().manual_seed(steps))
        freq = _pairs(x, 0, 1).double() / len(x)
        tv[steps] = 0.5 * float((freq - exact).abs().sum())
        if steps == 64:
            assert _chi2_ok(_pairs(x, 0, 1), exact)[0]
    assert tv[1] > 0.15 and tv[4] < tv[1] and tv[64] < 0.03, tv


def test_cached_sampling_gives_the_same_tokens_with_fewer_calls(chain):
    process = Masked(K)
    d = chain.denoiser(process)
    out = {}
    for cached in (True, False):
        out[cached] = categorical.sample(d, process, (2, 4), 100, generator=torch.Generator().manual_seed(0),
                                         cached=cached, return_calls=True)
    assert torch.equal(out[True][0], out[False][0])
    # each of the 8 tokens is unmasked once, so at most 8 steps change anything: at most 1 + 8 calls
    assert out[False][1] == 100 and out[True][1] <= 9


@pytest.mark.parametrize("which", ["masked", "marginal"])
def test_given_tokens_come_back_unchanged_and_masked_conditionals_are_exact(chain, which):
    process = Masked(K) if which == "masked" else Marginal.uniform(K)
    g = torch.Generator().manual_seed(5)
    n = 6000
    known = torch.randint(0, K, (n, 4), generator=g)
    mask = torch.zeros(n, 4, dtype=torch.bool)
    mask[:, 0] = True
    mask[::3, 3] = True
    x = categorical.sample(chain.denoiser(process), process, (n, 4), 16, generator=g, known=known, known_mask=mask)
    assert torch.equal(x[mask], known[mask])
    if which == "masked":  # x_2 | x_1 = c follows the chain's transition row c
        rows = ~mask[:, 3] & (known[:, 0] == 2)
        ok, stat = _chi2_ok(torch.bincount(x[rows, 1], minlength=K), chain.transition[2])
        assert ok, stat


def test_classifier_free_guidance_tilts_the_logits(product):
    process = Masked(K)
    other = analytic.ProductCategorical(product.probs.flip(-1))
    dc, du = product.denoiser(process), other.denoiser(process)
    d = lambda x, s, cond=None: dc(x, s) if int(cond["label"][0]) == 1 else du(x, s)
    w = 2.0
    x = categorical.sample(d, process, (6000, 3), 1, generator=torch.Generator().manual_seed(9),
                           cond={"label": torch.ones(6000, dtype=torch.long)},
                           null_cond={"label": torch.zeros(6000, dtype=torch.long)}, guidance_scale=w)
    tilted = product.probs ** w * other.probs ** (1 - w)
    tilted = tilted / tilted.sum(-1, keepdim=True)
    for i in range(3):
        ok, stat = _chi2_ok(torch.bincount(x[:, i], minlength=K), tilted[i])
        assert ok, (i, stat)


# ------------------------------------------------------------------ the wrapper, schedule and errors
class _Logits(torch.nn.Module):
    def __init__(self, k):
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(k + 1, k))
        self.config = {"k": k}

    def forward(self, x, c_noise, cond=None):
        return self.table[x] + c_noise.reshape(-1, *([1] * (x.ndim))) * 0


def test_categorical_denoiser_never_predicts_the_mask_and_carries_clean_tokens_over():
    process = Masked(K)
    d = CategoricalDenoiser(_Logits(K), process)
    x = torch.tensor([[0, 3, 2, 3], [3, 3, 1, 0]])
    out = d(x, torch.tensor([0.5, 2.0]))
    assert out.shape == (2, 4, K)  # the mask has no class at all: its log-probability is -inf by construction
    assert torch.allclose(out.exp().sum(-1), torch.ones(2, 4))
    clean = x != K
    assert torch.equal(out.argmax(-1)[clean], x[clean]) and (out[clean].exp().max(-1).values == 1).all()
    again = CategoricalDenoiser.from_description(_Logits(K), d.describe())
    assert isinstance(again.categorical, Masked) and not again.time_conditioned


def test_categorical_schedule_owns_its_process_and_round_trips():
    sched = schedules.get("categorical", process=Marginal(torch.tensor([1.0, 3.0]), {"name": "cosine"}).config())
    again = schedules.get(**sched.config())
    assert isinstance(again.forward, processes.Marginal) and again.forward.levels.name == "cosine"
    assert torch.allclose(again.forward.marginals, torch.tensor([0.25, 0.75], dtype=torch.float64))
    grid = again.sampling_sigmas(5)
    assert math.isinf(grid[0]) and grid[-1] == 0 and (grid[:-1] > grid[1:]).all()
    # stratified training levels: one uniform per batch, t_i = t_min + (1 - t_min) ((u + i/n) mod 1)
    masked = schedules.get("categorical", process=Masked(K).config())
    t = masked.forward.levels.time(masked.sample_training_sigmas(64, torch.Generator().manual_seed(4)).double())
    gaps = torch.diff(torch.sort(t).values)
    assert torch.allclose(gaps, torch.full_like(gaps, (1 - 1e-3) / 64), atol=1e-5) and float(t.min()) >= 1e-3 - 1e-7
    lv = NoiseLevels("cosine", 1e-3)
    t = torch.linspace(0.01, 0.99, 7, dtype=torch.float64)
    assert torch.allclose(lv.time(lv.sigma(t)), t)
    h = 1e-6
    assert torch.allclose(lv.rate(t), (lv.sigma(t + h) - lv.sigma(t - h)) / (2 * h), rtol=1e-6)


def test_bad_categorical_input_is_one_clear_error():
    with pytest.raises(ValueError, match="positive for every class"):
        Marginal(torch.tensor([0.5, 0.0, 0.5]))
    with pytest.raises(ValueError, match="integer class indices"):
        Masked(3).corrupt(torch.zeros(2, 3), 1.0, torch.rand(2, 3))
    with pytest.raises(ValueError, match="unknown categorical process"):
        processes.CategoricalProcess.from_config({"name": "gaussian"})
    with pytest.raises(ValueError, match="known tokens must be classes"):
        categorical.sample(lambda x, s, c=None: torch.zeros(*x.shape, 3), Masked(3), (1, 2), 2,
                           known=torch.tensor([[0, 3]]), known_mask=torch.tensor([[True, True]]))


def test_the_trainer_fits_a_masked_transformer_to_its_nelbo_and_checkpoints_round_trip(tmp_path):
    """The ordinary Trainer trains a categorical denoiser (the schedule owns the process); the learned NELBO of
    independent tokens comes within a few hundredths of a nat of the exact -log p(x), and the loaded run is the
    same denoiser."""
    import unnoise
    from unnoise import nets
    from unnoise.train import TrainConfig, Trainer
    g = torch.Generator().manual_seed(0)
    truth = analytic.ProductCategorical(torch.rand(6, 4, generator=g) ** 3 + 0.02)
    process = Masked(4)
    sched = schedules.get("categorical", process=process.config())
    net = nets.build("transformer", vocab_size=5, num_outputs=4, seq_len=6, hidden=32, layers=1, heads=2)
    cfg = TrainConfig(steps=250, batch_size=64, lr=3e-3, log_every=250, device="cpu", checkpoint_every=0)
    trainer = Trainer(CategoricalDenoiser(net, sched.forward), sched, truth.sample(2000, g), cfg,
                      run_dir=str(tmp_path / "run"), info={"kind": "tokens"})
    trainer.fit(progress=False)
    x = truth.sample(400, g)
    learned = categorical.nelbo(trainer.ema, sched.forward, x)
    assert float(learned.mean()) == pytest.approx(float(-truth.log_prob(x).mean()), abs=0.05)
    den, sched2, _ = unnoise.checkpoint.load(str(tmp_path / "run"))
    assert isinstance(den, CategoricalDenoiser) and isinstance(sched2.forward, Masked)
    assert torch.equal(categorical.nelbo(den, sched2.forward, x), learned)
