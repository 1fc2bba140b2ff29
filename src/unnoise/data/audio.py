"""Audio: WAV files in and out, resampling, folders of clips, and a built-in synthetic set.

Audio is a float tensor ``(channels, length)`` with values in ``[-1, 1]``.  Integer PCM is mapped by
dividing by ``2^(bits-1)`` (so 16-bit ``k`` becomes ``k / 32768``); writing 16-bit PCM multiplies back
and rounds, which makes a 16-bit read / write round trip bit-exact.  No torchaudio: files are read
(PCM 8/16/24/32-bit and 32/64-bit IEEE float) and written (16-bit PCM, 32-bit float) here, and resampling is a
polyphase filter with SciPy's ``resample_poly`` design (equal to it to rounding, tested).
"""
from __future__ import annotations

import math
import os
import struct
import warnings
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import atomic_write_bytes

WAV_FORMATS = ("pcm16", "float32")


# ----------------------------------------------------------------------------- conversions
def _to_float(arr: np.ndarray, path: str) -> np.ndarray:
    """Integer or float samples -> float32 in [-1, 1], shape (frames, channels)."""
    if arr.dtype == np.uint8:  # 8-bit WAV is unsigned with its zero at 128
        out = (arr.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(arr.dtype, np.signedinteger):
        out = arr.astype(np.float32) / float(2 ** (8 * arr.dtype.itemsize - 1))
    elif np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
    else:
        raise ValueError(f"{path}: unsupported WAV sample type {arr.dtype}")
    return out[:, None] if out.ndim == 1 else out


def convert_channels(audio: torch.Tensor, channels: int, what: str = "audio") -> torch.Tensor:
    """Mono <-> stereo conversion of ``(C, L)`` audio: mono is duplicated, stereo is averaged.

    Any other mismatch (e.g. 6 channels to 2) has no unique answer and raises ``ValueError``.
    """
    have = audio.shape[0]
    if have == channels:
        return audio
    if have == 1:
        return audio.expand(channels, -1).clone()
    if channels == 1:
        return audio.mean(0, keepdim=True)
    raise ValueError(f"{what} has {have} channels but {channels} are needed; only mono <-> multichannel "
                     "conversion is automatic, so convert the file (e.g. down-mix) first")


def resample(audio: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Resample ``(C, L)`` audio from ``orig_rate`` to ``new_rate`` Hz (polyphase FIR).

    The output has ``ceil(L * new_rate / orig_rate)`` samples.  The filter is SciPy's ``resample_poly`` default
    (a Kaiser-windowed sinc, beta 5), so content above the lower Nyquist frequency is removed and the result
    equals ``scipy.signal.resample_poly(audio, up, down, axis=-1)`` to rounding.
    """
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} and {new_rate}")
    if orig_rate == new_rate:
        return audio
    ratio = Fraction(int(new_rate), int(orig_rate))
    return resample_poly(audio, ratio.numerator, ratio.denominator).to(audio.dtype)


def _lowpass(up: int, down: int) -> tuple[torch.Tensor, int]:
    """The anti-aliasing filter for ``up / down``: ``2 * half + 1`` taps (``half = 10 max(up, down)``) of a sinc
    with cutoff ``1 / max(up, down)`` of the Nyquist frequency, Kaiser window (beta 5), DC gain ``up``."""
    rate = max(up, down)
    half = 10 * rate
    m = torch.arange(-half, half + 1, dtype=torch.float64)
    h = torch.sinc(m / rate) * torch.kaiser_window(2 * half + 1, periodic=False, beta=5.0, dtype=torch.float64)
    return h / h.sum() * up, half


def resample_poly(x: torch.Tensor, up: int, down: int, chunk: int = 8192) -> torch.Tensor:
    """Upsample by ``up``, low-pass, downsample by ``down`` along the last axis, in float64.

    Output ``j`` is the full convolution of the zero-stuffed input with the filter at ``n = j * down + half``
    (which centres the filter), computed polyphase: ``y[j] = sum_k h[k up + p] x[q - k]`` with ``p = n mod up``,
    ``q = n // up``.  The outputs ``j = r, r + up, ...`` share one phase and read the input with stride
    ``down``, so each residue ``r`` is one strided window view times a filter phase (in chunks of ``chunk``).
    """
    g = math.gcd(up, down)
    up, down = up // g, down // g
    n_in = x.shape[-1]
    n_out = -(-n_in * up // down)
    h, half = _lowpass(up, down)
    taps = -(-len(h) // up)
    phases = F.pad(h, (0, taps * up - len(h))).reshape(taps, up).T.flip(-1)  # phases[p, t] = h[(taps-1-t) up + p]
    flat = x.reshape(math.prod(x.shape[:-1]), n_in).to(torch.float64)  # (not -1: an empty signal has n_in = 0)
    last_q = ((n_out - 1) * down + half) // up
    xpad = F.pad(flat, (taps - 1, max(0, last_q + 1 - n_in)))  # x[i] at xpad[i + taps - 1], zeros around
    out = flat.new_empty(flat.shape[0], n_out)
    for r in range(min(up, n_out)):
        n0 = r * down + half
        q0, count = n0 // up, len(range(r, n_out, up))
        windows = xpad[:, q0: q0 + (count - 1) * down + taps].unfold(-1, taps, down)[:, :count]
        dst, w = out[:, r::up], phases[n0 % up]
        for c in range(0, count, chunk):
            dst[:, c:c + chunk] = windows[:, c:c + chunk] @ w
    return out.reshape(*x.shape[:-1], n_out)


# ----------------------------------------------------------------------------- files
# WAVE format tags (fmt chunk): integer PCM, IEEE float, and the "extensible" wrapper that names one of them
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE


class WavInfo:
    """What a WAV header says: ``rate``, ``channels``, ``bits`` per sample, ``float``, the byte ``offset`` and
    ``frames`` of the sample data actually present in the file (``declared`` frames per the header)."""

    def __init__(self, path, rate, channels, bits, is_float, offset, frames, declared):
        self.path, self.rate, self.channels, self.bits, self.is_float = path, rate, channels, bits, is_float
        self.offset, self.frames, self.declared = offset, frames, declared

    @property
    def truncated(self) -> bool:
        """True when the file holds fewer frames than its header declares."""
        return self.frames < self.declared


def wav_info(path: str) -> WavInfo:
    """Parse the header of the WAV file ``path`` without reading its samples.

    A RIFF/WAVE file is a sequence of chunks ``(4-byte id, 4-byte little-endian size, data, pad to even)``;
    the ``fmt `` chunk gives the format tag, channels, rate, block size and bits per sample, the ``data``
    chunk holds the interleaved frames.  A ``data`` chunk that claims more bytes than the file holds is a
    truncated file: :attr:`WavInfo.frames` counts only the complete frames present.

    Raises ``ValueError`` (``"<path>: not a readable WAV file (<why>)"``) for anything else.
    """

    def bad(why):
        return ValueError(f"{path}: not a readable WAV file ({why}); re-export it as 16-bit PCM or float WAV")

    if not os.path.exists(path):
        raise FileNotFoundError(f"audio file {path!r} does not exist")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX", b"RF64") or head[8:12] != b"WAVE":
            raise bad("no RIFF/WAVE header")
        if head[:4] != b"RIFF":
            raise bad(f"{head[:4].decode()} files (big-endian or 64-bit) are not supported")
        fmt = None
        pos = 12
        while True:
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                raise bad("no data chunk" if fmt else "no fmt chunk")
            cid, csize = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                body = f.read(min(csize, 40))
                if len(body) < 16:
                    raise bad("fmt chunk too short")
                tag, channels, rate, _, block, bits = struct.unpack("<HHIIHH", body[:16])
                if tag == _EXTENSIBLE and len(body) >= 26:
                    tag = struct.unpack("<H", body[24:26])[0]  # first two bytes of the sub-format GUID
                fmt = (tag, channels, rate, block, bits)
            elif cid == b"data":
                if fmt is None:
                    raise bad("data chunk before the fmt chunk")
                tag, channels, rate, block, bits = fmt
                if tag not in (_PCM, _FLOAT):
                    raise bad(f"compressed or unknown sample format (format tag {tag})")
                if channels < 1 or rate < 1 or bits not in ((8, 16, 24, 32, 64) if tag == _PCM else (32, 64)):
                    raise bad(f"{channels} channels, {rate} Hz, {bits}-bit {'float' if tag == _FLOAT else 'PCM'}")
                if block != channels * bits // 8:
                    raise bad(f"block size {block} does not match {channels} x {bits}-bit samples")
                offset = pos + 8
                declared = csize // block if csize != 0xFFFFFFFF else (size - offset) // block
                present = max(0, size - offset) // block
                return WavInfo(path, int(rate), int(channels), int(bits), tag == _FLOAT, offset,
                               min(declared, present), declared)
            pos += 8 + csize + (csize & 1)


def read_wav_frames(info: WavInfo, start: int = 0, count: int | None = None) -> torch.Tensor:
    """Frames ``[start, start + count)`` of the file described by ``info`` as float32 ``(channels, count)``
    in [-1, 1], reading only those bytes (``count=None``: to the end)."""
    start = max(0, min(int(start), info.frames))
    count = info.frames - start if count is None else max(0, min(int(count), info.frames - start))
    width = info.bits // 8
    with open(info.path, "rb") as f:
        f.seek(info.offset + start * info.channels * width)
        raw = f.read(count * info.channels * width)
    if info.bits == 24:  # three little-endian bytes -> the top three bytes of an int32 (divided by 2^31 below)
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        arr = np.zeros((len(b), 4), np.uint8)
        arr[:, 1:] = b
        arr = arr.view("<i4")[:, 0]
    else:
        kind = "<f" if info.is_float else ("u" if info.bits == 8 else "<i")
        arr = np.frombuffer(raw, f"{kind}{width}")
    out = _to_float(arr.reshape(-1, info.channels), info.path)
    return torch.from_numpy(np.ascontiguousarray(out.T))


def _warn_truncated(info: WavInfo) -> None:
    warnings.warn(f"{info.path}: the file is truncated: its header declares {info.declared} frames but only "
                  f"{info.frames} are present; using those {info.frames}", stacklevel=3)


def read_wav(path: str, sample_rate: int | None = None, channels: int | None = None,
             allow_resample: bool = True) -> tuple[torch.Tensor, int]:
    """Read a WAV file as ``(audio, rate)``: ``audio`` is float32 ``(channels, length)`` in [-1, 1].

    Args:
        sample_rate: wanted rate in Hz; a file at another rate is resampled (or, with
            ``allow_resample=False``, rejected with a ``ValueError``).  None keeps the file's rate.
        channels: wanted channel count; mono and stereo convert into each other (see
            :func:`convert_channels`).  None keeps the file's channels.

    A file that is not a WAV file raises ``ValueError`` naming it; a truncated file (fewer frames than
    its header declares) is read as far as it goes, with a warning.
    """
    info = wav_info(path)
    if info.truncated:
        _warn_truncated(info)
    audio = read_wav_frames(info)
    rate = info.rate
    if audio.shape[1] == 0:
        raise ValueError(f"{path}: the file holds no samples")
    if not torch.isfinite(audio).all():
        raise ValueError(f"{path}: the file contains NaN or inf samples")
    if channels is not None:
        audio = convert_channels(audio, channels, path)
    if sample_rate is not None and sample_rate != rate:
        if not allow_resample:
            raise ValueError(f"{path}: sample rate is {rate} Hz but {sample_rate} Hz is needed; allow "
                             "resampling or convert the file")
        audio, rate = resample(audio, rate, sample_rate), sample_rate
    return audio, int(rate)


def write_wav(path: str, audio: torch.Tensor, sample_rate: int, format: str = "pcm16") -> None:
    """Write ``(channels, length)`` (or ``(length,)``) audio in [-1, 1] to a WAV file.

    ``format``: ``pcm16`` (16-bit integer; values are rounded to ``k / 32768`` and clipped to the
    representable range) or ``float32`` (IEEE float, stored as given).  The file is written under a
    temporary name, synced and renamed, so an existing file is replaced whole or not at all.
    """
    if format not in WAV_FORMATS:
        raise ValueError(f"unknown WAV format {format!r}; choose one of {', '.join(WAV_FORMATS)}")
    audio = torch.as_tensor(audio).detach().cpu()
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2:
        raise ValueError(f"audio must have shape (channels, length), got {tuple(audio.shape)}")
    if not 0 < int(sample_rate) < 2**32:
        raise ValueError(f"sample rate must be a positive integer (Hz), got {sample_rate}")
    if not torch.isfinite(audio).all():
        raise ValueError("audio contains NaN or inf; nothing was written")
    arr = audio.double().numpy().T  # (frames, channels)
    if format == "pcm16":
        data = np.clip(np.round(arr * 32768.0), -32768, 32767).astype(np.int16)
    else:
        data = arr.astype(np.float32)
    if data.shape[1] == 1:
        data = data[:, 0]
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    atomic_write_bytes(path, lambda tmp: _write_wav_file(tmp, int(sample_rate), data))


def _write_wav_file(path: str, rate: int, data: np.ndarray) -> None:
    """A canonical WAV file: ``fmt `` (16-bit PCM, or 32-bit IEEE float with ``cbSize`` 0 and a ``fact`` chunk, as
    the format asks of non-PCM data), then ``data``; ``data`` is ``(frames,)`` or ``(frames, channels)``."""
    frames = data.reshape(data.shape[0], -1)
    pcm = data.dtype == np.int16
    channels, bits = frames.shape[1], 16 if pcm else 32
    payload = np.ascontiguousarray(frames, dtype="<i2" if pcm else "<f4").tobytes()
    if len(payload) > 2**32 - 100:
        raise ValueError(f"{len(payload)} bytes of audio do not fit in one WAV file (4 GiB at most); write shorter "
                         "clips")
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", _PCM if pcm else _FLOAT, channels, rate, rate * block, block, bits)
    chunks = [b"fmt ", struct.pack("<I", len(fmt) + (0 if pcm else 2)), fmt]
    if not pcm:
        chunks += [struct.pack("<H", 0), b"fact", struct.pack("<II", 4, frames.shape[0])]
    chunks += [b"data", struct.pack("<I", len(payload))]
    head = b"".join(chunks)
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 4 + len(head) + len(payload)) + b"WAVE" + head)
        f.write(payload)  # an even length: 2 or 4 bytes per sample


# ----------------------------------------------------------------------------- folders of clips
def wav_paths(root: str) -> list[str]:
    """Every ``.wav`` file under ``root`` (recursively), sorted."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"audio folder {root!r} does not exist")
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.lower().endswith(".wav"))
    if not paths:
        raise ValueError(f"no .wav files found under {root!r}")
    return paths


def readable_wavs(root: str, paths: list[str], channels: int | None = None) -> list[WavInfo]:
    """Headers of the readable files among ``paths``; unreadable or empty files are skipped with one warning
    naming them, truncated ones are kept with a warning; ``ValueError`` when none can be read."""
    infos, skipped = [], []
    for p in paths:
        try:
            info = wav_info(p)
            if info.frames == 0:
                raise ValueError(f"{p}: the file holds no samples")
        except ValueError as err:
            skipped.append(str(err))
            continue
        if channels is not None and info.channels not in (1, channels) and channels != 1:
            raise ValueError(f"{p} has {info.channels} channels but {channels} are needed; only mono <-> "
                             "multichannel conversion is automatic, so convert the file (e.g. down-mix) first")
        if info.truncated:
            _warn_truncated(info)
        infos.append(info)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable WAV file(s): " + "; ".join(skipped[:10])
                      + (f"; and {len(skipped) - 10} more" if len(skipped) > 10 else ""), stacklevel=3)
    if not infos:
        raise ValueError(f"none of the {len(paths)} .wav files under {root!r} could be read (first: {skipped[0]})")
    return infos


