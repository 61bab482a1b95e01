"""The ridge's numpy engine: least squares onto one-hot labels from summed normal equations.

Every Spark task sums XᵀX, XᵀY, Σx and the class counts of its rows (:meth:`NormalEquations.add`);
the sums travel to the driver as blocks of the Gram matrix's upper triangle; the driver adds
them, centres and standardises them in place, and solves (XᵀX + λI)W = XᵀY by Cholesky. No
pyspark here: the Spark estimator is :mod:`sparkvision.models.ridge.stage`.
"""

from __future__ import annotations

import numpy as np

from sparkvision.runtime.npy import to_npy


class NormalEquations:
    """The sufficient statistics of least squares over some rows: XᵀX, XᵀY (one-hot), Σx, class counts."""

    FIELDS = ("gram", "xty", "total", "counts")

    def __init__(self, gram: np.ndarray, xty: np.ndarray, total: np.ndarray, counts: np.ndarray) -> None:
        self.gram, self.xty, self.total, self.counts = gram, xty, total, counts

    @classmethod
    def empty(cls, d: int, classes: int) -> "NormalEquations":
        return cls(np.zeros((d, d)), np.zeros((d, classes)), np.zeros(d), np.zeros(classes))

    @property
    def n(self) -> int:
        return int(round(self.counts.sum()))

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        """Add rows ``x`` (float32) with labels ``y``: float32 products, float64 running sums."""
        self.gram += x.T @ x
        onehot = np.zeros((len(y), self.xty.shape[1]), np.float32)
        onehot[np.arange(len(y)), y] = 1.0
        self.xty += x.T @ onehot
        self.total += x.sum(axis=0, dtype=np.float64)
        self.counts += np.bincount(y, minlength=len(self.counts))

    def blocks(self, max_bytes: int = 32 << 20):
        """(first row, [.npy bytes of XᵀX rows (float32), XᵀY rows, Σx rows, class counts]) blocks.

        XᵀX is symmetric, so only its upper triangle travels: rows ``start:stop``, columns from
        ``start`` on. That halves what a partition sends (at d = 12,000 it is 0.6 GB where the
        whole matrix, for the fit and validation parts, was 1.2 GB, past Spark's 1 GB
        ``spark.driver.maxResultSize`` for one partition's result). It travels as float32 (the driver
        sums in float64), in blocks of at most ``max_bytes``; the class counts ride on the first block.
        """
        d = len(self.total)
        step = max(1, max_bytes // (4 * max(d, 1)))
        for start in range(0, d, step):
            rows = slice(start, start + step)
            yield start, [to_npy(self.gram[rows, start:].astype(np.float32)), to_npy(self.xty[rows]),
                          to_npy(self.total[rows]), to_npy(self.counts if start == 0 else np.zeros(0))]

    @staticmethod
    def size_of_block(start: int, arrays: list[np.ndarray]) -> int:
        """d, the number of features, from any block of :meth:`blocks` (its columns run from ``start`` to d)."""
        return start + arrays[0].shape[1]

    def add_block(self, start: int, arrays: list[np.ndarray]) -> None:
        """Add one block of :meth:`blocks` into these sums (call :meth:`mirror` once all are in)."""
        gram, xty, total, counts = arrays
        rows = slice(start, start + len(gram))
        self.gram[rows, start:] += gram
        self.xty[rows] += xty
        self.total[rows] += total
        if len(counts):
            self.counts += counts

    def mirror(self, step: int = 1024) -> None:
        """Fill XᵀX's lower triangle from its upper one (what :meth:`add_block` summed), in row blocks."""
        g = self.gram
        for a in range(0, len(g), step):
            b = min(a + step, len(g))
            g[b:, a:b] = g[a:b, b:].T
            diagonal = np.triu(g[a:b, a:b])
            g[a:b, a:b] = diagonal + np.triu(diagonal, 1).T

    def absorb(self, other: "NormalEquations") -> "NormalEquations":
        """Add ``other`` into these sums in place (no third d × d array); returns self."""
        self.gram += other.gram
        self.xty += other.xty
        self.total += other.total
        self.counts += other.counts
        return self

    def solve(self, reg: float, standardize: bool) -> tuple[np.ndarray, np.ndarray]:
        """(weights d × C, intercept C) of ridge regression onto one-hot labels.

        Centring and standardising are done on the sums: Σ(x−μ)(x−μ)ᵀ = XᵀX − nμμᵀ and
        Σ(x−μ)(y−ȳ)ᵀ = XᵀY − nμȳᵀ. λ = reg × n on standardised features; the intercept is not
        penalised.
        """
        from scipy.linalg import LinAlgError, solve

        system, rhs, mean, ybar, scale = self._system(reg, standardize)
        try:  # system.T: the same symmetric matrix in Fortran order, which LAPACK overwrites without a copy
            weights = solve(system.T, rhs, assume_a="pos", overwrite_a=True, check_finite=False)
        except LinAlgError:  # not positive definite in floating point (reg near 0): solve it the general way
            return self._solve_lu(reg, standardize)
        weights /= scale[:, None]
        return weights, ybar - mean @ weights

    def _solve_lu(self, reg: float, standardize: bool) -> tuple[np.ndarray, np.ndarray]:
        system, rhs, mean, ybar, scale = self._system(reg, standardize)
        weights = np.linalg.solve(system, rhs) / scale[:, None]
        return weights, ybar - mean @ weights

    def _system(self, reg: float, standardize: bool):
        """(system, right-hand side, mean, ȳ, scale) of the standardised ridge problem.

        One d × d copy, centred and scaled in row blocks: whole-matrix expressions would make three
        more d × d temporaries (3.5 GB at d = 12,000). The system is positive definite (a Gram
        matrix plus λ > 0), so Cholesky solves it, with half LU's work.
        """
        n, d = self.n, len(self.total)
        mean, ybar = self.total / n, self.counts / n
        system = self.gram.astype(np.float64)
        step = 1024
        for a in range(0, d, step):
            system[a:a + step] -= n * np.outer(mean[a:a + step], mean)
        scale = np.sqrt(np.maximum(np.diag(system) / n, 0.0)) if standardize else np.ones(d)
        scale[scale < 1e-8] = 1.0  # a constant feature stays unscaled; its weight comes out ~0
        for a in range(0, d, step):
            system[a:a + step] /= np.outer(scale[a:a + step], scale)
        system[np.diag_indices_from(system)] += reg * n + 1e-9 * n  # a tiny floor keeps reg=0 solvable
        rhs = (self.xty - n * np.outer(mean, ybar)) / scale[:, None]
        return system, rhs, mean, ybar, scale

    def squared_error(self, weights: np.ndarray, intercept: np.ndarray) -> float:
        """Σ‖xW + b − y‖² over these rows, from the sums alone (no second pass over the data)."""
        gw = self.gram @ weights
        return float(np.sum(weights * gw) + 2 * intercept @ (weights.T @ self.total) + self.n * intercept @ intercept
                     - 2 * np.sum(weights * self.xty) - 2 * intercept @ self.counts + self.n)
