"""End-to-end runs on the tiny model: files, resume equals an uninterrupted run, refusals."""

import json
import logging
import shutil

import pytest
import yaml

from star import config as cfg
from star import seeds
from star.errors import BadInputError, ConfigError, RunDirError
from star.experiment import loop
from star.experiment.rundir import RunDir
from star.method.strategies import configure
from star.tasks.resolve import resolve

SMALL = {
    "task": "obqa",
    "strategy": "pe",
    "model.name": "tiny-random",
    "loop.init_size": 8,
    "loop.query_size": 8,
    "loop.rounds": 3,
    "data.pool_size": 64,
    "data.eval_size": 16,
    "seed": 0,
    "lora.r": 8,
}


def small(**overrides):
    return configure(cfg.build({**SMALL, **overrides}))


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    metrics = loop.run(small(), out)
    return out, metrics


def test_run_writes_every_file(full_run):
    out, metrics = full_run
    assert [m["round"] for m in metrics] == [0, 1, 2]
    assert [m["n_labeled"] for m in metrics] == [8, 16, 24]
    assert read(out / "metrics.jsonl") == metrics
    for m in metrics:
        assert 0.0 <= m["accuracy"] <= 1.0 and m["train_loss"] > 0 and m["seconds"] > 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["star_version"] and saved["loop"]["rounds"] == 3
    assert cfg.from_dict(saved, "config.yaml") == resolve(small())[0]  # task, strategy
    assert (
        saved["data"]["prompt_field"] == "question" and saved["inference"]["eval_mode"] == "options"
    )

    labeled = read(out / "labeled.jsonl")
    assert len(labeled) == 24 and len({r["id"] for r in labeled}) == 24
    assert sorted(r["round"] for r in labeled) == [0] * 8 + [1] * 8 + [2] * 8
    for k in range(3):
        rd = out / "rounds" / f"{k:03d}"
        assert (rd / "adapter" / "adapter_model.safetensors").is_file()
        assert json.loads((rd / "adapter" / "adapter_config.json").read_text())["r"] == 8
        assert len(read(rd / "eval.jsonl")) == 16
    assert not (out / "rounds" / "002" / "selected.jsonl").exists()  # last round selects nothing


def test_selection_is_the_top_scores_of_unseen_ids(full_run):
    out, _ = full_run
    labeled = read(out / "labeled.jsonl")
    for k in (0, 1):
        selected = read(out / "rounds" / f"{k:03d}" / "selected.jsonl")
        assert [s["rank"] for s in selected] == list(range(8))
        scores = [s["score"] for s in selected]
        assert scores == sorted(scores, reverse=True)
        before = {r["id"] for r in labeled if r["round"] <= k}
        assert not before & {s["id"] for s in selected}
        assert {s["id"] for s in selected} == {r["id"] for r in labeled if r["round"] == k + 1}


def test_resume_after_round_1_equals_uninterrupted(full_run, tmp_path):
    out, metrics = full_run

    def stop_after_round_1(row):
        if row["round"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        loop.run(small(), tmp_path / "run", on_round=stop_after_round_1)
    assert len(read(tmp_path / "run" / "metrics.jsonl")) == 2
    resumed = loop.run(small(), tmp_path / "run")
    assert (tmp_path / "run" / "labeled.jsonl").read_text() == (out / "labeled.jsonl").read_text()
    assert [m["accuracy"] for m in resumed] == [m["accuracy"] for m in metrics]


def test_kill_during_scoring_redoes_the_round(full_run, tmp_path, monkeypatch):
    """Labels written by a round that never committed are ignored on resume."""
    out, _ = full_run
    real_select = loop.Run.select
    calls = []

    def select_then_die(self, model, k, labeled):
        real_select(self, model, k, labeled)  # labels for round k+1 are on disk now
        calls.append(k)
        if k == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop.Run, "select", select_then_die)
    with pytest.raises(KeyboardInterrupt):
        loop.run(small(), tmp_path / "run")
    monkeypatch.setattr(loop.Run, "select", real_select)
    resumed = loop.run(small(), tmp_path / "run")
    assert (tmp_path / "run" / "labeled.jsonl").read_text() == (out / "labeled.jsonl").read_text()
    assert resumed[1]["trained_in"] == str(tmp_path / "run")  # its own training, not redone