def decode_wav(info: WavInfo, sample_rate: int | None = None, channels: int | None = None) -> torch.Tensor:
    """The whole file of ``info`` as ``(channels, length)`` at ``sample_rate``, as :func:`read_wav` reads it."""
    audio = read_wav_frames(info)
    if not torch.isfinite(audio).all():
        raise ValueError(f"{info.path}: the file contains NaN or inf samples")
    if channels is not None:
        audio = convert_channels(audio, channels, info.path)
    if sample_rate is not None and sample_rate != info.rate:
        audio = resample(audio, info.rate, sample_rate)
    return audio


def resampled_length(frames: int, orig_rate: int, new_rate: int) -> int:
    """Length of :func:`resample`'s output, ``ceil(frames * new_rate / orig_rate)``."""
    return -(-frames * new_rate // orig_rate) if orig_rate != new_rate else frames


def draw_crops(lengths: list[int], n: int, clip_length: int, generator: torch.Generator | None = None):
    """``n`` random ``(file, offset)`` pairs: a file drawn uniformly, then an offset uniform over the crops
    of ``clip_length`` that fit (0 for a shorter file).  The one definition of :meth:`AudioFolder.crops`."""
    if n < 1:
        raise ValueError(f"number of crops must be positive, got {n}")
    files = torch.randint(0, len(lengths), (n,), generator=generator).tolist()
    out = []
    for f in files:
        room = lengths[f] - clip_length
        out.append((f, int(torch.randint(0, room + 1, (1,), generator=generator)) if room > 0 else 0))
    return out


class AudioFolder:
    """Every ``.wav`` file under ``root`` (recursively), at one rate and channel count, in memory.

    Unreadable files are skipped with a warning naming them (see :func:`readable_wavs`); for a folder
    larger than memory use :class:`unnoise.data.datasets.AudioClips`, which reads each crop lazily.

    Args:
        root: a folder of WAV files.
        sample_rate: files at another rate are resampled to it.
        channels: mono and stereo files are converted to this many channels.
        clip_length: length in samples of the crops :meth:`crops` returns; shorter files are
            zero-padded at the end.
    """

    def __init__(self, root: str, sample_rate: int = 8000, channels: int = 1, clip_length: int = 2048):
        if clip_length < 1:
            raise ValueError(f"clip_length must be positive, got {clip_length}")
        infos = readable_wavs(root, wav_paths(root), channels)
        self.paths = [i.path for i in infos]
        self.sample_rate, self.channels, self.clip_length = sample_rate, channels, clip_length
        self.audio = [decode_wav(i, sample_rate, channels) for i in infos]

    def __len__(self) -> int:
        return len(self.audio)

    def crops(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` random crops ``(n, channels, clip_length)``: a file drawn uniformly, then an offset."""
        out = torch.zeros(n, self.channels, self.clip_length)
        for i, (f, start) in enumerate(draw_crops([a.shape[1] for a in self.audio], n, self.clip_length, generator)):
            piece = self.audio[f][:, start:start + self.clip_length]
            out[i, :, :piece.shape[1]] = piece
        return out


def load_audio_folder(root: str, n: int, clip_length: int = 2048, sample_rate: int = 8000, channels: int = 1,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` random crops of the WAV files under ``root``: ``(n, channels, clip_length)`` in [-1, 1]."""
    return AudioFolder(root, sample_rate, channels, clip_length).crops(n, generator)


# ----------------------------------------------------------------------------- synthetic set
# a pentatonic scale (C major pentatonic, two octaves from C4): consonant chords, distinct pitches
PITCHES_HZ = tuple(261.63 * 2 ** (s / 12) for s in (0, 2, 4, 7, 9, 12, 14, 16, 19, 21))


def adsr(length: int, attack, decay, sustain, release) -> torch.Tensor:
    """Piecewise-linear ADSR envelopes of ``length`` samples, float64.

    ``attack``, ``decay`` and ``release`` are fractions of the clip (floats, or ``(n,)`` tensors for
    ``n`` envelopes at once); the level rises 0 -> 1, falls to ``sustain``, holds, and falls to 0
    over the last ``release`` fraction.  Returns ``(length,)`` or ``(n, length)``.
    """
    params = [torch.as_tensor(v, dtype=torch.float64) for v in (attack, decay, sustain, release)]
    batched = params[0].ndim > 0
    a, dec, sus, rel = (p.reshape(-1, 1) for p in params)
    t = torch.linspace(0, 1, length, dtype=torch.float64)[None]
    d, r = a + dec, 1 - rel
    env = torch.where(t < a, t / a.clamp_min(1e-9),
                      torch.where(t < d, 1 - (1 - sus) * (t - a) / dec.clamp_min(1e-9),
                                  torch.where(t < r, sus + 0 * t, sus * (1 - t) / rel.clamp_min(1e-9))))
    env = env.clamp(0, 1)
    return env if batched else env[0]


def synthetic_audio(n: int, length: int = 2048, sample_rate: int = 8000, max_notes: int = 3,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` synthetic mono clips ``(n, 1, length)`` in [-1, 1]: notes and chords with ADSR envelopes.

    Each clip holds 1 to ``max_notes`` distinct pitches from :data:`PITCHES_HZ`, each a sum of three
    harmonics (amplitudes 1, t/2, t/4 with a per-clip timbre t in [0.3, 1]) with random phases, under
    one ADSR envelope; the clip is scaled to a peak amplitude drawn from [0.3, 0.8].
    """
    if n < 1 or length < 1:
        raise ValueError(f"n and length must be positive, got n={n}, length={length}")
    if not 1 <= max_notes <= len(PITCHES_HZ):
        raise ValueError(f"max_notes must be between 1 and {len(PITCHES_HZ)}, got {max_notes}")
    if PITCHES_HZ[-1] * 3 >= sample_rate / 2:
        raise ValueError(f"sample rate {sample_rate} Hz is too low for the third harmonic of "
                         f"{PITCHES_HZ[-1]:.0f} Hz; use at least {math.ceil(PITCHES_HZ[-1] * 6)} Hz")
    g, f64 = generator, torch.float64
    # all random choices up front, in a fixed order, so a seed fixes the whole set
    count = torch.randint(1, max_notes + 1, (n,), generator=g)
    order = torch.rand(n, len(PITCHES_HZ), generator=g).argsort(1)[:, :max_notes]  # distinct pitches
    phase = 2 * math.pi * torch.rand(n, max_notes, 3, generator=g, dtype=f64)
    timbre = 0.3 + 0.7 * torch.rand(n, 1, generator=g, dtype=f64)
    u = torch.rand(n, 4, generator=g, dtype=f64)
    peak = 0.3 + 0.5 * torch.rand(n, 1, generator=g, dtype=f64)

    freqs = torch.tensor(PITCHES_HZ, dtype=f64)[order]  # (n, M)
    on = (torch.arange(max_notes)[None] < count[:, None]).to(f64)  # (n, M): which notes sound
    harmonic = torch.arange(1, 4, dtype=f64)
    amps = torch.cat([torch.ones_like(timbre), 0.5 * timbre, 0.25 * timbre], 1)  # (n, 3)
    env = adsr(length, 0.02 + 0.1 * u[:, 0], 0.05 + 0.15 * u[:, 1], 0.4 + 0.5 * u[:, 2], 0.05 + 0.25 * u[:, 3])
    t = torch.arange(length, dtype=f64) / sample_rate
    out = torch.empty(n, 1, length)
    for lo in range(0, n, 128):  # chunks bound the (chunk, notes, harmonics, length) intermediate
        sl = slice(lo, lo + 128)
        arg = 2 * math.pi * (freqs[sl, :, None, None] * harmonic[None, None, :, None]) * t + phase[sl, ..., None]
        clip = (on[sl, :, None, None] * amps[sl, None, :, None] * torch.sin(arg)).sum((1, 2)) * env[sl]
        out[sl, 0] = (clip / clip.abs().amax(1, keepdim=True).clamp_min(1e-12) * peak[sl]).float()
    return out
