"""The eval stage's shared base-model score (cluster/launcher/evaluate.py `--base-scores`, given to
every point of a sweep by cluster/sweep.py): the starting model is scored by the first eval and
reused by the others when the model and the eval settings match; anything else (another setting,
a model changed on disk, a broken or half-written file) makes an eval score it itself. Every
point's eval.json still holds both models' scores and the delta.

The export, the server and holdem.eval are replaced by recorders here (the real ones run in
tests/integration/test_sweep_eval.py): what is checked is which model each eval scores."""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import pytest

from cluster.launcher import evaluate as ev
from demo.checkpoint import save_marker

SCORES = {"trained": 0.5, "base": 0.25}


@pytest.fixture
def scored(monkeypatch) -> list[tuple[str, str]]:
    """(which, model) for every model an eval really scored; export and server are no-ops."""
    calls: list[tuple[str, str]] = []

    @contextmanager
    def served(model, which, args, ident, env, log_dir):
        yield f"http://stand-in/{which}"

    def score(url, model, which, args, env, out_dir):
        calls.append((which, model))
        return {"model": model, "results": str(out_dir / f"{which}.jsonl"), "rows": 24,
                **{m: SCORES[which] for m in ev.METRICS}}

    monkeypatch.setattr(ev, "export_checkpoint", lambda ckpt, save, command, env, log_dir: save / "hf" / ckpt.name)
    monkeypatch.setattr(ev, "served", served)
    monkeypatch.setattr(ev, "score", score)
    return calls


@pytest.fixture
def base_model(tmp_path) -> Path:
    model = tmp_path / "Qwen3-8B"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"w")
    return model


def point_args(tmp_path: Path, name: str, base_model: Path, *extra: str, shared: Path | None = None):
    """The evaluator's arguments for one sweep point (what cluster/sweep.py renders, stand-in commands)."""
    argv = ["--save", str(tmp_path / f"sweep-{name}"), "--base-model", str(base_model), "--data", "rows.jsonl",
            "--limit", "24", "--export", "export {checkpoint} {output}", "--server", "serve {model} {host} {port}",
            "--log-dir", str(tmp_path / "logs" / name), *extra]
    return ev.build_parser().parse_args(argv + (["--base-scores", str(shared)] if shared is not None else []))


def run_point(tmp_path: Path, name: str, base_model: Path, *extra: str, shared: Path | None = None) -> dict:
    """One sweep point's eval: a save dir with one complete checkpoint, scored; its eval.json."""
    args = point_args(tmp_path, name, base_model, *extra, shared=shared)
    save_marker(Path(args.save), 0, {"num_rollout": 1})
    assert ev.evaluate(args, {"SLURM_JOB_ID": "7"}) == 0
    return json.loads((Path(args.save) / ev.EVAL_FILE).read_text())


def assert_both_scores_and_delta(record: dict) -> None:
    assert record["trained"]["exact_match"] == SCORES["trained"] and record["base"]["exact_match"] == SCORES["base"]
    assert record["delta"]["exact_match"] == pytest.approx(SCORES["trained"] - SCORES["base"])


def test_the_second_point_reuses_the_base_score_of_the_first(tmp_path, scored, base_model):
    shared = tmp_path / "sweep" / "eval-base"
    first = run_point(tmp_path, "p0", base_model, shared=shared)
    second = run_point(tmp_path, "p1", base_model, shared=shared)
    third = run_point(tmp_path, "p2", base_model, shared=shared)
    assert [w for w, _ in scored] == ["trained", "base", "trained", "trained"]  # the base model once
    for record in (first, second, third):
        assert_both_scores_and_delta(record)
        assert record["base"] == first["base"]
    assert first["base_shared"]["reused"] is False
    assert second["base_shared"] == third["base_shared"] == {"file": first["base_shared"]["file"], "reused": True}
    stored = json.loads(Path(first["base_shared"]["file"]).read_text())
    assert stored["base"] == first["base"] and stored["key"]["base_model"] == str(base_model)
    assert [p.name for p in shared.iterdir()] == [Path(first["base_shared"]["file"]).name]  # no temp file left


@pytest.mark.parametrize("change", ["setting", "model"])
def test_another_setting_or_a_changed_model_is_scored_again(tmp_path, scored, base_model, change):
    shared = tmp_path / "eval-base"
    run_point(tmp_path, "p0", base_model, shared=shared)
    if change == "model":  # the same path, other weights: the key has the files' sizes and mtimes
        (base_model / "model.safetensors").write_bytes(b"other weights")
        extra: tuple[str, ...] = ()
    else:
        extra = ("--mode", "plain")
    record = run_point(tmp_path, "p1", base_model, *extra, shared=shared)
    assert [w for w, _ in scored].count("base") == 2
    assert record["base_shared"]["reused"] is False and len(list(shared.iterdir())) == 2  # both keys kept
    assert_both_scores_and_delta(record)


@pytest.mark.parametrize("content", ["", '{"key": {"base_model"', "[]", '{"key": null, "base": {}}'])
def test_a_broken_or_half_written_file_is_never_used(tmp_path, scored, base_model, content):
    """A file cut short (what a non-atomic write would leave) or of another shape is ignored: the
    eval scores the base model itself and puts a whole file in its place."""
    shared = tmp_path / "eval-base"
    path = ev.base_score_path(shared, ev.base_score_key(point_args(tmp_path, "p0", base_model, shared=shared)))
    shared.mkdir()
    path.write_text(content)
    record = run_point(tmp_path, "p0", base_model, shared=shared)
    assert [w for w, _ in scored] == ["trained", "base"] and record["base_shared"]["reused"] is False
    assert_both_scores_and_delta(record)
    assert json.loads(path.read_text())["base"] == record["base"]


def test_a_writer_that_dies_before_the_rename_leaves_nothing_to_read(tmp_path, base_model, monkeypatch):
    """The store is a temporary file renamed into place: stopped just before the rename, the score's
    path does not exist, so a concurrent reader finds no file (and scores the model) rather than a part."""
    import cluster.outputs

    key = {"base_model": str(base_model), "limit": 24}
    base = {"model": str(base_model), **{m: 0.25 for m in ev.METRICS}}

    def dies(src, dst):
        raise KeyboardInterrupt("killed before the rename")

    monkeypatch.setattr(cluster.outputs.os, "replace", dies)
    with pytest.raises(KeyboardInterrupt):
        ev.write_base_score(tmp_path, key, base, "7")
    monkeypatch.undo()
    assert not ev.base_score_path(tmp_path, key).exists() and ev.read_base_score(tmp_path, key) is None
    ev.write_base_score(tmp_path, key, base, "8")
    assert ev.read_base_score(tmp_path, key) == base
    assert ev.read_base_score(tmp_path, {**key, "limit": 25}) is None  # another key: another file


def test_without_base_scores_every_eval_scores_the_base_model(tmp_path, scored, base_model):
    """A single chain (`--stages train,eval`) is not given --base-scores: nothing is shared or stored."""
    for name in ("a", "b"):
        record = run_point(tmp_path, name, base_model)
        assert "base_shared" not in record
        assert_both_scores_and_delta(record)
    assert [w for w, _ in scored] == ["trained", "base", "trained", "base"]


def test_a_store_that_fails_does_not_fail_the_eval(tmp_path, scored, base_model):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the shared dir should be")
    record = run_point(tmp_path, "p0", base_model, shared=blocker / "eval-base")
    assert_both_scores_and_delta(record)
    assert record["base_shared"]["reused"] is False