def test_finished_run_reruns_nothing(full_run, tmp_path):
    out, metrics = full_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = (copy / "metrics.jsonl").stat().st_mtime_ns
    assert loop.run(small(), copy) == metrics
    assert (copy / "metrics.jsonl").stat().st_mtime_ns == before
    # a run saved before the options a strategy sets existed resumes as it ran
    saved = yaml.safe_load((copy / "config.yaml").read_text())
    del saved["loop"]["init_by"], saved["uncertainty"]["target"]
    (copy / "config.yaml").write_text(yaml.safe_dump(saved))
    assert loop.run(small(), copy) == metrics


def test_a_sweep_trains_a_shared_round_once_and_gets_what_training_gets(full_run, tmp_path):
    """pe after random in one folder: round 0 (the same random labels and seeds) loads random's
    adapter, and the run is what pe trained alone (full_run) made, to the byte."""
    out, alone = full_run
    sweep = tmp_path / "sweep"
    loop.run(small(strategy="random"), sweep / "random")
    reused = loop.run(small(), sweep / "pe")
    assert reused[0]["trained_in"] == str(sweep / "random")
    assert all("trained_in" not in m for m in reused[1:])  # pe's labels from round 1 on
    fields = ("n_labeled", "accuracy", "ece", "train_loss")
    assert [[m[f] for f in fields] for m in reused] == [[m[f] for f in fields] for m in alone]
    assert (sweep / "pe" / "labeled.jsonl").read_text() == (out / "labeled.jsonl").read_text()
    for k in range(3):
        adapter = f"rounds/{k:03d}/adapter/adapter_model.safetensors"
        assert (sweep / "pe" / adapter).read_bytes() == (out / adapter).read_bytes()
    # another training setting, or reuse switched off, trains round 0 itself
    other = loop.run(small(**{"train.lr": 1e-3, "loop.rounds": 1}), sweep / "other")
    off = loop.run(small(**{"inference.reuse_training": False, "loop.rounds": 1}), sweep / "off")
    assert "trained_in" not in other[0] and "trained_in" not in off[0]
    assert off[0]["train_loss"] == alone[0]["train_loss"]


def test_different_config_is_refused_naming_the_keys(full_run):
    out, _ = full_run
    with pytest.raises(RunDirError, match=r"different config \(loop.rounds, seed differ\)"):
        loop.run(small(**{"loop.rounds": 4, "seed": 1}), out)


def test_other_version_is_refused(full_run, tmp_path):
    out, _ = full_run
    copy = tmp_path / "old"
    shutil.copytree(out, copy)
    text = (copy / "config.yaml").read_text().replace("star_version: ", "star_version: 0.0.1-")
    (copy / "config.yaml").write_text(text)
    with pytest.raises(RunDirError, match="was written by star 0.0.1-"):
        loop.run(small(), copy)


def test_budget_larger_than_pool_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="budget .*, 24\\) exceeds the pool of 20"):
        loop.run(small(**{"data.pool_size": 20}), tmp_path / "run")
    pool = "^obqa: data.pool_size is 99999 but it has 4957 training rows: pass --pool-size 4957 "
    with pytest.raises(ConfigError, match=pool):
        loop.run(small(**{"data.pool_size": 99999}), tmp_path / "run2")
    both = "4957 training rows; data.eval_size is 9999 but it has 500 evaluation rows: "
    with pytest.raises(ConfigError, match=both + "pass --pool-size 4957 --eval-size 500 "):
        loop.run(small(**{"data.pool_size": 99999, "data.eval_size": 9999}), tmp_path / "run3")
    assert not (tmp_path / "run2").exists() and not (tmp_path / "run3").exists()


