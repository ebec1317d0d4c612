"""The routes for people: a page to try the model, and small JSON answers it (or a script) asks for.

* ``GET /recommend?user_id=ID&k=10[&exclude=ID,ID]``, ``GET /recommend?history=ID,ID&k=10``
  (a visitor the model has not seen, from the movies they just rated), and both together (a user
  with the movies they rated since training);
* ``GET /similar?movie_id=ID&k=10``; ``GET /explain?user_id=ID&movie_id=ID,ID&k=3``;
  ``GET /rated?user_id=ID&k=10``; ``GET /movies?q=TEXT``; ``GET /examples``;
* ``GET /``: the page (``page.html``), plain HTML and JavaScript that works offline.

Each answer is a signature's outputs under the names the Python API's tables use
(:mod:`~tfrs_pipeline.signatures`), and the signature a request needs is chosen as
:class:`~tfrs_pipeline.recommender.Recommender` chooses it.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Awaitable, Callable

import numpy as np
import pandas as pd
from starlette.requests import Request
from starlette.responses import Response

from tfrs_pipeline import signatures as named
from tfrs_pipeline.arguments import split_ids
from tfrs_pipeline.server import rest
from tfrs_pipeline.server.rest import BadRequest, Limits
from tfrs_pipeline.signatures import RANKED_COLUMNS, RATED_COLUMNS, SIMILAR_COLUMNS, recommend_signature


def json_response(body: dict, status: int = 200) -> Response:
    return Response(rest.encode(body), status_code=status, media_type="application/json")


class PeopleRoutes:
    """The people's routes over the newest available version.

    Args:
        call: ``await call(signature_name, inputs)``: the signature's outputs (batched and timed out as
            ``:predict`` calls are).
        newest: the newest available version's loaded :class:`~tfrs_pipeline.recommender.Recommender`.
        limits: what one request may ask for (``k``, ids per list).
    """

    def __init__(self, call: Callable[[str, dict], Awaitable[dict]], newest: Callable[[], object],
                 limits: Limits) -> None:
        self._get_call, self._newest, self.limits = call, newest, limits

    async def recommend(self, request: Request) -> Response:
        """A user's list (``user_id``), a visitor's (``history`` alone), or a user's with the movies rated
        since training (``user_id`` and ``history``); ``exclude`` leaves movies out of any of them."""
        query = request.query_params
        k = self._k(query)
        user = query.get("user_id") or None
        if user is None and "history" not in query:
            raise BadRequest("query parameter 'user_id' or 'history' is required")
        history = self._id_list(query["history"], "history") if "history" in query else None
        exclude = self._id_list(query["exclude"], "exclude") if "exclude" in query else None
        signature = recommend_signature(user=user is not None, history=history is not None, exclude=exclude is not None)
        given = {"user_id": np.array([user or ""], object), "movie_ids": np.array([history or [""]], object),
                 "exclude_movie_ids": np.array([exclude or [""]], object)}
        inputs = {name: given[name] for name in named.RECOMMEND_INPUTS[signature]}
        allow_unknown = _flag(query, "allow_unknown")
        out = await self._get_call(signature, {**inputs, "k": np.int32(k)})
        known = {name: rest.jsonable(out[name][0]) for name in ("known_user", "history_known") if name in out}
        if user is None:
            known.pop("known_user", None)
        elif not allow_unknown and not known["known_user"] and not known.get("history_known"):
            raise BadRequest(f"user_id {user!r} is not in the model's training data (ids are matched as text, exactly "
                             "as in the training data); allow_unknown=true answers with what the model serves such "
                             "users (well-rated popular movies), history= scores a visitor from their movies", 404)
        # Best first by the ranker's score, which orders the list; the predicted rating is not the order.
        return json_response(_movies(out, RANKED_COLUMNS, known))

    async def similar(self, request: Request) -> Response:
        query = request.query_params
        inputs = {"movie_id": np.array([_required(query, "movie_id")], object), "k": np.int32(self._k(query))}
        out = await self._get_call(named.SIMILAR_MOVIES, inputs)
        answer = _movies(out, SIMILAR_COLUMNS, {"known_movie": bool(out["known_movie"][0])})
        for movie in answer["movies"]:  # "score": the similarity's name before this release, for one release
            movie["score"] = movie["similarity"]
        return json_response(answer)

    async def explain(self, request: Request) -> Response:
        """For one user and each movie: the user's rated movies behind it, with their shares."""
        query = request.query_params
        user = _required(query, "user_id")
        movies = self._id_list(_required(query, "movie_id"), "movie_id")
        inputs = {"user_id": np.array([user] * len(movies), object), "movie_id": np.array(movies, object),
                  "k": np.int32(self._k(query, default="3"))}
        out = await self._get_call(named.EXPLAIN, inputs)
        rows = []
        for movie, ids, titles, shares in zip(movies, *(rest.jsonable(out[name]) for name in
                                                        ("movie_ids", "titles", "shares"))):
            because = [{"movie_id": i, "title": title, "share": share}
                       for i, title, share in zip(ids, titles, shares) if i]
            rows.append({"movie_id": movie, "because": because})
        return json_response({"known_user": bool(out["known_user"][0]), "movies": rows})

    async def movies(self, request: Request) -> Response:
        """The catalog movie whose id is the text, then those whose title holds it (case-insensitive); ``k`` at most."""
        query = request.query_params
        text = _required(query, "q").strip().lower()
        k = self._k(query)
        catalog = self._newest().catalog
        by_id = catalog["movie_id"].str.lower() == text
        by_title = catalog["title"].str.lower().str.contains(text, regex=False) & ~by_id
        found = pd.concat([catalog[by_id], catalog[by_title]]).head(k)  # the movie with that id first
        return json_response({"movies": found.to_dict("records")})

    async def rated(self, request: Request) -> Response:
        """The user's highest-rated training movies, best first (none for a user the model never saw)."""
        query = request.query_params
        inputs = {"user_id": np.array([_required(query, "user_id")], object), "k": np.int32(self._k(query))}
        out = await self._get_call(named.RATED_MOVIES, inputs)
        return json_response(_movies(out, RATED_COLUMNS, {"known_user": bool(out["known_user"][0])}))

    async def examples(self, request: Request) -> Response:
        """A few user ids the model knows, for a person who has none at hand."""
        return json_response({"user_ids": self._newest().known_users()[:5]})

    async def page(self, request: Request) -> Response:
        return Response(page_html(), media_type="text/html; charset=utf-8")

    def _id_list(self, text: str, name: str) -> list[str]:
        """A query parameter's comma-separated ids: at least one, at most ``--max-list`` (as ``:predict``)."""
        ids = split_ids(text)
        if not ids:
            raise BadRequest(f"query parameter {name!r} must list movie ids separated by commas")
        if len(ids) > self.limits.max_list:
            raise BadRequest(f"query parameter {name!r} lists {len(ids):,} ids; the limit is {self.limits.max_list:,}")
        return ids

    def _k(self, query, default: str = "10") -> int:
        text = query.get("k", default)
        digits = text.lstrip("-")
        if not (digits.isascii() and digits.isdigit()) or not 1 <= int(text) <= self.limits.max_k:
            raise BadRequest(f"k must be an integer between 1 and {self.limits.max_k:,}, got {text!r}")
        return int(text)


@functools.cache
def page_html() -> bytes:
    """The page for people (``page.html`` beside this module): plain HTML and JavaScript, nothing fetched
    from elsewhere, so it works offline."""
    return (importlib.resources.files("tfrs_pipeline.server") / "page.html").read_bytes()


def _flag(query, name: str) -> bool:
    """A true/false query parameter (absent: false)."""
    value = query.get(name, "false").strip().lower()
    if value not in ("true", "false", "1", "0"):
        raise BadRequest(f"query parameter {name!r} must be true or false, got {value[:40]!r}")
    return value in ("true", "1")


def _required(query, name: str) -> str:
    if not query.get(name):
        raise BadRequest(f"query parameter {name!r} is required")
    return query[name]


def _movies(outputs: dict, columns: dict[str, str], known: dict) -> dict:
    """The first row's movies of a signature's outputs, each under its column name, and ``known``."""
    values = [rest.jsonable(outputs[output][0]) for output in columns]
    rows = [dict(zip(columns.values(), row)) for row in zip(*values)]
    rows = [row for row in rows if row["movie_id"]]  # past the movies left: empty slots
    return {**known, "movies": rows}


