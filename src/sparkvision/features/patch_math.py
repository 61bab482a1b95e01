"""The numerics of learned patch features (Coates, Lee & Ng, 2011), in numpy: no Spark here.

An image's features come from every ``size``×``size`` window (stride 1 on 32×32: 27×27
windows of 108 values). Each window is normalised for brightness and contrast, whitened
(ZCA), compared with K centroids, encoded (the "triangle" activation max(0, mean(z) − z_k)
of the distances z_k, or a soft threshold), and the codes are summed over a grid of pooling
regions (2×2 quadrants): 4K values per image.

Two choices make it fast and flip-aware:

* Distances come from one matrix product per image: with the whitened windows ``X`` extended
  by [‖x‖², 1] and the centroids ``C`` by [1, ‖c‖²] (scaled by −2), ``X' @ C'`` is ‖x − c‖²
  directly, so the 729×K work after the product is one fused pass (:func:`_encode_pool`,
  compiled with numba) instead of several numpy passes over a 729×K array.
* The dictionary is closed under horizontal mirroring (each learned centroid comes with its
  mirror image), whitening is made mirror-equivariant, and pooling regions are symmetric
  (a window straddling a region boundary counts half on each side). Then the features of a
  mirrored image are an exact permutation of the image's own (:func:`mirror_feature_order`),
  and adding each feature to its mirror partner gives features that are identical for an
  image and its mirror. A linear classifier trained on those is the one that gives the same
  answer for a picture and its mirror image — what training with flipped copies of every
  image aims at — at no extra cost and with half the features.
"""

from __future__ import annotations

import numpy as np

import numba

CONTRAST_EPS = 10.0  # added to each patch's variance (pixel units²) before dividing: flat patches stay flat


def window_positions(side: int, size: int, stride: int) -> int:
    """Number of windows along one side of the image."""
    if size > side:
        raise ValueError(f"patch size {size} is larger than the image side {side}")
    return (side - size) // stride + 1


def windows(images: np.ndarray, size: int, stride: int = 1) -> np.ndarray:
    """Every ``size``×``size`` window of each image, flattened channel-major.

    ``images`` is (B, H, W, C) uint8; the result is float32 (B, nh·nw, C·size·size), windows in
    row-major order of their top-left corner.
    """
    view = np.lib.stride_tricks.sliding_window_view(images, (size, size), axis=(1, 2))
    view = view[:, ::stride, ::stride]  # (B, nh, nw, C, size, size)
    b, nh, nw = view.shape[:3]
    return view.reshape(b, nh * nw, -1).astype(np.float32)


def normalise(patches: np.ndarray, eps: float = CONTRAST_EPS) -> np.ndarray:
    """Subtract each patch's mean and divide by sqrt(variance + eps), in place on a float32 array."""
    mean = patches.mean(axis=-1, keepdims=True)
    patches -= mean
    var = np.einsum("...i,...i->...", patches, patches)[..., None] / patches.shape[-1]
    patches /= np.sqrt(var + eps)
    return patches


def mirror_order(size: int, channels: int) -> np.ndarray:
    """Index array ``m`` such that ``patch[m]`` is the horizontally mirrored patch."""
    return np.arange(channels * size * size).reshape(channels, size, size)[:, :, ::-1].ravel()


def whitening(mean: np.ndarray, cov: np.ndarray, eps: float, order: np.ndarray) -> np.ndarray:
    """The ZCA matrix ``W`` (symmetric) for patches with this mean and covariance.

    Mean and covariance are first averaged with their mirror images, so whitening a mirrored
    patch gives the mirror of the whitened patch: the flip symmetry survives exactly.
    ``eps`` is added to the eigenvalues (0.1 for normalised patches, as in the paper).
    """
    cov = (cov + cov[np.ix_(order, order)]) / 2
    values, vectors = np.linalg.eigh(cov)
    scale = 1.0 / np.sqrt(np.maximum(values, 0.0) + eps)
    return ((vectors * scale) @ vectors.T).astype(np.float32)