def test_star_writes_ece_and_scores_the_base_model_once(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="star.engine.cache"):
        metrics = loop.run(small(strategy="star", **{"loop.rounds": 2}), tmp_path / "run")
    assert len(metrics) == 2 and all(0.0 <= m["ece"] <= 1.0 for m in metrics)
    computed = [r.getMessage() for r in caplog.records if "entries computed" in r.getMessage()]
    assert computed == ["signal cache: 56 of 56 entries computed"]  # 64 in the pool, 8 labelled
    assert len(list((tmp_path / "signal-cache").glob("*/*.safetensors"))) == 1
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="star.engine.cache"):  # another strategy, same pool
        loop.run(small(strategy="pe-dynamic", **{"loop.rounds": 2}), tmp_path / "other")
    assert not [r for r in caplog.records if "entries computed" in r.getMessage()]
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["uncertainty"]["mc_passes"] == 3 and saved["train"]["b_decay"] == 0.5
    for row in read(tmp_path / "run" / "rounds" / "000" / "eval.jsonl"):
        assert 0.0 <= row["confidence"] <= 1.0
    selected = read(tmp_path / "run" / "rounds" / "000" / "selected.jsonl")
    assert all(s["answer_tokens"] == 1 for s in selected)  # OBQA answers are one letter


def test_label_free_target_runs(tmp_path):
    config = small(
        strategy="entropy-subtract", **{"uncertainty.target": "generated", "loop.rounds": 2}
    )
    metrics = loop.run(config, tmp_path / "run")
    assert [m["round"] for m in metrics] == [0, 1]
    assert len(read(tmp_path / "run" / "rounds" / "000" / "selected.jsonl")) == 8


def test_a_spreading_strategy_chooses_round_0_and_resumes_to_the_same_picks(tmp_path):
    """`typical` picks its first labels itself (loop.init_by strategy), from the base model's
    embeddings: exactly cluster_stratified's picks, and the same again after a kill."""
    import torch

    from star.engine.scoring import embed
    from star.method.selection import cluster_stratified

    config = small(strategy="typical", **{"loop.rounds": 2})
    assert config.loop.init_by == "strategy" and config.uncertainty.target == "gold"
    run = loop.Run(config, tmp_path / "run")
    try:
        learner = run.learner
        pool = [x.prompt_ids for x in learner.encode(run.splits.pool)]
        x = embed(learner.base, pool, learner.tokenizer.pad_token_id, learner.batch_tokens)
        g = torch.Generator().manual_seed(seeds.derived_seed(0, 0, seeds.INIT_SELECT))
        picks = cluster_stratified(x, torch.zeros(0, x.shape[1]), torch.zeros(len(pool)), 8, g)
        chosen = run.choose(learner.base, -1, {}, config.loop.init_size)
        assert [s.id for s in chosen] == [run.splits.pool[i].id for i in picks]
    finally:
        run.dir.close()
    metrics = loop.run(config, tmp_path / "run")
    assert metrics[0]["seconds_per_phase"]["init"] > 0  # choosing round 0 is part of its cost
    first = read(tmp_path / "run" / "labeled.jsonl")
    shutil.rmtree(tmp_path / "again", ignore_errors=True)
    shutil.copytree(tmp_path / "run", tmp_path / "again")
    for name in ("metrics.jsonl", "labeled.jsonl"):  # as if killed before round 0 was saved
        (tmp_path / "again" / name).unlink()
    loop.run(config, tmp_path / "again")
    assert read(tmp_path / "again" / "labeled.jsonl") == first and len(metrics) == 2


def test_damaged_run_directory_gives_a_clear_error(full_run, tmp_path):
    out, _ = full_run
    copy = tmp_path / "damaged"
    shutil.copytree(out, copy)
    with open(copy / "labeled.jsonl", "a") as f:
        f.write('{"id": "obqa-train-00001"}\n')
    with pytest.raises(RunDirError, match=r"labeled.jsonl:25: 'round' must be an integer"):
        loop.run(small(), copy)
    (copy / "metrics.jsonl").write_text('{"round": 0}\n{"round": 5\n')
    with pytest.raises(BadInputError, match=r"metrics.jsonl:2: invalid JSON"):
        loop.run(small(), copy)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(RunDirError, match="is a file, not a run directory"):
        loop.run(small(), a_file)


