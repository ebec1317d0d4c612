"""Every user mistake ends in one line on stderr naming the value and what is allowed, exit code 2.

The commands run in this process (``main(argv)``): a traceback would fail the test as an exception.
"""

from __future__ import annotations

import re
import shutil
import socket
import zipfile

import pytest

from tfrs_pipeline.cli import main
from tfrs_pipeline.model_dir import ModelDir


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, trained):
    """Files and folders a careless user points the command line at."""
    root = tmp_path_factory.mktemp("hostile")
    archive = root / "ml-damaged.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("ml/ratings.csv", "userId,movieId,rating,timestamp\n" + "1,1,4.0,5\n" * 50)
        handle.writestr("ml/movies.csv", "movieId,title,genres\n1,Toy (1995),Comedy\n")
    data = bytearray(archive.read_bytes())
    data[data.find(b"1,1,4.0")] = ord("2")  # the stored CRC no longer matches
    archive.write_bytes(bytes(data))
    (root / "latin1.toml").write_bytes("[retrieval]\n# caf\xe9\nepochs = 1\n".encode("latin-1"))
    (root / "wrong_type.toml").write_text('[retrieval]\nepochs = "two"\n')
    (root / "bool_number.toml").write_text("[retrieval]\nepochs = true\n")
    (root / "unknown_key.toml").write_text("[retrieval]\nepoch = 2\n")
    (root / "utf16.csv").write_bytes("user_id,item_id,rating\n1,2,3\n".encode("utf-16"))
    (root / "outside.csv").write_text("user_id,item_id,rating\nu1,m1,4\nu1,m2,7\n")
    (root / "not_a_model").mkdir()
    partial = root / "half" / ".1.partial"
    partial.mkdir(parents=True)
    shutil.copy(trained.path / "saved_model.pb", partial / "saved_model.pb")
    damaged_split = root / "damaged_split"
    shutil.copytree(trained.path, damaged_split / "1")
    (damaged_split / "1" / "split.json").write_text("{not json")
    moved = root / "moved_data"  # trained from a file that is no longer where the model recorded it
    shutil.copytree(trained.path, moved / "1")
    config = (moved / "1" / "config.toml").read_text()
    (moved / "1" / "config.toml").write_text(re.sub(r'(?m)^source = ".*"$', f'source = "csv:{root}/gone.csv"', config))
    ModelDir(moved / "1").write_manifest()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    yield {"ROOT": str(root), "MODEL": str(trained.path.parent), "PORT": str(busy.getsockname()[1])}
    busy.close()


