"""The embedded, offline default: MovieLens-shaped ratings generated from latent tastes.

Each movie belongs to one of a few dozen taste clusters (which decide its genres) and
has a long-tailed popularity. Each user has a long-tailed activity and a preference
over clusters. A user picks what to watch partly from the global popularity and mostly
from the clusters they like, so collaborative filtering has signal that the
most-popular list does not capture; ratings come from biases plus user-movie affinity.
Everything is vectorised with NumPy and deterministic by seed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tfrs_pipeline.data.schema import MOVIELENS_GENRES, RatingsData, ValidationReport
from tfrs_pipeline.errors import DataError


@dataclass(frozen=True)
class SyntheticSize:
    """How many users, movies and ratings to generate."""

    users: int
    movies: int
    ratings: int


#: Named sizes, shaped like the MovieLens releases of the same name.
SIZES = {
    "100k": SyntheticSize(943, 1_682, 100_000),
    "1m": SyntheticSize(6_040, 3_706, 1_000_209),
    "20m": SyntheticSize(138_493, 27_278, 20_000_263),
}

_AGES = np.array([1, 18, 25, 35, 45, 50, 56])
_OCCUPATIONS = (
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment",
    "executive", "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none",
    "other", "programmer", "retired", "salesman", "scientist", "student", "technician", "writer",
)  # fmt: skip
_ADJECTIVES = (
    "Silent", "Crimson", "Lost", "Broken", "Golden", "Hidden", "Last", "Wild", "Dark",
    "Bright", "Frozen", "Burning", "Secret", "Distant", "Forgotten", "Electric", "Midnight",
    "Endless", "Savage", "Gentle", "Hollow", "Iron", "Velvet", "Restless", "Scarlet",
    "Quiet", "Fallen", "Brave", "Lonely", "Strange", "Sudden", "Bitter", "Shining",
    "Twisted", "Crooked", "Ancient", "Stolen", "Empty", "Little", "Final",
)  # fmt: skip
_NOUNS = (
    "River", "Empire", "Garden", "Shadow", "Kingdom", "Highway", "Island", "Letter",
    "Mirror", "Storm", "City", "Horizon", "Promise", "Stranger", "Harbor", "Winter",
    "Summer", "Machine", "Witness", "Voyage", "Planet", "Detective", "Orchard", "Canyon",
    "Ghost", "Symphony", "Frontier", "Heist", "Circus", "Lighthouse", "Dragon", "Station",
    "Signal", "Daughter", "Soldier", "Carnival", "Desert", "Forest", "Ocean", "Tower",
    "Valley", "Crown", "Bridge", "Engine", "Secret", "Sky", "Moon", "Train",
)  # fmt: skip
_PATTERNS = ("The {a} {n}", "{a} {n}", "A {a} {n}", "{n} of the {a}", "The {n}", "Return of the {a} {n}")


def parse_size(text: str) -> tuple[SyntheticSize, int]:
    """Parses ``100k``, ``1m``, ``20m`` or ``USERSxMOVIESxRATINGS``, optionally ``,seed=N``.

    Returns:
        The size and the seed (42 unless given).
    """
    text = (text or "100k").strip().lower()
    seed = 42
    if "," in text:
        text, _, option = text.partition(",")
        match = re.fullmatch(r"seed=(\d+)", option.strip())
        if not match:
            raise DataError(f"synthetic option {option!r} not understood; expected seed=N")
        seed = int(match.group(1))
    if text in SIZES:
        return SIZES[text], seed
    match = re.fullmatch(r"(\d+)x(\d+)x(\d+)", text)
    if not match:
        raise DataError(
            f"synthetic size {text!r} not understood; expected one of {', '.join(SIZES)} "
            "or USERSxMOVIESxRATINGS such as 500x300x20000"
        )
    size = SyntheticSize(*(int(group) for group in match.groups()))
    if min(size.users, size.movies) < 2 or size.ratings > size.users * size.movies // 2 or size.ratings < size.users:
        raise DataError(
            f"synthetic size {text!r} is not possible: need at least 2 users and 2 movies, at least one "
            "rating per user, and at most half of all (user, movie) pairs rated"
        )
    return size, seed


def _titles(rng: np.random.Generator, count: int) -> np.ndarray:
    combos = [
        pattern.format(a=a, n=n)
        for pattern in _PATTERNS
        for a in (_ADJECTIVES if "{a}" in pattern else ("",))
        for n in _NOUNS
    ]
    order = rng.permutation(len(combos))
    base = np.asarray(combos, dtype=object)[order[np.arange(count) % len(combos)]]
    # Past the number of combinations, sequels keep titles unique.
    sequel = np.arange(count) // len(combos)
    return np.where(sequel > 0, base + " " + (sequel + 1).astype(str), base)


def _split_counts(total: int, weights: np.ndarray, low: int, high: int) -> np.ndarray:
    """Integer counts proportional to ``weights``, each in [low, high], that add up to ``total``."""
    counts = np.clip(np.floor(weights / weights.sum() * total), low, high).astype(np.int64)
    heaviest_first = np.argsort(-weights, kind="stable")
    while (gap := total - int(counts.sum())) != 0:
        room = high - counts[heaviest_first] if gap > 0 else counts[heaviest_first] - low
        eligible = heaviest_first[room > 0]
        if len(eligible) == 0:
            raise DataError(f"cannot spread {total:,} ratings over {len(weights):,} users with {low}..{high} each")
        counts[eligible[: abs(gap)]] += 1 if gap > 0 else -1
    return counts


#: A user's pick comes from the clusters they like with this chance, otherwise from the whole
#: catalog by popularity; and with ``EXPLORE`` it is any movie, drawn uniformly, instead.
TASTE_SHARE = 0.75
EXPLORE = 0.05


def _cluster_weights(rng: np.random.Generator, user_vectors: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Each user's preference over the clusters [users, clusters], rows summing to 1: their affinity
    to each cluster's center, times a sparse random liking (most users like a few clusters)."""
    taste = user_vectors @ centers.T / np.sqrt(user_vectors.shape[1])
    weights = np.exp(1.8 * taste) * rng.gamma(0.5, 1.0, (len(user_vectors), len(centers)))
    return weights / weights.sum(1, keepdims=True)


