"""Synthetic face-template models for the simulator: how a capture device's algorithm turns a face into templates.

A real deployment meets several template-generating algorithms, each with its own
genuine and impostor score distributions; thresholds calibrated for one are wrong
for the next. The simulator therefore has two families with knobs, each setting a
model of its own (its ``model_id`` travels in every capture, as a device would
report its algorithm):

* :class:`ClusteredFaces` (the default, ``sim-clustered/1``): every face shares a
  component with its nationality's centre, so impostors of one population score
  alike; capture noise grows as quality falls.
* :class:`SubspaceFaces`: identities lie near a low-rank subspace (as embeddings
  of a trained network do), so impostor scores spread with ``1 / rank``; each
  capture adds noise drawn from a range, correlated with the reported quality by
  ``quality_noise_corr``. A small rank with a wide noise range is the hard case
  where genuine and impostor tails overlap (:data:`HARD`).

All randomness comes from the simulator's generators, so a seed reproduces a run.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol

import numpy as np


def unit(v: np.ndarray) -> np.ndarray:
    """``v`` scaled to length 1, as float32."""
    return (v / np.linalg.norm(v)).astype(np.float32)


class FaceModel(Protocol):
    """One template-generating algorithm: faces of people and templates of their captures."""

    @property
    def model_id(self) -> str:
        """The algorithm's name and version, as a capture device reports it."""
        ...

    def face(self, gen: np.random.Generator, centre: np.ndarray) -> np.ndarray:
        """A new person's face (unit vector); ``centre`` is their population's shared direction."""
        ...

    def capture(self, gen: np.random.Generator, rng: random.Random, face: np.ndarray, quality: float) -> np.ndarray:
        """One capture's template (unit vector) of ``face`` at the reported ``quality``."""
        ...


@dataclass(frozen=True)
class ClusteredFaces:
    """Faces with a shared population component; noise share 0.6 + 0.35 × (1 − quality)."""

    dim: int = 512
    population_share: float = 0.25

    @property
    def model_id(self) -> str:
        """The algorithm's name (templates of another dimension are another algorithm)."""
        return "sim-clustered/1" if self.dim == 512 else f"sim-clustered/1-d{self.dim}"

    def face(self, gen: np.random.Generator, centre: np.ndarray) -> np.ndarray:
        """A face: the population's centre plus an individual direction."""
        own = unit(gen.standard_normal(self.dim))
        return unit(math.sqrt(self.population_share) * centre + math.sqrt(1 - self.population_share) * own)

    def capture(self, gen: np.random.Generator, rng: random.Random, face: np.ndarray, quality: float) -> np.ndarray:
        """Poorer captures carry more noise: genuine scores reach impostors'."""
        noise_share = 0.6 + 0.35 * (1 - quality)
        noise = unit(gen.standard_normal(self.dim))
        return unit(math.sqrt(1 - noise_share**2) * face + noise_share * noise)

    def faces(self, gen: np.random.Generator, centres: np.ndarray) -> np.ndarray:
        """One face per row of ``centres`` at once (what :meth:`face` draws one at a time), for a million."""
        own = _units(gen.standard_normal((len(centres), self.dim)).astype(np.float32))
        return _units(math.sqrt(self.population_share) * centres + math.sqrt(1 - self.population_share) * own)

    def captures(self, gen: np.random.Generator, faces: np.ndarray, quality: np.ndarray) -> np.ndarray:
        """One capture of each face at its quality (vectorised :meth:`capture`)."""
        share = (0.6 + 0.35 * (1 - quality)).astype(np.float32)[:, None]
        noise = _units(gen.standard_normal(faces.shape).astype(np.float32))
        return _units(np.sqrt(1 - share**2) * faces + share * noise)


