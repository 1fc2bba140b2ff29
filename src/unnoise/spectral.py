"""Spectral features of 1-D signals and a Frechet distance between feature sets.

Used to judge generated audio: a clip ``(channels, length)`` becomes a log-mel spectrogram, whose
per-band mean and standard deviation over time summarise pitch content and envelope; the Frechet
distance between Gaussian fits of two sets of such summaries measures how far apart the sets are
(the same construction as FID, on hand-made audio features instead of a pretrained network).
"""
from __future__ import annotations

import torch


def hz_to_mel(f):
    """HTK mel scale: ``2595 log10(1 + f / 700)``."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)


def mel_to_hz(m):
    """Inverse of :func:`hz_to_mel`: ``700 (10^(m / 2595) - 1)``."""
    return 700.0 * (10.0 ** (torch.as_tensor(m, dtype=torch.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, f_min: float = 0.0,
                   f_max: float | None = None) -> torch.Tensor:
    """Triangular mel filters ``(n_mels, n_fft // 2 + 1)``, peaks 1, centres equally spaced in mel."""
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2, got {f_min}, {f_max}, {sample_rate}")
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2))
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return torch.clamp(torch.minimum(up, down), min=0).float()


def stft_magnitude(x: torch.Tensor, n_fft: int = 256, hop: int | None = None) -> torch.Tensor:
    """``|STFT|`` of ``(..., length)`` signals with a periodic Hann window: ``(..., n_fft//2+1, frames)``."""
    hop = hop or n_fft // 4
    if x.shape[-1] < n_fft:
        raise ValueError(f"signals of length {x.shape[-1]} are shorter than the FFT size {n_fft}; "
                         "use a smaller n_fft")
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1]).float()
    spec = torch.stft(flat, n_fft, hop_length=hop, window=torch.hann_window(n_fft), center=True,
                      return_complex=True).abs()
    return spec.reshape(*lead, *spec.shape[-2:])


def log_mel(x: torch.Tensor, sample_rate: int, n_fft: int = 256, hop: int | None = None, n_mels: int = 32,
            floor: float = 1e-5) -> torch.Tensor:
    """Log mel power spectrogram of ``(..., length)`` signals: ``(..., n_mels, frames)``, natural log."""
    fb = mel_filterbank(n_mels, n_fft, sample_rate)
    power = stft_magnitude(x, n_fft, hop) ** 2
    return torch.log(torch.einsum("mf,...ft->...mt", fb, power) + floor)


def clip_features(x: torch.Tensor, sample_rate: int, n_fft: int = 256, n_mels: int = 32) -> torch.Tensor:
    """One feature vector per clip of ``(N, channels, length)`` audio: ``(N, 2 * n_mels)``.

    The per-band mean of the log-mel spectrogram over time (what pitches, how loud) followed by its
    per-band standard deviation (how the level changes: the envelope); channels are averaged first.
    """
    if x.ndim != 3:
        raise ValueError(f"clips must have shape (N, channels, length), got {tuple(x.shape)}")
    lm = log_mel(x.float().mean(1), sample_rate, n_fft, n_mels=n_mels)
    return torch.cat([lm.mean(-1), lm.std(-1)], dim=1)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussian fits of two feature sets ``(N, d)`` and ``(M, d)``.

    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)``: the squared 2-Wasserstein
    distance between the two Gaussians.  Computed in float64 through symmetric eigendecompositions.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be (N, d) and (M, d), got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(len(a), len(b)) < 2:
        raise ValueError("each feature set needs at least 2 rows to estimate a covariance")
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    w, v = torch.linalg.eigh(cov_a)
    root_a = (v * w.clamp_min(0).sqrt()) @ v.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    fd = ((mu_a - mu_b) ** 2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * cross
    return float(fd.clamp_min(0))


def spectral_convergence(x: torch.Tensor, y: torch.Tensor, n_fft: int = 256) -> torch.Tensor:
    """``|| |X| - |Y| ||_F / || |Y| ||_F`` per pair of ``(N, channels, length)`` clips: ``(N,)``."""
    mx, my = stft_magnitude(x, n_fft), stft_magnitude(y, n_fft)
    return (mx - my).flatten(1).norm(dim=1) / my.flatten(1).norm(dim=1).clamp_min(1e-12)


__all__ = ["clip_features", "frechet_distance", "hz_to_mel", "log_mel", "mel_filterbank", "mel_to_hz",
           "spectral_convergence", "stft_magnitude"]
