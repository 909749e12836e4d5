"""``deepcompress predict``: results per image, bad files reported one by one, JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepcompress.cli import main
from deepcompress.format.dcz import decode_dcz, replace_extras


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, colour_files: list[Path]) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    files = {"text": folder / "notes.jpg", "empty": folder / "empty.png", "truncated": folder / "cut.jpg",
             "missing": folder / "missing.jpg", "folder": folder}
    files["text"].write_text("this is not an image\n")
    files["empty"].write_bytes(b"")
    jpeg = next(p for p in colour_files if p.suffix == ".jpg").read_bytes()
    files["truncated"].write_bytes(jpeg[:len(jpeg) // 2])
    return files


def test_predict_text_output(tiny_dcz: Path, colour_files: list[Path], capsys: pytest.CaptureFixture) -> None:
    assert main(["predict", str(tiny_dcz), *map(str, colour_files[:3]), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{colour_files[0]}: red ") and lines[0].endswith(" ms)")
    assert lines[0].count("%") == 2


def test_predict_reports_bad_files_and_goes_on(tiny_dcz: Path, colour_files: list[Path],
                                               bad_files: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    good = colour_files[3]
    files = [bad_files["text"], good, bad_files["empty"], bad_files["truncated"], bad_files["missing"],
             bad_files["folder"], colour_files[6]]
    assert main(["predict", str(tiny_dcz), *map(str, files), "--json"]) == 1
    results = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in results] == list(map(str, files))
    errors = {Path(r["file"]): r.get("error") for r in results}
    assert "not an image" in errors[bad_files["text"]]
    assert "empty" in errors[bad_files["empty"]]
    assert "truncated" in errors[bad_files["truncated"]]
    assert "No such file" in errors[bad_files["missing"]]
    assert "directory" in errors[bad_files["folder"]]
    ok = [r for r in results if "error" not in r]
    assert [r["label"] for r in ok] == ["green", "blue"]
    assert all(len(r["top"]) == 3 and r["time_ms"] > 0 for r in ok)
    assert abs(sum(t["probability"] for t in ok[0]["top"]) - 1) < 1e-5

    assert main(["predict", str(tiny_dcz), str(bad_files["text"])]) == 1
    assert "notes.jpg: error: not an image" in capsys.readouterr().err


def test_predict_bad_arguments(tiny_dcz: Path, colour_files: list[Path], tmp_path: Path,
                               capsys: pytest.CaptureFixture) -> None:
    assert main(["predict", str(tiny_dcz), str(colour_files[0]), "--top-k", "0"]) == 2
    assert main(["predict", str(tmp_path / "nope.dcz"), str(colour_files[0])]) == 2
    (tmp_path / "junk.dcz").write_bytes(b"junk" * 10)
    assert main(["predict", str(tmp_path / "junk.dcz"), str(colour_files[0])]) == 2
    assert "not a .dcz file" in capsys.readouterr().err


def test_predict_builds_a_missing_graph(tiny_dcz: Path, colour_files: list[Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    data = tiny_dcz.read_bytes()
    header = {k: v for k, v in decode_dcz(data).header.items() if k != "graph"}
    plain = tmp_path / "plain.dcz"
    plain.write_bytes(replace_extras(data, header, {}))
    assert main(["predict", str(plain), str(colour_files[0])]) == 0
    captured = capsys.readouterr()
    assert "stores no network graph" in captured.err and ": red " in captured.out
