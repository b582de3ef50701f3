"""`fleet jobs` refuses what it cannot send with one line and exit 2, before any API call."""

from __future__ import annotations

from pathlib import Path

from fleet.cli import main as fleet

PROJECT_DIR = Path(__file__).resolve().parents[2]


def run(capsys, *args: str) -> tuple[int, str]:
    code = fleet(["jobs", *args, "-C", str(PROJECT_DIR)])
    return code, capsys.readouterr().err.strip()


def test_unknown_job_names_the_stacks_jobs(capsys, tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"prompt": "hi"}\n')
    code, err = run(
        capsys, "submit", "--stack", "prod", "--job", "embed", "--input", str(tmp_path / "in.jsonl")
    )
    assert (code, err) == (2, "error: stack prod has no batch job 'embed'; its batch jobs: llm-batch")


def test_inline_input_over_the_limit_points_to_input_uri(capsys, tmp_path: Path) -> None:
    big = tmp_path / "big.jsonl"
    big.write_text('{"prompt": "' + "x" * 600_000 + '"}\n')
    code, err = run(capsys, "submit", "--stack", "dev", "--job", "smoke", "--input", str(big))
    assert code == 2
    assert err == (
        f"error: --input {big}: 600015 bytes; inline input is at most 524288 (upload it and give --input-uri)"
    )


def test_input_uri_must_be_a_gcs_uri(capsys) -> None:
    code, err = run(capsys, "submit", "--stack", "dev", "--job", "smoke", "--input-uri", "s3://b/in.jsonl")
    assert (code, err) == (2, "error: --input-uri s3://b/in.jsonl: expected gs://bucket/object")