@dataclass(frozen=True)
class SubspaceFaces:
    """Faces near a ``rank``-dimensional subspace; capture noise in [noise_min, noise_max], tied to quality.

    A capture is ``face + σ·n`` (``n`` a random unit vector) with ``σ`` between the
    bounds: ``quality_noise_corr`` of it follows 1 − quality, the rest is chance, so
    at 0 the reported quality says nothing about how noisy a capture is.
    """

    dim: int = 512
    rank: int = 48
    off_subspace: float = 0.3
    noise_min: float = 0.5
    noise_max: float = 1.1
    quality_noise_corr: float = 0.7
    basis_seed: int = 20261201

    @property
    def model_id(self) -> str:
        """The algorithm's name: every knob setting is a model of its own, with thresholds of its own."""
        return (f"sim-subspace/r{self.rank}-o{self.off_subspace:g}-n{self.noise_min:g}-{self.noise_max:g}"
                f"-c{self.quality_noise_corr:g}" + ("" if self.dim == 512 else f"-d{self.dim}"))

    def _basis(self) -> np.ndarray:
        cached = _BASES.get((self.dim, self.rank, self.basis_seed))
        if cached is None:
            q, _ = np.linalg.qr(np.random.default_rng(self.basis_seed).standard_normal((self.dim, self.rank)))
            cached = _BASES[(self.dim, self.rank, self.basis_seed)] = q.astype(np.float32)
        return cached

    def face(self, gen: np.random.Generator, centre: np.ndarray) -> np.ndarray:
        """A face: a random direction in the subspace, plus a little outside it (``centre`` unused)."""
        inside = unit(self._basis() @ gen.standard_normal(self.rank).astype(np.float32))
        outside = unit(gen.standard_normal(self.dim))
        a = self.off_subspace
        return unit(math.sqrt(1 - a * a) * inside + a * outside)

    def faces(self, gen: np.random.Generator, n: int) -> np.ndarray:
        """``n`` faces at once (what :meth:`face` draws one at a time), for benchmarks at a million."""
        inside = _units(gen.standard_normal((n, self.rank)).astype(np.float32) @ self._basis().T)
        outside = _units(gen.standard_normal((n, self.dim)).astype(np.float32))
        a = self.off_subspace
        return _units(math.sqrt(1 - a * a) * inside + a * outside)

    def captures(self, gen: np.random.Generator, faces: np.ndarray, quality: np.ndarray) -> np.ndarray:
        """One capture of each face at its quality (vectorised :meth:`capture`)."""
        c = self.quality_noise_corr
        share = np.clip(c * (1 - quality) + (1 - c) * gen.random(len(faces)), 0.0, 1.0)
        sigma = (self.noise_min + (self.noise_max - self.noise_min) * share).astype(np.float32)[:, None]
        return _units(faces + sigma * _units(gen.standard_normal(faces.shape).astype(np.float32)))

    def capture(self, gen: np.random.Generator, rng: random.Random, face: np.ndarray, quality: float) -> np.ndarray:
        """The face plus noise whose size is partly told by the quality."""
        c = self.quality_noise_corr
        share = c * (1 - quality) + (1 - c) * rng.random()
        sigma = self.noise_min + (self.noise_max - self.noise_min) * min(1.0, max(0.0, share))
        return unit(face + sigma * unit(gen.standard_normal(self.dim)))


_BASES: dict[tuple[int, int, int], np.ndarray] = {}


def _units(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

# Settings the accuracy benchmark sweeps besides the default (the simulator's clustered faces).
MODERATE = SubspaceFaces(rank=48, off_subspace=0.3, noise_min=0.5, noise_max=1.1, quality_noise_corr=0.7)
# Genuine and impostor tails overlap: the genuine 1st percentile lies below the impostor 99.99th.
HARD = SubspaceFaces(rank=20, off_subspace=0.2, noise_min=0.7, noise_max=1.6, quality_noise_corr=0.4)


def face_model(name: str, dim: int = 512) -> FaceModel:
    """A face model by setting name: ``clustered`` (default), ``moderate`` or ``hard``."""
    if name == "clustered":
        return ClusteredFaces(dim=dim)
    base = {"moderate": MODERATE, "hard": HARD}.get(name)
    if base is None:
        raise ValueError(f"face model: expected clustered, moderate or hard, not {name!r}")
    return SubspaceFaces(dim=dim, rank=base.rank, off_subspace=base.off_subspace, noise_min=base.noise_min,
                         noise_max=base.noise_max, quality_noise_corr=base.quality_noise_corr)