def test_a_second_process_is_refused(full_run, tmp_path):
    """flock semantics are per open file, so a second open in this process stands in for a
    second process; the holder is unharmed and the lock goes with it."""
    out, metrics = full_run
    holder = RunDir.open(out, resolve(small())[0])
    try:
        with pytest.raises(RunDirError, match=r"in use by another star process \(pid \d+\)"):
            loop.run(small(), out)
    finally:
        holder.close()
    assert loop.run(small(), out) == metrics


def test_a_foreign_directory_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="is not empty and holds no star run"):
        loop.run(small(), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_label_free_answers_are_the_most_likely_option_as_evaluation_reads_it(tmp_path):
    """On a closed label set the model's own answer is the option evaluation would predict
    (not 32 generated tokens), so label-free scoring of a classification pool is cheap."""
    from star.engine.evaluate import evaluate_options
    from star.engine.options import option_ids

    run = loop.Run(small(strategy="pe", **{"uncertainty.target": "generated"}), tmp_path / "r")
    try:
        learner, examples = run.learner, run.splits.pool[:12]
        assert learner.answer_length([]) == run.spec.max_new_tokens
        predicted = evaluate_options(
            learner.base,
            learner.tokenizer,
            run.spec,
            examples,
            learner.encode(examples),
            learner.batch_tokens,
        )
        spelled = option_ids(learner.tokenizer, run.spec, run.spec.labels)
        expected = [spelled[run.spec.labels.index(p.predicted)] for p in predicted]
        answers = learner.answers(learner.base, examples, run.spec.max_new_tokens)
        assert [a.token_ids for a in answers] == expected
        assert learner.answer_length(examples[:1]) == 2  # 1 token + 1 + 0
    finally:
        run.dir.close()


def test_a_stopping_rule_ends_the_run_and_a_resumed_run_stays_stopped(tmp_path):
    config = small(
        strategy="random",
        **{"loop.stop": "uncertainty", "loop.stop_threshold": 1.0, "loop.stop_size": 6},
    )
    metrics = loop.run(config, tmp_path / "run")
    assert [m["round"] for m in metrics] == [0] and metrics[0]["stopped"] is True
    assert metrics[0]["stop"]["kappa"] is None  # one round: no pair to compare yet
    rows = read(tmp_path / "run" / "rounds" / "000" / "stop.jsonl")
    assert len(rows) == 6 and all(
        r["answer"] in "ABCD" and 0 <= r["uncertainty"] <= 1 for r in rows
    )
    assert metrics[0]["stop"]["uncertainty"] == pytest.approx(
        sum(r["uncertainty"] for r in rows) / 6
    )
    assert not (tmp_path / "run" / "rounds" / "000" / "selected.jsonl").exists()
    assert loop.run(config, tmp_path / "run") == metrics  # resumed: nothing left to do


def test_the_stop_figures_are_the_rules_on_the_saved_answers(tmp_path):
    from star.method.stopping import cohen_kappa

    config = small(strategy="random", **{"loop.stop": "kappa", "loop.rounds": 2})
    metrics = loop.run(config, tmp_path / "run")
    assert [m["stopped"] for m in metrics] == [False, False]  # a window of 3 needs 4 rounds
    first, second = (read(tmp_path / "run" / "rounds" / f"00{k}" / "stop.jsonl") for k in (0, 1))
    assert [r["id"] for r in first] == [r["id"] for r in second] and len(first) == 64  # all
    kappa = cohen_kappa([r["answer"] for r in first], [r["answer"] for r in second])
    assert metrics[1]["stop"]["kappa"] == pytest.approx(kappa)
    plain = loop.run(small(strategy="random", **{"loop.rounds": 1}), tmp_path / "plain")
    assert (
        "stop" not in plain[0]
        and not (tmp_path / "plain" / "rounds" / "000" / "stop.jsonl").exists()
    )


@pytest.mark.parametrize("options", [{"strategy": "margin"}, {"uncertainty.embedding": "gradient"}])
def test_a_label_strategy_on_free_answers_is_refused_before_anything_is_written(tmp_path, options):
    config = small(**{"task": "mix", **options})
    with pytest.raises(ConfigError, match="64 of 64 examples have free answers"):
        loop.run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
