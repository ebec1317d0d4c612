"""Data sources, validation and the ``data describe`` command."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import zip_folder

from tfrs_pipeline.cli import main
from tfrs_pipeline.config import DataConfig
from tfrs_pipeline.data import load_data
from tfrs_pipeline.data.synthetic import generate, parse_size, tastes
from tfrs_pipeline.errors import DataError


def _check_schema(data):
    frame = data.interactions
    assert list(frame.columns) == ["user_id", "movie_id", "rating", "timestamp"]
    assert frame["rating"].dtype == np.float32 and frame["timestamp"].dtype == np.int64
    assert isinstance(frame["user_id"].iloc[0], str) and isinstance(frame["movie_id"].iloc[0], str)
    assert set(frame["movie_id"]) <= set(data.movies["movie_id"])
    assert not frame.duplicated(["user_id", "movie_id"]).any()


# --- synthetic ---------------------------------------------------------------------------------


def test_synthetic_100k_has_movielens_100k_shape():
    data = load_data("synthetic:100k")
    _check_schema(data)
    assert len(data.interactions) == 100_000
    assert data.interactions["user_id"].nunique() == 943
    assert len(data.movies) == 1_682
    assert data.movies["title"].is_unique
    assert data.movies["title"].str.match(r".+ \(\d{4}\)$").all()
    assert set(data.interactions["rating"].unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    per_user = data.interactions.groupby("user_id", observed=True).size()
    assert per_user.min() >= 20 and per_user.max() > 5 * per_user.median()  # long-tailed activity
    per_movie = data.interactions.groupby("movie_id", observed=True).size().sort_values(ascending=False)
    assert per_movie.iloc[:168].sum() > 0.3 * len(data.interactions)  # top 10% of movies: long-tailed popularity
    assert set(data.users.columns) == {"user_id", "age", "gender", "occupation", "zip"}


def test_synthetic_is_deterministic_by_seed_and_custom_sizes_are_exact():
    a = generate(*parse_size("300x120x5000,seed=3"))
    b = generate(*parse_size("300x120x5000,seed=3"))
    c = generate(*parse_size("300x120x5000,seed=4"))
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    assert not a.interactions.equals(c.interactions)
    assert len(a.interactions) == 5000 and a.interactions["user_id"].nunique() == 300


def test_the_synthetic_tastes_are_the_ones_its_ratings_were_drawn_from():
    size, seed = parse_size("300x120x5000,seed=3")
    data, truth = generate(size, seed), tastes(size, seed)
    users = data.interactions["user_id"].astype(int).to_numpy() - 1
    clusters = truth.movie_cluster[data.interactions["movie_id"].astype(int).to_numpy() - 1]
    # Each rating's cluster is one its user prefers: well above the 1-in-24 a random cluster gets, and
    # above what another seed's tastes make of the same ratings.
    preference = truth.cluster_weights[users, clusters].mean()
    assert preference > 2 / len(truth.centers)
    other = tastes(size, seed + 1)
    assert preference > 2 * other.cluster_weights[users, other.movie_cluster[data.interactions["movie_id"].astype(int) - 1]].mean()


@pytest.mark.parametrize("size", ["abc", "10x10x90", "0x5x5", "100k,seed=x"])
def test_synthetic_rejects_bad_sizes(size):
    with pytest.raises(DataError, match="synthetic"):
        parse_size(size)


# --- MovieLens layouts -------------------------------------------------------------------------


@pytest.mark.parametrize("layout,scale,has_users", [
    ("100k", (1.0, 5.0), True), ("1m", (1.0, 5.0), True), ("10m", (0.5, 5.0), False), ("latest", (0.5, 5.0), False),
])
@pytest.mark.parametrize("zipped", [False, True])
def test_movielens_layouts_load_with_their_counts(movielens_folder, tmp_path, layout, scale, has_users, zipped):
    folder = movielens_folder(layout, users=12, movies=20, per_user=6)
    path = zip_folder(folder, tmp_path / f"ml-{layout}.zip") if zipped else folder
    data = load_data(f"movielens:{path}")
    _check_schema(data)
    assert len(data.interactions) == 72 and data.interactions["user_id"].nunique() == 12
    assert len(data.movies) == 20
    assert data.rating_scale == scale
    assert (data.users is not None) == has_users
    assert data.movies["year"].notna().all() and data.movies["genres"].map(len).min() >= 1
    if layout == "latest":
        assert data.movies["title"].iloc[0] == "Movie, The 1 (1981)"  # quoted comma survives
    if layout == "100k":
        assert "é" in data.movies["title"].iloc[0]  # u.item is latin-1


def _corrupt(path, line_number, new_text):
    lines = path.read_text(encoding="latin-1").splitlines()
    lines[line_number - 1] = new_text
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")


@pytest.mark.parametrize("layout,file,line,text,problem,value", [
    ("latest", "ratings.csv", 5, "1,3,7.5,874965758", "rating outside the scale", "7.5"),
    ("latest", "ratings.csv", 4, "1,abc,4.0,874965758", "non-numeric movieId", "abc"),
    ("latest", "ratings.csv", 6, "1,3,4.0,874965758,extra", "malformed line", "1,3,4.0,874965758,extra"),
    ("latest", "ratings.csv", 7, "1,999,4.0,874965758", "not in the movies file", "999"),
    ("1m", "ratings.dat", 3, "1::2::5", "malformed line", "1::2::5"),
    ("1m", "ratings.dat", 9, "2::3::0::874965758", "rating outside the scale", "0"),
    ("100k", "u.data", 2, "x\t3\t4\t874965758", "non-numeric user_id", "x"),
    ("100k", "u.data", 8, "1\t3\t\t874965758", "missing rating", ""),
])
def test_corrupted_files_name_file_line_and_value(movielens_folder, layout, file, line, text, problem, value):
    folder = movielens_folder(layout)
    _corrupt(folder / file, line, text)
    with pytest.raises(DataError) as raised:
        load_data(f"movielens:{folder}")
    message = str(raised.value)
    assert file in message and f"line {line}:" in message and problem in message and repr(value) in message


def test_duplicate_pairs_are_errors_or_dropped_keeping_the_latest(movielens_folder):
    folder = movielens_folder("latest")
    ratings = folder / "ratings.csv"
    first = ratings.read_text().splitlines()[1].split(",")
    with ratings.open("a") as handle:
        handle.write(f"{first[0]},{first[1]},0.5,{int(first[3]) + 1}\n")
    with pytest.raises(DataError, match=r"line 74: duplicate rating \(first at line 2\) for 'user 1, movie \d+'"):
        load_data(f"movielens:{folder}")
    data = load_data(f"movielens:{folder}", DataConfig(on_bad_rows="skip"))
    kept = data.interactions[(data.interactions.user_id == first[0]) & (data.interactions.movie_id == first[1])]
    assert kept["rating"].tolist() == [0.5]
    assert data.report.rows_dropped == 1 and "duplicate" in data.report.format()


def test_skip_policy_counts_every_dropped_row_by_reason(movielens_folder):
    folder = movielens_folder("latest")
    _corrupt(folder / "ratings.csv", 3, "1,3,9.0,874965758")
    _corrupt(folder / "ratings.csv", 4, "oops")
    _corrupt(folder / "ratings.csv", 5, "1,4,abc,874965758")
    data = load_data(f"movielens:{folder}", DataConfig(on_bad_rows="skip"))
    assert len(data.interactions) == 72 - 3
    assert data.report.rows_read == 72 and data.report.rows_dropped == 3
    report = data.report.format()
    for reason in ("rating outside the scale", "malformed line", "non-numeric rating"):
        assert reason in report


@pytest.mark.parametrize("remove,message", [
    ("movies.csv", "missing movies.csv"),
    ("ratings.csv", "no MovieLens ratings file"),
])
def test_missing_files_are_named(movielens_folder, remove, message):
    folder = movielens_folder("latest")
    (folder / remove).unlink()
    with pytest.raises(DataError, match=message):
        load_data(f"movielens:{folder}")


def test_missing_column_names_the_header(movielens_folder):
    folder = movielens_folder("latest")
    text = (folder / "ratings.csv").read_text().replace("userId,movieId,rating", "userId,movieId,score", 1)
    (folder / "ratings.csv").write_text(text)
    with pytest.raises(DataError, match=r"ratings.csv, line 1: missing column 'rating'"):
        load_data(f"movielens:{folder}")


def test_all_rows_bad_is_an_empty_result_error(movielens_folder):
    folder = movielens_folder("latest", users=1, movies=3, per_user=2)
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,9,1\n1,2,9,1\n")
    with pytest.raises(DataError, match="no ratings left after validation"):
        load_data(f"movielens:{folder}", DataConfig(on_bad_rows="skip"))


@pytest.mark.real_data
def test_real_latest_small_has_published_counts(real_small):
    data = load_data(f"movielens:{real_small}")
    assert len(data.interactions) == 100_836
    assert data.interactions["user_id"].nunique() == 610
    assert len(data.movies) == 9_742
    assert data.interactions["movie_id"].nunique() == 9_724
    assert data.report.rows_dropped == 0


# --- csv and tfds ------------------------------------------------------------------------------


def test_table_source_with_named_columns_and_items_file(tmp_path):
    (tmp_path / "events.csv").write_text("who,what,stars,when\nalice,m1,4,10\nbob,m1,5,11\nbob,m2,2,12\n")
    (tmp_path / "items.csv").write_text("what,name\nm1,First (1999)\nm2,Second\n")
    config = DataConfig(csv_user_column="who", csv_item_column="what", csv_rating_column="stars",
                        csv_timestamp_column="when", csv_items_path=str(tmp_path / "items.csv"),
                        csv_title_column="name", rating_scale=[1, 5])
    data = load_data(f"csv:{tmp_path / 'events.csv'}", config)
    _check_schema(data)
    assert data.interactions["user_id"].tolist() == ["alice", "bob", "bob"]
    assert data.movies.set_index("movie_id")["title"].to_dict() == {"m1": "First (1999)", "m2": "Second"}
    assert data.movies["year"].iloc[0] == 1999


def test_table_source_rejects_unknown_items_and_missing_columns(tmp_path):
    (tmp_path / "events.csv").write_text("user_id,item_id,rating\nu,m9,4\n")
    (tmp_path / "items.csv").write_text("item_id,title\nm1,First\n")
    with pytest.raises(DataError, match=r"events.csv, line 2: rating for a movie not in the movies file: 'm9'"):
        load_data(f"csv:{tmp_path / 'events.csv'}", DataConfig(csv_items_path=str(tmp_path / "items.csv")))
    with pytest.raises(DataError, match="no rating column 'stars'"):
        load_data(f"csv:{tmp_path / 'events.csv'}", DataConfig(csv_rating_column="stars"))


def test_tfds_source_reads_movielens_ratings_through_tfds(monkeypatch):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    def as_dataset(self, *args, **kwargs):
        n = 30
        return tf.data.Dataset.from_tensor_slices({
            "user_id": tf.constant([str(i % 5 + 1).encode() for i in range(n)]),
            "movie_id": tf.constant([str(i + 1).encode() for i in range(n)]),
            "movie_title": tf.constant([f"Movie {i + 1} (1995)".encode() for i in range(n)]),
            "user_rating": tf.constant([float(i % 5 + 1) for i in range(n)]),
            "timestamp": tf.constant([880_000_000 + i for i in range(n)], tf.int64),
            "movie_genres": tf.ragged.constant([[i % 3, 7] for i in range(n)], dtype=tf.int64),
            "user_gender": tf.constant([i % 2 == 0 for i in range(n)]),
            "bucketized_user_age": tf.constant([25.0] * n),
            "raw_user_age": tf.constant([27.0] * n),
            "user_occupation_text": tf.constant([b"student"] * n),
            "user_zip_code": tf.constant([b"12345"] * n),
        })

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        data = load_data("tfds:movielens/100k-ratings")
    _check_schema(data)
    assert len(data.interactions) == 30 and data.interactions["user_id"].nunique() == 5
    assert data.rating_scale == (1.0, 5.0)
    assert data.movies.set_index("movie_id").loc["1", "year"] == 1995
    assert "Drama" in data.movies["genres"].iloc[0] or len(data.movies["genres"].iloc[0]) == 2
    assert data.users["occupation"].iloc[0] == "student"


def test_tfds_source_offline_says_how_to_use_a_local_copy(tmp_path):
    with pytest.raises(DataError, match="--tfds-data-dir"):
        load_data("tfds:movielens/100k-ratings", DataConfig(tfds_data_dir=str(tmp_path)))


def test_unknown_source_kind_is_a_clear_error():
    with pytest.raises(DataError, match="unknown data source 'hdf5:x'"):
        load_data("hdf5:x")


# --- command line and the Keras guard ----------------------------------------------------------


def test_data_describe_prints_counts_histogram_and_report(capsys):
    assert main(["data", "describe", "--data", "synthetic:200x100x4000", "--top", "2", "--split", "random"]) == 0
    out = capsys.readouterr().out
    assert "ratings: 4,000   users: 200   movies listed: 100" in out
    assert "rating histogram:" in out and "most-rated movies (top 2):" in out
    assert "validation: 4,000 rating rows read, 0 dropped" in out
    assert "cold start" in out


def test_command_line_errors_are_one_line_with_nonzero_exit(capsys):
    assert main(["data", "describe", "--data", "movielens:/does/not/exist"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/does/not/exist" in err and "Traceback" not in err


@pytest.mark.slow
def test_importing_after_tensorflow_with_keras_3_fails_clearly():
    code = "import os; os.environ.pop('TF_USE_LEGACY_KERAS', None)\nimport tensorflow\nimport tfrs_pipeline"
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_USE_LEGACY_KERAS"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0
    assert "needs Keras 2" in result.stderr and "TF_USE_LEGACY_KERAS=1" in result.stderr


# --- files in other shapes ---------------------------------------------------------------------


def _events(n=400, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"user": [f"{u:04d}" for u in rng.integers(1, 40, n)],
                          "item": [f"{i:07d}" for i in rng.integers(1, 60, n)],
                          "score": rng.integers(0, 11, n), "time": 1_000_000_000 + rng.integers(0, 10**6, n)})
    return frame.drop_duplicates(["user", "item"]).reset_index(drop=True)


def test_a_headerless_double_colon_file_with_a_0_to_10_scale_keeps_ids_as_written(tmp_path):
    events = _events()
    path = tmp_path / "ratings.dat"
    path.write_text("".join(f"{r.user}::{r.item}::{r.score}::{r.time}\n" for r in events.itertuples()))
    config = DataConfig(sep="::", columns=["user_id", "item_id", "rating", "timestamp"], rating_scale=[0, 10])
    data = load_data(f"csv:{path}", config)
    _check_schema(data)
    assert len(data.interactions) == len(events) and data.rating_scale == (0.0, 10.0)
    assert data.interactions["movie_id"].iloc[0] == events["item"].iloc[0]  # "0000033" keeps its zeros
    assert data.interactions["timestamp"].iloc[0] == events["time"].iloc[0]
    with pytest.raises(DataError, match=r"ratings.dat, line \d+: rating outside the scale '\d+'; expected a rating "
                                        r"from 0.5 to 5; set the scale with --rating-scale"):
        load_data(f"csv:{path}", DataConfig(sep="::", columns=["user_id", "item_id", "rating", "timestamp"]))


def test_items_file_options_read_a_headerless_items_file_with_genres(tmp_path):
    events = _events()
    (tmp_path / "r.csv").write_text("user_id,item_id,rating,timestamp\n" + "".join(
        f"{r.user},{r.item},{r.score / 2},{r.time}\n" for r in events.itertuples()))
    (tmp_path / "items.dat").write_text("".join(f"{i:07d}::Film {i} (19{i + 10})::{'Drama|Comedy' if i % 2 else ''}\n"
                                                for i in range(1, 60)))
    config = DataConfig(csv_items_path=str(tmp_path / "items.dat"), items_sep="::", rating_scale=[0, 5],
                        items_columns=["item_id", "title", "kind"], genres_column="kind")
    data = load_data(f"csv:{tmp_path / 'r.csv'}", config)
    movies = data.movies.set_index("movie_id")
    assert movies.loc["0000001", "title"] == "Film 1 (1911)" and movies.loc["0000001", "genres"] == ("Drama", "Comedy")
    assert movies.loc["0000002", "genres"] == () and movies.loc["0000002", "year"] == 1912


def test_a_quoted_header_and_a_byte_order_mark_keep_every_column(tmp_path):
    path = tmp_path / "quoted.csv"
    path.write_text('"user_id","item_id","rating","timestamp"\n"u1","m1",4.5,1000\n"u2","m1",3,2000\n',
                    encoding="utf-8-sig")
    data = load_data(f"csv:{path}")
    assert data.interactions["timestamp"].tolist() == [1000, 2000]
    assert data.interactions["user_id"].tolist() == ["u1", "u2"] and not data.report.notes


def test_utf16_and_binary_files_are_named_as_such(tmp_path):
    (tmp_path / "u16.csv").write_bytes("user_id,item_id,rating\n1,2,3\n".encode("utf-16"))
    (tmp_path / "image.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(DataError, match="u16.csv: the file is UTF-16 encoded; expected UTF-8"):
        load_data(f"csv:{tmp_path / 'u16.csv'}")
    with pytest.raises(DataError, match=r"image.csv: binary data .*\\x89PNG\\r\\n"):
        load_data(f"csv:{tmp_path / 'image.csv'}")


def test_parquet_with_named_columns_and_datetime_timestamps(tmp_path):
    events = _events()
    frame = events.rename(columns={"score": "stars"})
    frame["when"] = pd.to_datetime(frame.pop("time"), unit="s")
    frame.to_parquet(tmp_path / "events.parquet")
    config = DataConfig(csv_user_column="user", csv_item_column="item", csv_rating_column="stars",
                        csv_timestamp_column="when", rating_scale=[0, 10])
    data = load_data(f"parquet:{tmp_path / 'events.parquet'}", config)
    _check_schema(data)
    assert data.interactions["timestamp"].tolist() == events["time"].tolist()
    assert data.interactions["movie_id"].tolist() == events["item"].tolist()
    (tmp_path / "not.parquet").write_text("user,item\n")
    with pytest.raises(DataError, match="not.parquet: not a readable Parquet file"):
        load_data(f"parquet:{tmp_path / 'not.parquet'}", config)


def test_implicit_feedback_is_asked_for_never_guessed_and_repeats_count_once(tmp_path):
    path = tmp_path / "plays.tsv"
    path.write_text("user_id\titem_id\ttimestamp\nu1\ta\t1\nu1\ta\t5\nu1\tb\t2\nu2\ta\t2019-03-01 12:00:00\n")
    with pytest.raises(DataError, match=r"plays.tsv: no rating column; it has 'user_id', 'item_id', 'timestamp'\. "
                                         r"Name the rating column with --rating-col NAME, or pass --implicit"):
        load_data(f"csv:{path}")
    data = load_data(f"csv:{path}", DataConfig(implicit=True))
    assert data.implicit and data.rating_scale == (1.0, 1.0)
    assert data.interactions["rating"].tolist() == [1.0, 1.0, 1.0]
    assert data.interactions.set_index(["user_id", "movie_id"])["timestamp"].to_dict() == {
        ("u1", "a"): 5, ("u1", "b"): 2, ("u2", "a"): 1551441600}
    assert any("1 repeated (user, item) interactions merged" in note for note in data.report.notes)
    with pytest.raises(DataError, match="no rating column 'stars'"):
        load_data(f"csv:{path}", DataConfig(csv_rating_column="stars"))
    assert any("implicit feedback, as asked" in note for note in data.report.notes)


def test_a_rating_column_under_another_name_is_read_once_named(tmp_path):
    path = tmp_path / "stars.csv"
    path.write_text("user_id,item_id,stars\nu1,a,4\nu2,a,2\n")
    with pytest.raises(DataError, match="no rating column; it has 'user_id', 'item_id', 'stars'"):
        load_data(f"csv:{path}")
    assert load_data(f"csv:{path}", DataConfig(csv_rating_column="stars")).interactions["rating"].tolist() == [4, 2]
    with pytest.raises(DataError, match="a rating column .* and implicit feedback were both asked for"):
        load_data(f"csv:{path}", DataConfig(csv_rating_column="stars", implicit=True))


# --- DataFrames in memory ----------------------------------------------------------------------


def test_a_dataframe_is_read_as_its_csv_file_would_be(tmp_path):
    ratings = pd.DataFrame({"customer": [7, 7, 8, 9], "sku": ["0042", "17", "0042", "17"], "stars": [4.0, 2.5, 5, 1],
                            "when": pd.to_datetime(["2020-01-01", "2020-01-02", "2021-06-01", "2021-06-02"])})
    movies = pd.DataFrame({"sku": ["0042", "17"], "name": ["Alien (1979)", "Heat (1995)"],
                           "genres": [["Horror", "Sci-Fi"], ["Crime"]]})
    config = DataConfig(csv_user_column="customer", csv_item_column="sku", csv_rating_column="stars",
                        csv_timestamp_column="when", csv_title_column="name")
    data = load_data(ratings, config, movies=movies)
    _check_schema(data)
    ratings.assign(when=(ratings["when"] - pd.Timestamp(0)) // pd.Timedelta(seconds=1)).to_csv(tmp_path / "r.csv", index=False)
    movies.assign(genres=["Horror|Sci-Fi", "Crime"]).to_csv(tmp_path / "m.csv", index=False)
    from_file = load_data(f"csv:{tmp_path / 'r.csv'}", DataConfig(**{**vars(config), "csv_items_path": str(tmp_path / "m.csv")}))
    pd.testing.assert_frame_equal(data.interactions, from_file.interactions)
    pd.testing.assert_frame_equal(data.movies, from_file.movies)
    assert data.source == "dataframe" and data.movies["genres"].tolist() == [("Horror", "Sci-Fi"), ("Crime",)]


@pytest.mark.parametrize("ratings,config,message", [
    (pd.DataFrame({"userId": ["1"], "item_id": ["2"], "rating": [3.0]}), {},
     "the ratings DataFrame: no user column 'user_id'; it has 'userId', 'item_id', 'rating' \\(name it with user_col=\\)"),
    (pd.DataFrame({"user_id": ["1", "1"], "item_id": ["2", "3"], "rating": [3.0, 9.0]}), {},
     "the ratings DataFrame, row 2: rating outside the scale '9'; expected a rating from 0.5 to 5; "
     "set the scale with rating_scale=\\(LOW, HIGH\\)"),
    (pd.DataFrame({"user_id": ["1", None], "item_id": ["2", "3"], "rating": [3.0, 4.0]}), {},
     "the ratings DataFrame, row 2: missing user_id"),
    (pd.DataFrame({"user_id": ["1"], "item_id": ["2"]}), {},
     "no rating column; .* rating_col= NAME, or pass implicit=True"),
    ([("1", "2", 3.0)], {}, "ratings must be a pandas DataFrame, got list"),
], ids=["column", "scale", "missing id", "no rating", "not a frame"])
def test_a_bad_dataframe_is_named_with_its_row_and_the_python_option(ratings, config, message):
    with pytest.raises(DataError, match=message):
        load_data(ratings, DataConfig(**config))



def test_skip_counts_rating_rows_and_movie_file_lines_apart(movielens_folder):
    folder = movielens_folder("latest", users=5, movies=8, per_user=4)
    with open(folder / "movies.csv", "a") as handle:
        handle.write("notanid,Broken (2000),Drama\n")
    with open(folder / "ratings.csv", "a") as handle:
        handle.write("1,1,9.5,100\n2,1,x,100\n")
    data = load_data(f"movielens:{folder}", DataConfig(on_bad_rows="skip"))
    report = data.report.to_dict()
    assert report["dropped_by_kind"] == {"movie-file lines": 1, "rating rows": 2}
    assert report["rows_dropped"] == 2
    text = data.report.format()
    assert "2 dropped" in text and "validation: 1 movie-file lines dropped" in text


def test_relative_data_paths_are_recorded_absolute_so_evaluate_finds_them_from_any_folder(tmp_path, monkeypatch):
    from tfrs_pipeline.config import DataConfig
    from tfrs_pipeline.data import recorded_paths

    (tmp_path / "ratings.csv").write_text("user_id,item_id,rating\n1,2,3\n")
    (tmp_path / "items.csv").write_text("item_id,title\n2,Two\n")
    monkeypatch.chdir(tmp_path)
    config = DataConfig(source="csv:ratings.csv", csv_items_path="items.csv")
    assert recorded_paths(config) == {"data.source": f"csv:{tmp_path.resolve()}/ratings.csv",
                                      "data.csv_items_path": f"{tmp_path.resolve()}/items.csv"}
    assert recorded_paths(DataConfig(source="movielens:ml-latest-small")) == {}  # a cache name, not a path here
    assert recorded_paths(DataConfig(source="synthetic:100k")) == {}