@dataclass(frozen=True)
class Tastes:
    """What the generator draws each user's movies from: the ground truth a recommender estimates.

    Args:
        movie_cluster: each movie's taste cluster [movies] (movie id ``i + 1`` at row ``i``).
        popularity: each movie's popularity [movies].
        centers: the clusters' centers in the latent space [clusters, dim].
        cluster_weights: each user's preference over the clusters [users, clusters] (user id ``i + 1``).
    """

    movie_cluster: np.ndarray
    popularity: np.ndarray
    centers: np.ndarray
    cluster_weights: np.ndarray

    def pick_probability(self, weights: np.ndarray, movies: np.ndarray | None = None) -> np.ndarray:
        """The chance that one pick of a user with cluster preference ``weights`` [users, clusters] is
        each movie [users, movies], or each of ``movies`` (rows) [users, len(movies)] (the generator's
        first rounds; a repeat is drawn again; a cluster without movies aside)."""
        movies = np.arange(len(self.popularity)) if movies is None else np.asarray(movies)
        cluster = self.movie_cluster[movies]
        within = self.popularity[movies] / np.bincount(self.movie_cluster, self.popularity, len(self.centers))[cluster]
        chosen = TASTE_SHARE * weights[:, cluster] * within + (1 - TASTE_SHARE) * (
            self.popularity[movies] / self.popularity.sum())
        return (1 - EXPLORE) * chosen + EXPLORE / len(self.popularity)

    def sample_users(self, count: int, seed: int = 0) -> np.ndarray:
        """Cluster preferences of ``count`` new users drawn as the generator draws its users [count, clusters]."""
        rng = np.random.default_rng(seed)
        return _cluster_weights(rng, rng.normal(0, 1, (count, self.centers.shape[1])), self.centers)


def tastes(size: SyntheticSize, seed: int = 42, clusters: int = 24, dim: int = 8) -> Tastes:
    """The :class:`Tastes` behind ``generate(size, seed, clusters, dim)``'s ratings, without drawing them.

    Examples:
        >>> truth = tastes(*parse_size("100k"))
        >>> truth.cluster_weights.shape, round(float(truth.pick_probability(truth.cluster_weights[:1]).sum()), 6)
        ((943, 24), 1.0)
    """
    return _world(size, seed, clusters, dim).tastes


@dataclass(frozen=True)
class _World:
    """The generator's draws before the ratings (and the random state they leave)."""

    rng: np.random.Generator
    tastes: Tastes
    movie_vectors: np.ndarray
    movie_bias: np.ndarray
    year: np.ndarray
    movies: pd.DataFrame
    activity: np.ndarray
    user_vectors: np.ndarray


