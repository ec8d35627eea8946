from __future__ import annotations

import json

from rs_support import read_tokens

from fastdat.cli import main
from fastdat.readerstudy.store import connect, reader_by_token, save_grade


def test_create_then_analyze(eval_dir, tmp_path, capsys):
    study = tmp_path / "study"
    argv = ["reader-study", "create", "--eval", str(eval_dir), "--cases", "4"]
    argv += ["--methods", "5min,unet1,25min", "--readers", "2", "--device", "cpu"]
    assert main([*argv, "--cmap", "magma", "--out", str(study)]) == 0
    out = capsys.readouterr().out
    assert "4 cases x 3 methods, 2 readers" in out and "tokens.txt" in out
    tokens = read_tokens(study)
    assert set(tokens) == {"reader1", "reader2", "admin"}
    assert not [t for t in tokens.values() if t in out]  # tokens are never printed

    key = json.loads((study / "key.json").read_text())
    conn = connect(study)
    for rid, r in key["reads"].items():
        case = key["cases"][r["case"]]
        user = reader_by_token(conn, tokens[r["reader"]])
        save_grade(conn, user, rid, case["grade_left"], case["grade_right"])
    conn.close()
    assert main(["reader-study", "analyze", str(study), "--out", str(tmp_path / "a")]) == 0
    assert "report.html" in capsys.readouterr().out
    doc = json.loads((tmp_path / "a" / "analysis.json").read_text())
    assert doc["readers"] == ["reader1", "reader2"]
    assert doc["kappa_vs_consensus"]["5min"]["reader2"]["linear"]["kappa"] == 1.0

    assert main([*argv, "--out", str(study)]) == 2  # a study is never overwritten
    assert "never overwritten" in capsys.readouterr().err
    bad = ["--methods", "5min,unet9", "--out", str(tmp_path / "x")]
    assert main([*argv[:6], *bad]) == 2
    assert "unknown method 'unet9'" in capsys.readouterr().err


def test_create_with_a_dataset_or_missing_folder_is_a_clear_error(eval_dir, tmp_path, capsys):
    """--eval given a dataset folder (it has a config.yaml too) or nothing: exit 2, no traceback,
    a message naming the folder, and no study folder written."""
    import yaml

    dataset = yaml.safe_load((eval_dir / "config.yaml").read_text())["dataset"]
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "config.yaml").write_text("fingerprint: abc\ndataset: {crop: 64}\n")
    for given in (dataset, str(tmp_path / "ds"), str(tmp_path / "nowhere")):
        out = tmp_path / ("study-" + given.replace("/", "_")[-12:])
        argv = ["reader-study", "create", "--eval", given, "--cases", "2", "--out", str(out)]
        assert main([*argv, "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert given in err and "Traceback" not in err
        assert "evaluation folder" in err or "no such folder" in err
        assert not out.exists()