CASES = [
    # serving
    ("serve --model MODEL --port PORT", "Address already in use; choose another --port"),
    ("serve --model MODEL --host no-such-host.invalid --port 0", "cannot serve on host 'no-such-host.invalid'"),
    ("serve --model MODEL --port 70000", "expected a TCP port number from 0 to 65535, got 70000"),
    ("serve --model MODEL --port http", "expected a TCP port number from 0 to 65535, got 'http'"),
    ("serve --model MODEL --intra-op-threads 0", "argument --intra-op-threads: expected a positive integer"),
    ("benchmark serving", "benchmark serving needs --model"),
    ("benchmark serving --model MODEL --clients 0,8", "expected client counts from 1 to 256 such as 1,8,32, got '0,8'"),
    ("benchmark index --catalog 10000,0", "expected catalog sizes from 1 to 50,000,000 such as 10000,100000, got '10000,0'"),
    ("serve --model-base MODEL --version-policy newest --port 0",
     "--version-policy must be latest, all or versions such as 1,3; got 'newest'"),
    ("serve --model-base MODEL --version-policy 99 --port 0", "no published version matches version policy [99]"),
    ("serve --model-base MODEL --labels ROOT/missing.toml --port 0", "labels file ROOT/missing.toml does not exist"),
    ("serve --model-base MODEL --poll-seconds 0", "expected seconds above 0 up to 86400, got '0'"),
    ("serve --model-base MODEL --max-body-bytes 1e9", "expected a number of bytes from 1 to 1,073,741,824"),
    ("recommend --model MODEL --user 1 --include-seen --exclude 5", "--exclude works with seen movies excluded"),
    ("recommend --model MODEL --history ,", "--history takes movie ids separated by commas, got ','"),
    ("recommend --model MODEL", "recommend needs --user (a user of the training data), --history (a visitor's movies)"),
    ("recommend --model MODEL --user 1 --include-seen --history 5", "--history works with seen movies excluded"),
    ("train --out ROOT/x --strategy multi-worker", "--strategy multi-worker needs TF_CONFIG"),
    # models
    ("recommend --model ROOT/not_a_model --user 1", "no exported model"),
    ("recommend --model ROOT/half --user 1", "no published version yet"),
    ("recommend --model ROOT/half/.1.partial --user 1", "is a version still being written"),
    ("evaluate --model ROOT/damaged_split/1", "split.json is damaged"),
    ("evaluate --model ROOT/moved_data/1", "gone.csv: file not found; the model was trained from csv:ROOT/gone.csv "
     "(recorded in ROOT/moved_data/1/config.toml): where that data is now elsewhere, give it again with --data SOURCE"),
    ("recommend --model MODEL --user 1 --k 0", "expected a positive integer up to 100,000, got 0"),
    ("recommend --model MODEL --user 1 --k -3", "expected a positive integer up to 100,000, got -3"),
    ("recommend --model MODEL --user 1 --k 99999999999999999999", "got 99999999999999999999"),
    ("similar --model MODEL --movie 1 --k ten", "expected a positive integer, got 'ten'"),
    # configuration
    ("train --out ROOT/x --config ROOT/latin1.toml", "not UTF-8 text (byte 0xe9"),
    ("train --out ROOT/x --config ROOT/wrong_type.toml", "retrieval.epochs must be of type int, got 'two'"),
    ("train --out ROOT/x --config ROOT/bool_number.toml", "retrieval.epochs must be of type int, got True"),
    ("train --out ROOT/x --config ROOT/unknown_key.toml", "unknown configuration key 'retrieval.epoch'"),
    ("train --out ROOT/x --config ROOT/missing.toml", "configuration file ROOT/missing.toml does not exist"),
    ("train --out ROOT/x --set retrieval.epochs=true", "retrieval.epochs must be of type int, got 'true'"),
    ("train --out ROOT/x --set split.test_fraction=true", "split.test_fraction must be of type float, got 'true'"),
    ("train --out ROOT/x --epochs 0", "retrieval.epochs must be a whole number from 1 to 100,000, got 0"),
    ("train --out ROOT/x --test-fraction 0", "split.test_fraction must be a number in (0, 1), got 0.0"),
    ("train --out ROOT/x --test-fraction 1", "split.test_fraction must be a number in (0, 1), got 1.0"),
    ("train --out ROOT/x --rating-scale 5-1", "LOW below HIGH"),
    ("train --out ROOT/x --rating-scale five", "must be LOW-HIGH (such as 0-10"),
    # data
    ("data describe --data movielens:ROOT/ml-damaged.zip", "the zip archive is damaged (Bad CRC-32"),
    ("data describe --data csv:ROOT/utf16.csv", "the file is UTF-16 encoded"),
    ("data describe --data csv:ROOT/outside.csv --rating-scale 1-5", "outside.csv, line 3: rating outside the scale '7'"),
    ("data describe --data csv:ROOT/missing.csv", "missing.csv: file not found"),
    ("data describe --data csv:ROOT/not_a_model", "it is a folder; expected a file"),
    ("data describe --data hdf5:ROOT/x", "unknown data source"),
]


@pytest.mark.parametrize("command,message", CASES, ids=[case[0] for case in CASES])
def test_a_user_mistake_is_one_line_and_exit_code_2(hostile, capsys, command, message):
    argv = command.split()
    for name, value in hostile.items():
        argv = [part.replace(name, value) for part in argv]
        message = message.replace(name, value)
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's usage errors
        code = stop.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "error" in lines[0], err
    assert message in lines[0]


def test_k_above_the_candidates_is_capped_with_a_note(trained, capsys):
    assert main(["recommend", "--model", str(trained.path.parent), "--user", "1", "--k", "5000"]) == 0
    captured = capsys.readouterr()
    assert "--k 5000 capped at 100, the number of the candidates" in captured.err
    assert "top 100 for user 1" in captured.out


def test_a_damaged_newest_version_is_skipped_with_one_line_and_the_previous_one_answers(trained, tmp_path, capsys):
    base = tmp_path / "model"
    shutil.copytree(trained.path, base / "1")
    shutil.copytree(trained.path, base / "2")
    variables = next((base / "2" / "variables").glob("variables.data-*"))
    variables.write_bytes(variables.read_bytes()[:100])  # a truncated copy
    assert main(["recommend", "--model", str(base), "--user", "1", "--k", "3"]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"tfrs-pipeline: warning: skipped version 2: {base / '2'}: variables/{variables.name} is damaged (its SHA-256 "
        "differs from MANIFEST.sha256); using version 1"]
    assert "top 3 for user 1" in captured.out
    # Asked for by number, the damaged version is an error, not a silent substitute.
    assert main(["recommend", "--model", str(base / "2"), "--user", "1"]) == 2
    assert "is damaged" in capsys.readouterr().err
    # Garbage in saved_model.pb of a version without a manifest is caught by TensorFlow's reader.
    (base / "1" / "MANIFEST.sha256").unlink()
    (base / "1" / "saved_model.pb").write_bytes(b"garbage")
    assert main(["similar", "--model", str(base), "--movie", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tfrs-pipeline: error:") and "no version loads" in err and "\n" not in err