def symmetric_mean(mean: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``mean`` averaged with its mirror image (see :func:`whitening`)."""
    return ((mean + mean[order]) / 2).astype(np.float32)


def with_mirrors(centroids: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The dictionary closed under mirroring: the centroids, then their mirror images."""
    return np.concatenate([centroids, centroids[:, order]]).astype(np.float32)


def pooling_weights(n: int, grid: int) -> np.ndarray:
    """(n, grid) weights of n windows along one side in ``grid`` equal regions.

    Window j covers [j, j+1); region r covers [r·n/grid, (r+1)·n/grid); the weight is their
    overlap, so a window on a boundary counts partly in each region and the regions are
    mirror-symmetric for any n.
    """
    edges = np.arange(grid + 1) * (n / grid)
    lo = np.arange(n)[:, None]
    return np.clip(np.minimum(lo + 1, edges[None, 1:]) - np.maximum(lo, edges[None, :-1]), 0, None).astype(np.float32)


def pooling_table(nh: int, nw: int, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """For each window (row-major), up to four (region, weight) pairs: regions padded with -1."""
    wy, wx = pooling_weights(nh, grid), pooling_weights(nw, grid)
    regions = np.full((nh * nw, 4), -1, np.int32)
    weights = np.zeros((nh * nw, 4), np.float32)
    for i in range(nh):
        for j in range(nw):
            slot = 0
            for ry in np.flatnonzero(wy[i]):
                for rx in np.flatnonzero(wx[j]):
                    regions[i * nw + j, slot] = ry * grid + rx
                    weights[i * nw + j, slot] = wy[i, ry] * wx[j, rx]
                    slot += 1
    return regions, weights


def mirror_feature_order(k: int, grid: int) -> np.ndarray:
    """Index array ``m`` with ``features(mirror(image)) == features(image)[m]``.

    Features are laid out region-major (grid·grid regions of k codes); the dictionary's second
    half mirrors its first (:func:`with_mirrors`).
    """
    half = k // 2
    partner = np.concatenate([np.arange(half, k), np.arange(half)])
    ry, rx = np.divmod(np.arange(grid * grid), grid)
    mirrored_region = ry * grid + (grid - 1 - rx)
    return (mirrored_region[:, None] * k + partner[None, :]).ravel()


def fold_pairs(k: int, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b): each feature paired once with its mirror partner; ``f[a] + f[b]`` is flip-invariant."""
    order = mirror_feature_order(k, grid)
    idx = np.arange(order.size)
    keep = idx < order
    return idx[keep], order[keep]


@numba.njit(fastmath=True, cache=True, nogil=True)
def _encode_pool(d, regions, weights, out, triangle, alpha):  # pragma: no cover - compiled
    n, k = d.shape
    zero = np.float32(0.0)
    for i in range(n):
        row = d[i]
        if triangle:
            total = np.float32(0.0)
            for j in range(k):
                v = np.sqrt(max(row[j], zero))
                row[j] = v
                total += v
            mu = total / np.float32(k)
            for j in range(k):
                row[j] = max(mu - row[j], zero)
        else:
            a = np.float32(alpha)
            for j in range(k):
                row[j] = max(row[j] - a, zero)
        for s in range(regions.shape[1]):
            r = regions[i, s]
            if r < 0:
                break
            w = weights[i, s]
            o = out[r]
            for j in range(k):
                o[j] += w * row[j]


class PatchEncoder:
    """Everything needed to encode images, precomputed once per partition.

    ``centroids`` are in whitened space (K × D); ``mean`` and ``whiten`` map a normalised window
    to it. ``triangle`` selects the encoder (else soft threshold at ``alpha`` against unit-length
    centroids).
    """

    def __init__(self, centroids: np.ndarray, mean: np.ndarray, whiten: np.ndarray, *, size: int,
                 stride: int, grid: int, height: int, width: int, triangle: bool = True, alpha: float = 0.25):
        self.size, self.stride, self.grid = size, stride, grid
        self.k = centroids.shape[0]
        self.triangle, self.alpha = triangle, float(alpha)
        self.nh, self.nw = window_positions(height, size, stride), window_positions(width, size, stride)
        self.regions, self.weights = pooling_table(self.nh, self.nw, grid)
        c = centroids.astype(np.float32)
        # The whitening folds into one matrix applied to the normalised windows; the mean's
        # part becomes a bias row.
        self.whiten = whiten.astype(np.float32)
        self.bias = -(mean.astype(np.float32) @ self.whiten)
        if triangle:  # ‖x − c‖² = [x, ‖x‖², 1] · [−2c, 1, ‖c‖²]
            self.filters = np.vstack([-2.0 * c.T, np.ones((1, self.k), np.float32),
                                      (c * c).sum(axis=1)[None, :]]).astype(np.float32)
        else:
            unit = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-8)
            self.filters = np.vstack([unit.T, np.zeros((2, self.k), np.float32)]).astype(np.float32)

    @property
    def n_features(self) -> int:
        return self.grid * self.grid * self.k

    def encode(self, images: np.ndarray) -> np.ndarray:
        """(B, H, W, C) uint8 images → (B, grid·grid·K) float32 pooled codes."""
        out = np.zeros((images.shape[0], self.grid * self.grid, self.k), np.float32)
        ext = np.empty((self.nh * self.nw, self.filters.shape[0]), np.float32)
        ext[:, -1] = 1.0
        for b in range(images.shape[0]):
            x = normalise(windows(images[b:b + 1], self.size, self.stride)[0])
            xw = x @ self.whiten
            xw += self.bias
            ext[:, :-2] = xw
            ext[:, -2] = np.einsum("ij,ij->i", xw, xw)
            d = ext @ self.filters
            _encode_pool(d, self.regions, self.weights, out[b], self.triangle, self.alpha)
        return out.reshape(images.shape[0], -1)


def assign(points: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """One k-means (Lloyd) step's partial sums over ``points``: (per-centroid sums, counts, cost).

    Nearest centroids come from one matrix product per block of points (‖p‖² does not change
    which centroid is nearest); cost is the total squared distance, for convergence checks.
    """
    centroids = centroids.astype(np.float32)
    cc = np.einsum("ij,ij->i", centroids, centroids)
    k = centroids.shape[0]
    sums = np.zeros(centroids.shape, np.float64)
    counts = np.zeros(k, np.int64)
    cost = 0.0
    for start in range(0, len(points), 8192):
        p = np.asarray(points[start:start + 8192], dtype=np.float32)
        d = p @ centroids.T
        d *= -2.0
        d += cc[None, :]
        nearest = d.argmin(axis=1)
        cost += float(d[np.arange(len(p)), nearest].sum() + np.einsum("ij,ij->", p, p))
        order = np.argsort(nearest, kind="stable")
        used, first = np.unique(nearest[order], return_index=True)
        sums[used] += np.add.reduceat(p[order], first, axis=0)
        counts += np.bincount(nearest, minlength=k)
    return sums, counts, cost


def encoder_from(arrays: dict[str, np.ndarray], params: dict) -> tuple[PatchEncoder, tuple[np.ndarray, np.ndarray] | None]:
    """(encoder, mirror-fold pairs or None) of a fitted PatchFeaturesModel, from its arrays
    (centroids, mean, whiten) and its Params by name: the Spark stage and the local predict
    engine build them the same way."""
    encoder = PatchEncoder(arrays["centroids"], arrays["mean"], arrays["whiten"], size=int(params["patchSize"]),
                           stride=int(params["stride"]), grid=int(params["poolingGrid"]),
                           height=int(params["imageHeight"]), width=int(params["imageWidth"]),
                           triangle=params["encoder"] == "triangle", alpha=float(params["alpha"]))
    pairs = fold_pairs(encoder.k, encoder.grid) if params["flipInvariant"] else None
    return encoder, pairs
