"""``tfrs-pipeline data download``: MovieLens fetched from a local server, checked, unpacked, and read by name."""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tfrs_pipeline.cli import main
from tfrs_pipeline.data import load_data
from tfrs_pipeline.data.download import download_movielens
from tfrs_pipeline.errors import DataError

RATINGS = "userId,movieId,rating,timestamp\n" + "".join(
    f"{user},{movie},{1 + (user + movie) % 5}.0,{1_000_000 + user * 100 + movie}\n"
    for user in range(1, 6) for movie in range(1, 9))
MOVIES = "movieId,title,genres\n" + "".join(f"{movie},Movie {movie} (199{movie}),Drama\n" for movie in range(1, 9))


def _archive() -> bytes:
    """A zip laid out as GroupLens' (one top folder), with a tiny ml-latest-small inside."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ml-latest-small/ratings.csv", RATINGS)
        archive.writestr("ml-latest-small/movies.csv", MOVIES)
        archive.writestr("ml-latest-small/README.txt", "a test archive\n")
    return buffer.getvalue()


ARCHIVE = _archive()
GOOD_MD5 = f"MD5 (ml-latest-small.zip) = {hashlib.md5(ARCHIVE).hexdigest()}\n"


class _Server:
    """Serves ``files`` (path -> bytes) on 127.0.0.1; ``cut`` paths announce their whole length but send half."""

    def __init__(self, files: dict[str, bytes], cut: tuple[str, ...] = ()) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests.append(self.path)
                body = files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if self.path in cut else body)
                if self.path in cut:
                    self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/movielens"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _files(md5: str = GOOD_MD5) -> dict[str, bytes]:
    return {"/movielens/ml-latest-small.zip": ARCHIVE, "/movielens/ml-latest-small.zip.md5": md5.encode()}


def test_download_unpacks_and_the_name_reads_the_cached_copy(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TFRS_PIPELINE_CACHE", str(tmp_path / "cache"))
    with _Server(_files()) as server:
        assert main(["data", "download", "ml-latest-small", "--base-url", server.url]) == 0
        out, err = capsys.readouterr()
        assert out.strip() == "--data movielens:ml-latest-small"
        assert "downloading" in err and "(100%)" in err
        assert sorted(p.name for p in (tmp_path / "cache" / "ml-latest-small").iterdir()) == [
            "README.txt", "movies.csv", "ratings.csv"]
        assert [p.name for p in (tmp_path / "cache").iterdir()] == ["ml-latest-small"]  # nothing else left behind
        data = load_data("movielens:ml-latest-small")
        assert len(data.interactions) == 40 and len(data.movies) == 8
        # Fetched once: a second call finds it in the cache and asks the server nothing.
        asked = len(server.requests)
        assert main(["data", "download", "ml-latest-small", "--base-url", server.url]) == 0
        assert len(server.requests) == asked and "already in" in capsys.readouterr().err


@pytest.mark.parametrize(("case", "message"), [
    ("wrong checksum", "does not match the published"),
    ("truncated", "broke off"),
    ("unreachable", "could not connect"),
    ("missing", "404"),
    ("no checksum in the file", "expected one MD5 checksum"),
])
def test_a_failed_download_is_one_line_and_leaves_nothing(case, message, tmp_path, monkeypatch, capsys) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("TFRS_PIPELINE_CACHE", str(cache))
    files = _files("MD5 (ml-latest-small.zip) = " + "0" * 32 if case == "wrong checksum" else
                   "not a checksum" if case == "no checksum in the file" else GOOD_MD5)
    if case == "missing":
        files.pop("/movielens/ml-latest-small.zip")
    cut = ("/movielens/ml-latest-small.zip",) if case == "truncated" else ()
    with _Server(files, cut) as server:
        url = server.url
        if case == "unreachable":
            with socket.socket() as probe:  # a port nothing listens on
                probe.bind(("127.0.0.1", 0))
                url = f"http://127.0.0.1:{probe.getsockname()[1]}/movielens"
        assert main(["data", "download", "ml-latest-small", "--base-url", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("tfrs-pipeline: error: ") and message in err[-1]
    assert not cache.exists() or list(cache.iterdir()) == []


def test_an_archive_not_yet_downloaded_names_the_command_that_fetches_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TFRS_PIPELINE_CACHE", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="`tfrs-pipeline data download ml-100k` fetches it"):
        load_data("movielens:ml-100k")
    with pytest.raises(DataError, match="tfrs-pipeline data download NAME"):
        load_data("movielens:no/such/folder")
    with pytest.raises(DataError, match="unknown MovieLens archive 'ml-5m'"):
        download_movielens("ml-5m")