def _world(size: SyntheticSize, seed: int, clusters: int, dim: int) -> _World:
    """Everything the generator draws before the ratings, in its order of draws from ``seed``."""
    rng = np.random.default_rng(seed)
    n_users, n_movies = size.users, size.movies

    # Movies: cluster, long-tailed popularity, latent vector, quality bias, year, genres.
    movie_cluster = rng.integers(0, clusters, n_movies)
    popularity = rng.lognormal(0.0, 1.6, n_movies)
    centers = rng.normal(0, 1, (clusters, dim))
    movie_vectors = centers[movie_cluster] + 0.5 * rng.normal(0, 1, (n_movies, dim))
    movie_bias = 0.35 * rng.normal(0, 1, n_movies) + 0.08 * np.log(popularity)
    year = np.clip(np.round(2018 - rng.gamma(2.0, 9.0, n_movies)), 1920, 2018).astype(np.int64)
    genre_names = np.asarray(MOVIELENS_GENRES[1:])
    cluster_genres = rng.integers(0, len(genre_names), (clusters, 2))
    extra = rng.integers(0, len(genre_names), n_movies)
    has_extra = rng.random(n_movies) < 0.4
    genres = [
        tuple(sorted({genre_names[cluster_genres[c, 0]], genre_names[cluster_genres[c, 1]]}
                     | ({genre_names[e]} if x else set())))
        for c, e, x in zip(movie_cluster, extra, has_extra)
    ]
    titles = _titles(rng, n_movies)
    movies = pd.DataFrame(
        {
            "movie_id": (np.arange(n_movies) + 1).astype(str),
            "title": [f"{t} ({y})" for t, y in zip(titles, year)],
            "genres": genres,
            "year": pd.array(year, dtype="Int64"),
        }
    )

    # Users: long-tailed activity (at least 20 ratings where possible), cluster tastes.
    low = int(min(20, size.ratings // n_users))
    high = int(min(n_movies // 2, max(low + 1, size.ratings)))
    activity = _split_counts(size.ratings, rng.lognormal(0.0, 1.0, n_users), low, high)
    user_vectors = rng.normal(0, 1, (n_users, dim))
    cluster_weights = _cluster_weights(rng, user_vectors, centers)
    return _World(rng, Tastes(movie_cluster, popularity, centers, cluster_weights), movie_vectors, movie_bias, year,
                  movies, activity, user_vectors)


def generate(size: SyntheticSize, seed: int = 42, clusters: int = 24, dim: int = 8) -> RatingsData:
    """Generates MovieLens-shaped ratings (1..5 stars), movies and users.

    Args:
        size: numbers of users, movies and ratings (exact).
        seed: the data depend on it alone.
        clusters: number of taste clusters.
        dim: dimension of the latent taste vectors behind the ratings.
    """
    world = _world(size, seed, clusters, dim)
    rng, truth, n_users, n_movies = world.rng, world.tastes, size.users, size.movies
    movie_cluster, popularity, year, movies = truth.movie_cluster, truth.popularity, world.year, world.movies
    user_vectors, movie_vectors, movie_bias, activity = world.user_vectors, world.movie_vectors, world.movie_bias, world.activity
    cluster_cdf = np.cumsum(truth.cluster_weights, axis=1)

    # Within a cluster, movies are drawn by popularity: one cumulative table over movies sorted by cluster.
    by_cluster = np.argsort(movie_cluster, kind="stable")
    cum = np.cumsum(popularity[by_cluster])
    cluster_end = cum[np.searchsorted(movie_cluster[by_cluster], np.arange(clusters), side="right") - 1]
    cluster_start = np.concatenate([[0.0], cluster_end[:-1]])
    cluster_start = np.where(np.bincount(movie_cluster, minlength=clusters) > 0, cluster_start, 0)
    global_cum = np.cumsum(popularity)

    users_out, movies_out = _sample_pairs(
        rng, activity, cluster_cdf, cluster_start, cluster_end, cum, by_cluster, global_cum
    )

    # Ratings: biases + cluster taste + latent affinity + noise, on 1..5 stars.
    user_bias = 0.4 * rng.normal(0, 1, n_users)
    affinity = np.einsum("ij,ij->i", user_vectors[users_out], movie_vectors[movies_out]) / np.sqrt(dim)
    raw = 3.2 + user_bias[users_out] + movie_bias[movies_out] + 0.45 * affinity
    raw += 0.85 * rng.normal(0, 1, len(raw))
    rating = np.clip(np.round(raw), 1, 5).astype(np.float32)

    # Timestamps: each user rates over a span after the movie came out (1996..2018, seconds).
    start = rng.uniform(820_000_000, 1_500_000_000, n_users)
    span = rng.exponential(3.0e7, n_users)
    release = (year[movies_out] - 1970) * 31_557_600.0
    when = start[users_out] + rng.random(len(users_out)) * span[users_out]
    timestamp = np.maximum(when, release).astype(np.int64)

    interactions = pd.DataFrame(
        {
            "user_id": pd.Categorical.from_codes(users_out, (np.arange(n_users) + 1).astype(str)),
            "movie_id": pd.Categorical.from_codes(movies_out, movies["movie_id"].to_numpy()),
            "rating": rating,
            "timestamp": timestamp,
        }
    )
    users = pd.DataFrame(
        {
            "user_id": (np.arange(n_users) + 1).astype(str),
            "age": rng.choice(_AGES, n_users, p=[0.04, 0.18, 0.35, 0.2, 0.1, 0.08, 0.05]).astype(np.int32),
            "gender": np.where(rng.random(n_users) < 0.71, "M", "F"),
            "occupation": rng.choice(np.asarray(_OCCUPATIONS), n_users),
            "zip": rng.integers(10_000, 99_999, n_users).astype(str),
        }
    )
    report = ValidationReport(rows_read=len(interactions))
    report.notes.append(f"synthetic data: {n_users:,} users, {n_movies:,} movies, seed {seed}")
    return RatingsData(interactions, movies, users, f"synthetic:{n_users}x{n_movies}x{size.ratings},seed={seed}",
                       (1.0, 5.0), report)


def _sample_pairs(rng, activity, cluster_cdf, cluster_start, cluster_end, cum, by_cluster, global_cum):
    """Draws ``activity[u]`` distinct movies for each user u; returns (user, movie) index arrays."""
    n_users, n_movies = len(activity), len(by_cluster)
    kept_users, kept_movies = [], []
    need = activity.copy()
    taken: np.ndarray | None = None  # sorted keys user * n_movies + movie already drawn
    for round_number in range(50):
        # A little uniform exploration; more in late rounds, for users whose tastes are exhausted.
        explore = EXPLORE if round_number < 3 else 0.5
        if need.sum() == 0:
            break
        draws_per_user = np.ceil(need * 1.3).astype(np.int64) + (need > 0) * 2
        users = np.repeat(np.arange(n_users), draws_per_user)
        movies = np.empty(len(users), dtype=np.int64)
        for lo in range(0, len(users), 2_000_000):  # chunks bound memory at 20M ratings
            chunk = users[lo : lo + 2_000_000]
            from_taste = rng.random(len(chunk)) < TASTE_SHARE
            cluster = (rng.random((len(chunk), 1)) > cluster_cdf[chunk]).sum(axis=1)
            cluster = np.minimum(cluster, cluster_cdf.shape[1] - 1)
            target = cluster_start[cluster] + rng.random(len(chunk)) * (cluster_end[cluster] - cluster_start[cluster])
            in_cluster = by_cluster[np.minimum(np.searchsorted(cum, target, side="right"), n_movies - 1)]
            popular = np.minimum(np.searchsorted(global_cum, rng.random(len(chunk)) * global_cum[-1]), n_movies - 1)
            anything = rng.integers(0, n_movies, len(chunk))
            chosen = np.where(from_taste, in_cluster, popular)
            movies[lo : lo + len(chunk)] = np.where(rng.random(len(chunk)) < explore, anything, chosen)
        keys = users * n_movies + movies
        # First occurrence of each key, in draw order, and not drawn in an earlier round.
        _, first = np.unique(keys, return_index=True)
        first.sort()
        if taken is not None:
            first = first[~np.isin(keys[first], taken)]
        users, movies = users[first], movies[first]
        rank = np.arange(len(users)) - np.searchsorted(users, users)  # position within the user's draws
        keep = rank < need[users]
        users, movies = users[keep], movies[keep]
        kept_users.append(users)
        kept_movies.append(movies)
        need = need - np.bincount(users, minlength=n_users)
        new_keys = users * n_movies + movies
        taken = np.sort(new_keys if taken is None else np.concatenate([taken, new_keys]))
    if need.sum() > 0:
        raise DataError("synthetic generator could not draw enough distinct movies; use fewer ratings per user")
    users = np.concatenate(kept_users)
    movies = np.concatenate(kept_movies)
    order = np.lexsort((movies, users))
    return users[order], movies[order]
