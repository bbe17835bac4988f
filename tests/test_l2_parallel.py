import json

import pytest

from slam_trainer.cli.main import main
from slam_trainer.data.loaders import load_jsonl_rows
from slam_trainer.data.synthetic import synthetic_rows
from slam_trainer.l2.parallel import build_parallel_dataset, dataset_name


def _rows():
    return [
        {"id": 1, "lang": "en", "question": "Q1", "cot": "Two apples. Add one. The answer is 3.", "answer": "3"},
        {"id": 1, "lang": "zh", "question": "问1", "cot": "两个苹果。加一个。答案是 3。", "answer": "3"},
        {"id": 2, "lang": "en", "question": "Q2", "steps": ["A.", "B."], "answer": "5"},
        {"id": 2, "lang": "zh", "question": "问2", "steps": ["甲。"], "answer": "5"},
        {"id": 3, "lang": "en", "question": "Q3", "steps": ["A.", "B."], "answer": "5"},
        {"id": 4, "lang": "en", "question": "Q4", "steps": ["A.", " "], "answer": "5"},
        {"id": 4, "lang": "zh", "question": "问4", "steps": ["甲。", "乙。"], "answer": "5"},
    ]


def test_builder_keeps_valid_examples_and_reports_each_problem():
    dataset, report = build_parallel_dataset(_rows())
    assert dataset.column_names == ["id", "question", "steps", "answer"]
    assert dataset["id"] == ["1"] and dataset[0]["steps"]["zh"] == ["两个苹果。", "加一个。", "答案是 3。"]
    assert report.kept == 1 and report.dropped == 3
    assert dict(report.reasons) == {"step counts differ": 1, "missing language": 1, "empty step": 1}
    assert "id '2': step counts differ between languages (en=2, zh=1)" in report.problems
    assert "id '3', language 'zh': missing language" in report.problems
    assert "id '4', language 'en': empty step" in report.problems
    with pytest.raises(ValueError, match="3 invalid example"):
        build_parallel_dataset(_rows(), on_invalid="raise")


def test_builder_rejects_bad_rows_and_arguments():
    with pytest.raises(ValueError, match="missing steps or cot"):
        build_parallel_dataset([{"id": 1, "lang": "en", "question": "q", "answer": "1"}])
    with pytest.raises(ValueError, match="`on_invalid`"):
        build_parallel_dataset(_rows(), on_invalid="ignore")
    with pytest.raises(ValueError, match="`languages` asks for zh, but no row is in it"):
        build_parallel_dataset(_rows()[4:5], languages=["en", "zh"])  # not blamed on the data: the flag names zh
    with pytest.raises(ValueError, match="No valid parallel example"):
        build_parallel_dataset(_rows()[3:5], languages=["en", "zh"])


def test_loader_names_the_line_and_missing_column(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": 1, "lang": "en", "question": "q", "answer": "1"}\n{"id": 2, "lang": "en"}\n')
    with pytest.raises(ValueError, match=r"rows.jsonl:2: missing column\(s\) question, answer"):
        load_jsonl_rows(path)
    assert len(load_jsonl_rows(path, required=("id",), languages=["en"])) == 2
    with pytest.raises(FileNotFoundError, match="No such data file"):
        load_jsonl_rows(tmp_path / "absent.jsonl")


def test_slam_l2_build_names_and_saves_the_set(tmp_path, capsys):
    from datasets import load_from_disk

    data = tmp_path / "rows.jsonl"
    rows = [{k: v for k, v in row.items() if k != "steps"} for row in synthetic_rows(6, languages=["en", "zh", "th"])]
    data.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    assert main(["l2-build", "--data", str(data), "--source", "synthetic", "--output_dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert dataset_name("synthetic", 3, 6) in out and '"examples": 6' in out
    dataset = load_from_disk(str(tmp_path / "L2-M_synthetic_3_6"))
    assert len(dataset) == 6 and set(dataset[0]["steps"]) == {"en", "zh", "th"}
    assert main(["l2-build", "--data", str(tmp_path / "nope.jsonl"), "--source", "x", "--output_dir", "o"]) == 2


@pytest.mark.parametrize("command", ["annotate", "l2-build"])
def test_help_renders(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0 and "usage" in capsys.readouterr().out
