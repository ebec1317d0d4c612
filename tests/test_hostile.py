"""Hostile inputs: each case is one line naming the value (exit code 2) or a clear 4xx, and nothing
is published, lost or guessed.

One row per case: the command line (``ROOT`` is the folder of hostile files, ``MODEL`` the
session's model) and what its one line on stderr must say. Cases that succeed say what they must
have read instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys

import pytest

from tfrs_pipeline.cli import main
from tfrs_pipeline.config import DataConfig
from tfrs_pipeline.data import load_data
from tfrs_pipeline.errors import ModelError
from tfrs_pipeline.model_dir import CLAIM, MANIFEST, ModelDir


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    (root / "mixed.csv").write_bytes(b"user_id,item_id,rating\nJos\xc3\xa9,1,4\nJos\xe9,2,3\n")
    (root / "four.csv").write_text("u1,a,4,100\nu2,b,3,200\n")
    (root / "stars.csv").write_text("user_id,item_id,stars\nu1,a,4\nu2,b,3\n")
    (root / "ratings.csv").write_text("user_id,item_id,rating\nu1,a,4\nu2,b,3\n")
    (root / "items.csv").write_text("item_id,title\na,Alien (1979)\nb,Heat (1995)\n")
    (root / "future.csv").write_text("user_id,item_id,rating,timestamp\nu1,a,4,1\nu2,b,4,99999999999999999999\n")
    (root / "old.csv").write_text("user_id,item_id,rating,timestamp\nu1,a,4,1800-01-01\n")
    (root / "nul.csv").write_bytes(b"user_id,item_id,rating\n" + b"u1,a,4\n" * 12_000 + b"u\x002,b,3\n")
    (root / "huge_field.csv").write_text("user_id,item_id,rating\n" + "u" * 10_000_000 + ",a,4\n")
    os.mkfifo(root / "fifo.csv")
    os.symlink(root / "loop.csv", root / "loop.csv")
    (root / "unreadable.csv").write_text("user_id,item_id,rating\nu1,a,4\n")
    (root / "unreadable.csv").chmod(0)
    (root / "a_file").write_text("not a folder")
    (root / "config_folder").mkdir()
    (root / "ratings.dat").write_text("1::0068646::4::1381620027\n10::0068646::3::1381620030\n")  # no header line
    (root / "blank_title.csv").write_text("item_id,title\na,Alien (1979)\nb,   \n")
    (root / "linecol.csv").write_text("line,item_id,rating\nu1,a,4\nu2,b,3\n")
    (root / "comma_id.csv").write_text('user_id,item_id,rating\nu1,"a,b",4\nu2,b,3\n')
    (root / "ambiguous.csv").write_text("user_id,item_id,rating,when\nu1,a,4,03/12/2005\nu2,b,3,04/05/2006\n")
    (root / "both_orders.csv").write_text("user_id,item_id,rating,when\nu1,a,4,25/12/2005\nu2,b,3,12/25/2005\n")
    (root / "day_first.csv").write_text("user_id,item_id,rating,when\nu1,a,4,03/12/2005\nu2,b,3,25/12/2005\n")
    (root / "semi.csv").write_text("user_id;item_id;rating\nu1;a;4\nu2;b;3\n")
    (root / "semi_items.csv").write_text("item_id;title\na;Alien (1979)\nb;Heat (1995)\n")
    return root


DATA = "data describe --data csv:ROOT/"
CASES = [
    # one encoding per file, never a silent second guess
    (DATA + "mixed.csv", "mixed.csv, line 3: the bytes b'\\xe9,2,' at byte offset 36 are not valid UTF-8; expected "
                         "UTF-8 text throughout (name the file's encoding with --encoding"),
    (DATA + "four.csv --columns user_id,item_id", "four.csv, line 1: 4 fields separated by ',', but the column names "
                                                  "given (user_id, item_id) are 2; name every field of the line"),
    (DATA + "stars.csv", "stars.csv: no rating column; it has 'user_id', 'item_id', 'stars'. Name the rating column "
                         "with --rating-col NAME, or pass --implicit"),
    (DATA + "stars.csv --rating-col stars --implicit", "a rating column ('stars') and implicit feedback were both "
                                                       "asked for"),
    (DATA + "future.csv", "future.csv, line 3: unreadable timestamp '99999999999999999999'; expected seconds since "
                          "1970 or a date and time, from 1900 to 2200"),
    (DATA + "old.csv", "old.csv, line 2: unreadable timestamp '1800-01-01'; expected seconds since 1970 or a date "
                       "and time, from 1900 to 2200"),
    (DATA + "nul.csv", "nul.csv, line 12002: a NUL byte at byte offset 84,024"),
    (DATA + "huge_field.csv", "huge_field.csv, line 2: user id too long: 'uuuuuuuuuu"),
    (DATA + "fifo.csv", "fifo.csv: a FIFO (named pipe), not a regular file"),
    (DATA + "loop.csv", "loop.csv: a symbolic link loop"),
    (DATA + "ratings.csv --encoding klingon", "data.encoding 'klingon' is not a text encoding Python knows"),
    (DATA + "ratings.csv --items ROOT/blank_title.csv", "blank_title.csv, line 3: missing title ''; expected a value"),
    # ids every route can carry: no commas, no surrounding spaces
    (DATA + "comma_id.csv", "comma_id.csv, line 2: movie id with a comma 'a,b'; expected an id without commas (lists "
                            "of ids are comma-separated on the command line and in HTTP queries)"),
    # dates: one order per column, never guessed value by value
    (DATA + "ambiguous.csv --timestamp-col when", "ambiguous.csv, column 'when': '03/12/2005' reads as day/month or "
                                                 "month/day, and no date of the column tells which; name the column's "
                                                 "one format with --date-format (such as %d/%m/%Y or %m/%d/%Y)"),
    (DATA + "both_orders.csv --timestamp-col when", "both_orders.csv, column 'when': dates written day first "
                                                    "('25/12/2005') and month first ('12/25/2005') in one column"),
    # a header-less file: the message names the option that reads it
    (DATA + "ratings.dat --sep ::", "ratings.dat: no user column 'user_id'; it has '1', '0068646', '4', '1381620027' "
                                    "(separator '::'; set it with --sep): its first line looks like data, not column "
                                    "names: a file without a header line names its fields with --columns user_id,"
                                    "item_id,rating,timestamp (in order)"),
    # configuration: every number has a range, checked before anything runs
    ("train --out ROOT/x --set retrieval.embedding_dim=99999999999999999999",
     "retrieval.embedding_dim must be a whole number from 1 to 4,096, got 99999999999999999999"),
    ("train --out ROOT/x --set retrieval.embedding_dim=100000000",
     "retrieval.embedding_dim must be a whole number from 1 to 4,096, got 100000000"),
    ("train --out ROOT/x --set rating.hidden_units=-5",
     "rating.hidden_units must be a list of whole numbers from 1 to 65,536, got [-5]"),
    ("train --out ROOT/x --set retrieval.history_dropout=2", "retrieval.history_dropout must be a number in [0, 1), "
                                                             "got 2.0"),
    ("train --out ROOT/x --config ROOT/config_folder", "configuration file ROOT/config_folder is a folder; expected "
                                                       "a TOML file"),
    # the model folder
    ("train --data synthetic:40x30x600 --out ROOT/a_file", "ROOT/a_file: a file, not a folder"),
    ("train --data synthetic:40x30x600 --out ROOT/a_file/model", "ROOT/a_file/model: a part of the path is a file"),
    # ids a shell could not decode
    ("recommend --model MODEL --user \udcff\udcfe", "user_ids must hold ids of UTF-8 text, got '\\udcff\\udcfe'"),
    ("similar --model MODEL --movie \udcff", "movie must hold ids of UTF-8 text, got '\\udcff'"),
]


@pytest.mark.parametrize("command,message", CASES, ids=[command for command, _ in CASES])
def test_a_hostile_input_is_one_line_and_exit_code_2(root, trained, capsys, command, message):
    values = {"ROOT": str(root), "MODEL": str(trained.path.parent)}
    argv = [next((part.replace(k, v) for k, v in values.items() if k in part), part) for part in command.split(" ")]
    try:
        code = main(argv)
    except SystemExit as stopped:
        code = stopped.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert message.replace("ROOT", str(root)) in err


def test_a_file_this_user_may_not_read_is_named_as_such(root, capsys):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    assert main(["data", "describe", "--data", f"csv:{root / 'unreadable.csv'}"]) == 2
    assert "unreadable.csv: permission denied" in capsys.readouterr().err


def test_the_encoding_asked_for_is_the_one_used(root):
    ids = load_data(f"csv:{root / 'mixed.csv'}", DataConfig(encoding="latin-1")).interactions["user_id"].tolist()
    assert ids == ["JosÃ©", "José"]  # as latin-1 reads the bytes: asked for, so not a guess


def test_an_items_file_with_a_header_read_with_named_columns_keeps_its_header_out(root):
    config = DataConfig(csv_items_path=str(root / "items.csv"), items_columns=["item_id", "title"])
    data = load_data(f"csv:{root / 'ratings.csv'}", config)
    assert data.movies["movie_id"].tolist() == ["a", "b"] and "item_id" not in set(data.movies["movie_id"])
    assert any("line 1 names the columns given (item_id, title): read as a header" in note for note in data.report.notes)


def test_a_staging_folder_of_a_dead_run_is_removed_and_versions_stay_dense(tmp_path):
    base = tmp_path / "model"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = base / ".1.partial"
    stale.mkdir(parents=True)
    (stale / CLAIM).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "started": 0}))
    alive = base / ".2.partial"
    alive.mkdir()
    (alive / CLAIM).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": 0}))
    elsewhere = base / ".3.partial"
    elsewhere.mkdir()
    (elsewhere / CLAIM).write_text(json.dumps({"pid": int(dead.stdout), "host": "another-host", "started": 0}))
    lines = []
    staging = ModelDir.create(base, lines.append)
    assert not stale.exists() and alive.exists() and elsewhere.exists()  # only what is provably abandoned
    assert staging.version == 4 and lines == [f"removed {stale}: the staging folder of a run that is no longer alive"]
    shutil.rmtree(alive)
    shutil.rmtree(elsewhere)
    (staging.path / "saved_model.pb").write_text("x")
    staging.write_manifest()
    published = staging.publish()
    assert not (published.path / CLAIM).exists() and CLAIM not in (published.path / MANIFEST).read_text()


def test_a_manifest_entry_outside_its_version_folder_is_refused(tmp_path):
    version = tmp_path / "model" / "1"
    version.mkdir(parents=True)
    (tmp_path / "secret").write_text("x")
    (version / "saved_model.pb").write_text("x")
    ModelDir(version).write_manifest()
    import hashlib

    digest = hashlib.sha256(b"x").hexdigest()
    with open(version / MANIFEST, "a", encoding="utf-8") as manifest:
        manifest.write(f"{digest}  ../../secret\n")
    with pytest.raises(ModelError, match="lists '../../secret', outside the version folder"):
        ModelDir(version).verify()


# -- the server --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory):
    from tfrs_pipeline.server import make_server
    from tfrs_pipeline.server.rest import Limits

    base = tmp_path_factory.mktemp("hostile_served") / "movies"
    shutil.copytree(trained.path, base / "1")
    server = make_server(base, port=0, limits=Limits(max_body_bytes=64 * 1024, timeout_seconds=20), poll_seconds=0.2)
    server.start()
    yield server
    server.stop()


def _exchange(server, request: bytes, read_seconds: float = 20.0) -> bytes:
    """Sends raw bytes on a new connection; everything the server answers until it closes or goes quiet."""
    with socket.create_connection((server.host, server.port), timeout=read_seconds) as connection:
        try:
            connection.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed first: what it answered is still to be read
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return answer


def _post(path: str, body: bytes, headers: bytes = b"") -> bytes:
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + headers
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


PREDICT = "/v1/models/movies:predict"
BAD_REQUESTS = [
    (_post(PREDICT, b'{"inputs": {"user_id": ["1"], "k": Infinity}}'), b"400", b"Infinity, which is not a JSON number"),
    (_post(PREDICT, b'{"inputs": {"user_id": ["1"], "k": -Infinity}}'), b"400", b"-Infinity, which is not a JSON"),
    (_post(PREDICT, b'{"inputs": {"user_id": ["1"], "k": NaN}}'), b"400", b"NaN, which is not a JSON number"),
    (_post(PREDICT, b'{"inputs": {"user_id": ["1"], "k": 1e400}}'), b"400", b"input 'k' must be an integer"),
    (_post(PREDICT, b'{"inputs": {"user_id": ["\\ud800"], "k": 3}}'), b"400", b"not text (a lone surrogate)"),
    (_post(PREDICT, b"[" * 100_000 + b"]" * 100_000), b"413", b"the limit is 65,536"),
    (_post(PREDICT, b'{"a": ' * 5_000 + b"1" + b"}" * 5_000), b"400", b"nested too deeply"),
    (b"GET /v1/models/movies/versions/%C2%B2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"400", b"version must be an integer"),
    (b"GET /v1/models/movies/versions/%D9%A1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"400", b"version must be an integer"),
    (b"GET /recommend?user_id=1&k=%D9%A1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"400", b"k must be an integer"),
    (b"GET /recommend?user_id=1&k=%C2%B2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"400", b"k must be an integer"),
    (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n", b"431", b"over 65,536 bytes"),
    (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(2_000)) + b"\r\n",
     b"431", b"more than 100 request headers"),
]


@pytest.mark.parametrize("request_bytes,status,message", BAD_REQUESTS,
                         ids=["Infinity", "-Infinity", "NaN", "1e400", "surrogate", "deep-over-limit", "deep",
                              "version-superscript", "version-arabic-digit", "k-arabic-digit", "k-superscript", "header-size", "header-count"])
def test_a_hostile_request_is_a_4xx_naming_what_is_wrong(served, request_bytes, status, message):
    answer = _exchange(served, request_bytes)
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:300]
    assert message in answer, answer[:600]


def test_after_a_413_the_connection_is_closed_and_the_rest_of_the_body_is_not_read(served):
    head = (b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000000\r\n\r\n")
    with socket.create_connection((served.host, served.port), timeout=20) as connection:
        connection.sendall(head + b"{" * 65536)
        answer = connection.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413") and b"connection: close" in answer.lower()
        sent = 0
        with pytest.raises(OSError):  # the server closed: writing the rest fails before a gigabyte is sent
            for _ in range(16_000):  # at most 1 GB, bounded
                connection.sendall(b"x" * 65536)
                sent += 65536
        assert sent < 200 * 2**20


def test_an_idle_connection_is_closed_after_the_header_timeout(trained, tmp_path, monkeypatch):
    from tfrs_pipeline.server import make_server
    from tfrs_pipeline.server.protocol import LimitedHttpProtocol

    monkeypatch.setattr(LimitedHttpProtocol, "header_timeout", 1.0)
    shutil.copytree(trained.path, tmp_path / "movies" / "1")
    server = make_server(tmp_path / "movies", port=0)
    server.start()
    try:
        idle = [socket.create_connection((server.host, server.port), timeout=20) for _ in range(20)]
        slow = socket.create_connection((server.host, server.port), timeout=20)
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers never finished
        assert all(connection.recv(100) == b"" for connection in idle)  # closed without a word
        assert slow.recv(1000).startswith(b"HTTP/1.1 408")
        for connection in [*idle, slow]:
            connection.close()
        assert _exchange(server, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").startswith(
            b"HTTP/1.1 200")
    finally:
        server.stop()


def test_a_500_leaves_the_keep_alive_connection_usable(served, monkeypatch):
    import http.client

    app = served.application

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    connection = http.client.HTTPConnection(served.host, served.port, timeout=20)
    try:
        monkeypatch.setattr(app.versions, "available", broken)
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        assert response.status == 500 and b"internal error (RuntimeError)" in response.read()
        monkeypatch.undo()
        connection.request("GET", "/healthz")  # the same connection
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["status"] == "ok"
    finally:
        connection.close()


def test_when_the_serving_version_is_removed_the_one_before_it_serves_again(trained, tmp_path):
    import time
    import urllib.request

    from tfrs_pipeline.server import make_server

    base = tmp_path / "movies"
    shutil.copytree(trained.path, base / "1")
    server = make_server(base, port=0, poll_seconds=0.2)
    server.start()

    def health():
        with urllib.request.urlopen(server.url + "/healthz", timeout=20) as answer:
            return json.loads(answer.read())

    def wait_for(condition, seconds=60.0):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.1)
        return False

    try:
        shutil.copytree(trained.path, base / ".2.partial")
        (base / ".2.partial").rename(base / "2")
        assert wait_for(lambda: health()["version"] == "2")
        shutil.rmtree(base / "2")
        assert wait_for(lambda: health()["version"] == "1")

        def states():
            with urllib.request.urlopen(server.url + "/v1/models/movies", timeout=20) as answer:
                return {s["version"]: s for s in json.loads(answer.read())["model_version_status"]}

        assert wait_for(lambda: states()["2"]["state"] == "END")
        states = states()
        assert states["1"]["state"] == "AVAILABLE"
        assert states["2"]["status"]["error_message"] == "its folder was removed from disk: version 1 serves instead"
        with urllib.request.urlopen(server.url + "/recommend?user_id=1&k=3", timeout=20) as answer:
            assert len(json.loads(answer.read())["movies"]) == 3
    finally:
        server.stop()


def test_the_items_file_is_read_with_the_ratings_separator_unless_told_otherwise(root):
    data = load_data(f"csv:{root / 'semi.csv'}", DataConfig(sep=";", csv_items_path=str(root / "semi_items.csv"),
                                                            rating_scale=[1.0, 5.0]))
    assert data.movies["title"].tolist() == ["Alien (1979)", "Heat (1995)"]


def test_a_header_less_file_named_with_columns_keeps_ids_as_written(root):
    data = load_data(f"csv:{root / 'ratings.dat'}", DataConfig(sep="::", columns=["user_id", "item_id", "rating",
                                                                                  "timestamp"], rating_scale=[1.0, 5.0]))
    assert data.interactions["movie_id"].tolist() == ["0068646", "0068646"]


def test_python_messages_name_python_keywords_and_numeric_dataframe_ids_warn(tmp_path):
    import pandas as pd

    import tfrs_pipeline
    from tfrs_pipeline.errors import DataError, NumericIdsWarning

    frame = pd.DataFrame({"user": ["a", "b", "c"], "item": ["1", "2", "3"], "stars": [4.0, 9.0, 8.0]})
    with pytest.raises(DataError, match='1 more such rows; use on_bad_rows="skip" to drop them') as raised:
        tfrs_pipeline.train(frame, user_col="user", item_col="item", rating_col="stars", rating_scale=(1, 5),
                            out=tmp_path / "m", log=lambda line: None)
    assert "--" not in str(raised.value)  # no command-line flag in a Python message
    (tmp_path / "r.csv").write_text("user,item,stars\na,1,4\n")
    with pytest.raises(DataError, match=r"no user column 'user_id'.*name it with user_col=") as raised:
        tfrs_pipeline.train(f"csv:{tmp_path / 'r.csv'}", out=tmp_path / "m", log=lambda line: None)
    assert "--" not in str(raised.value)
    numeric = pd.DataFrame({"user": [1, 2], "item": [68646, 7], "stars": [4.0, 3.0]})
    with pytest.warns(NumericIdsWarning, match=r"'user' \(int64\), 'item' \(int64\) hold numbers.*dtype=\{'user': str, "
                                               "'item': str\}"):
        data = load_data(numeric, DataConfig(csv_user_column="user", csv_item_column="item", csv_rating_column="stars"))
    assert data.interactions["movie_id"].tolist() == ["68646", "7"]


PYTHON_CALLS = [
    (lambda m: m.call("serving_default", -1, user_id=["1"], k=3), "batch_size must be a whole number from 1 up, got -1"),
    (lambda m: m.call("serving_default", user_id=[["1"]], k=3), "user_id must have 1 axes"),
    (lambda m: m.call("serving_default", user_id=["1"], k=-2), "k must be a whole number from 1 to 2,147,483,647, got -2"),
    (lambda m: m.call("serving_default", user_id=["1"], k=[3]), "k must be a whole number from 1 to 2,147,483,647"),
    (lambda m: m.call("rank", user_id=["1", "2"], movie_ids=[["1"]]), "must have one row each per request"),
    (lambda m: m.recommend("1", k=2**31), "k must be a whole number from 1 to 2,147,483,647, got 2147483648"),
    (lambda m: m.recommend("1", exclude_seen="no"), "exclude_seen must be True or False, got 'no'"),
    (lambda m: m.recommend_from_history(["1", ["2", "3"]]), "not a mix of ids and lists"),
    (lambda m: type(m).load(None), "path must be a model folder"),
]


@pytest.mark.parametrize("call,message", PYTHON_CALLS, ids=[message for _, message in PYTHON_CALLS])
def test_a_hostile_python_call_is_an_argument_error_naming_it(trained, call, message):
    from tfrs_pipeline import ArgumentError, Recommender

    model = Recommender.load(trained.path)
    with pytest.raises(ArgumentError, match=re.escape(message)):
        call(model)


def test_a_date_column_is_read_in_one_order_the_column_shows_or_the_one_named(root):
    import pandas as pd

    def days(name: str, date_format: str = "") -> list[str]:
        config = DataConfig(csv_timestamp_column="when", rating_scale=[1.0, 5.0], date_format=date_format)
        seconds = load_data(f"csv:{root / name}", config).interactions["timestamp"]
        return pd.to_datetime(seconds, unit="s").dt.strftime("%Y-%m-%d").tolist()

    assert days("day_first.csv") == ["2005-12-03", "2005-12-25"]  # 25/12 makes the whole column day first
    assert days("ambiguous.csv", "%m/%d/%Y") == ["2005-03-12", "2006-04-05"]
    assert days("ambiguous.csv", "%d/%m/%Y") == ["2005-12-03", "2006-05-04"]


def test_a_very_long_timestamp_in_a_dataframe_is_a_bad_value_not_a_hang():
    import pandas as pd

    from tfrs_pipeline.errors import DataError

    frame = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["1", "2"], "rating": [4.0, 3.0],
                          "timestamp": ["2019-03-01", "2019-03-01 " * 100_000]})  # 1.1 MB: 31 s in pandas' mixed parser
    with pytest.raises(DataError, match="row 2: unreadable timestamp '2019-03-01 2019"):
        load_data(frame, DataConfig())
    frame = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["1", "2"], "rating": [4.0, 3.0],
                          "timestamp": ["03/12/2005", "04/05/2006"]})
    with pytest.raises(DataError, match="name the column's one format with date_format="):
        load_data(frame, DataConfig())


def test_past_the_movies_left_a_list_is_shorter_never_a_seen_or_excluded_movie(trained):
    from tfrs_pipeline import CappedWarning, Recommender

    model = Recommender.load(trained.path)
    train = trained.split.train
    user = train["user_id"].value_counts().index[0]  # the most ratings: the fewest movies left
    seen = set(train.loc[train["user_id"] == user, "movie_id"])
    excluded = sorted(set(model.catalog["movie_id"]) - seen)[:5]
    for kwargs in ({}, {"exclude": [excluded]}):
        with pytest.warns(CappedWarning):
            top = model.recommend(user, k=len(model.catalog), **kwargs)
        returned = set(top["movie_id"])
        assert not returned & seen and not returned & set(kwargs.get("exclude", [[]])[0])
        assert len(top) == len(returned) <= len(model.catalog) - len(seen)


@pytest.mark.slow
def test_on_a_43_movie_catalog_k_past_the_movies_left_never_returns_a_seen_or_excluded_one(tmp_path):
    import numpy as np
    import pandas as pd

    import tfrs_pipeline
    from tfrs_pipeline import CappedWarning

    rng = np.random.default_rng(3)
    rows = [(str(user), str(movie), float(rng.integers(1, 6)), user * 1000 + movie)
            for user in range(1, 41) for movie in rng.choice(np.arange(1, 44), 20, replace=False)]
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    model = tfrs_pipeline.train(ratings, rating_scale=(1, 5), out=tmp_path / "small", log=lambda line: None,
                                settings={"retrieval.epochs": 1, "rating.epochs": 1, "ranker.epochs": 1,
                                          "runtime.verbose": 0})
    assert len(model.catalog) == 43
    from tfrs_pipeline.config import DataConfig
    from tfrs_pipeline.data.split import reproduce_split

    split = reproduce_split(load_data(ratings, DataConfig(rating_scale=[1.0, 5.0])), model.model_dir.read_split())
    seen = set(split.train.query("user_id == '1'")["movie_id"])
    excluded = sorted(set(model.catalog["movie_id"]) - seen)[:3]
    assert 43 - len(seen) < 30  # fewer movies left than asked for
    for k, exclude in ((30, None), (40, None), (40, [excluded])):
        with pytest.warns(CappedWarning):
            top = model.recommend("1", k=k, exclude=exclude)
        returned = set(top["movie_id"])
        assert not returned & seen and not returned & set(excluded if exclude else [])
        assert len(top) == len(returned) <= 43 - len(seen) - (len(excluded) if exclude else 0)


def test_a_column_named_line_is_the_users_column(root):
    data = load_data(f"csv:{root / 'linecol.csv'}", DataConfig(csv_user_column="line", rating_scale=[1.0, 5.0]))
    assert data.interactions["user_id"].tolist() == ["u1", "u2"]


def _frame(**columns):
    import pandas as pd

    return pd.DataFrame({"user_id": ["a", "b"], "item_id": ["1", "2"], "rating": [4.0, 3.0], **columns})


FRAMES = [
    ({"item_id": [3.0, "3"]}, "row 1: item_id is a float among text ids (3.0 and '3' would be two movies): 3.0;"),
    ({"item_id": [1.0, 1.5]}, "row 2: item_id is a number with a fraction, or too large to be exact as a float: 1.5;"),
    ({"item_id": [1e20, 2.0]}, "row 1: item_id is a number with a fraction, or too large to be exact as a float: 1e+20;"),
    ({"item_id": [["1", "2"], "3"]}, "row 1: item_id is a list: ['1', '2']; expected"),
    ({"item_id": [{"id": 1}, "3"]}, "row 1: item_id is a dict"),
    ({"item_id": [True, False]}, "row 1: item_id is a true/false value"),
    ({"item_id": ["\udcff", "2"]}, "row 1: item_id is text that is not valid Unicode (a lone surrogate)"),
    ({"user_id": ["a", "   "]}, "row 2: missing user_id '   '; expected a value (not blank)"),
    ({"item_id": ["1", " 2"]}, "row 2: movie id that is blank or begins or ends with spaces ' 2'"),
    ({"rating": [4 + 1j, 3.0]}, "row 1: non-numeric rating '(4+1j)'"),
    ({"rating": [10**400, 3.0]}, "row 1: non-numeric rating '1000000000"),
]


@pytest.mark.parametrize("columns,message", FRAMES, ids=[message[:40] for _, message in FRAMES])
def test_a_dataframe_value_that_is_no_id_or_rating_is_refused_naming_its_row(columns, message):
    import pandas as pd

    from tfrs_pipeline.errors import DataError

    frame = _frame(**{name: pd.Series(values, dtype=object) for name, values in columns.items()})
    with pytest.raises(DataError, match=re.escape(message)):
        load_data(frame, DataConfig())


def test_a_dataframe_with_a_column_twice_is_refused():
    import pandas as pd

    from tfrs_pipeline.errors import DataError

    frame = pd.DataFrame([["a", "1", 4.0, "x"]], columns=["user_id", "item_id", "rating", "item_id"])
    with pytest.raises(DataError, match="has the column 'item_id' more than once"):
        load_data(frame, DataConfig())


@pytest.mark.slow
def test_a_disk_that_fills_during_export_is_one_line_and_publishes_nothing(tmp_path, monkeypatch, capsys):
    import tensorflow as tf

    import tfrs_pipeline.pipeline

    def full_disk(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "saved_model.pb; No space left on device\nmore lines")

    monkeypatch.setattr(tfrs_pipeline.pipeline, "export_model", full_disk)
    code = main(["train", "--data", "synthetic:40x30x600", "--epochs", "1", "--set", "ranker.epochs=1",
                 "--out", str(tmp_path / "full"), "--verbose", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].endswith("No space left on device; the run stopped and nothing was published")
    assert not [p for p in (tmp_path / "full").iterdir() if p.name != "logs"]  # no version, no staging folder
