"""The active-learning step is one: a labelling project fed the gold labels picks the same ids,
round by round, as a simulated run with the same seed and settings."""

import json

import pytest

import star
from star.experiment.loop import load_splits
from star.tasks.resolve import resolve

SETTINGS = {
    "task": "trec",
    "model.name": "tiny-random",
    "model.dtype": "float32",
    "data.pool_size": 40,
    "data.eval_size": 8,
    "loop.schedule": [4, 8, 12],
    "lora.r": 4,
    "train.epochs": 1,
    "train.batch_size": 2,
    "train.lr": 1e-2,  # training moves the scores: a project that trained otherwise would show
    "uncertainty.target": "generated",  # a project has no gold answers to measure on
}


def run_picks(out) -> list[list[str]]:
    """Round 0's labels, then each round's selection, in pick order."""
    first = [json.loads(x) for x in (out / "labeled.jsonl").read_text().splitlines()]
    picks = [[r["id"] for r in first if r["round"] == 0]]
    for k in range(len(SETTINGS["loop.schedule"]) - 1):
        rows = (out / "rounds" / f"{k:03d}" / "selected.jsonl").read_text().splitlines()
        picks.append([json.loads(x)["id"] for x in rows])
    return picks


@pytest.mark.parametrize(
    "strategy",
    [
        {"strategy": "pe-kmeanspp"},  # spreading; round 0 chosen by the strategy on the base
        {"strategy": "pe"},  # the tuned model's uncertainty, top-k; round 0 random
        {"strategy": "star", "loop.max_candidates": 24},  # MC dropout, base model, subsampled
        # the label distribution over MC passes, spread on gradient embeddings (BADGE's)
        {"strategy": "label-bald-kmeanspp", "uncertainty.embedding": "gradient"},
    ],
    ids=["pe-kmeanspp", "pe", "star", "label-bald-kmeanspp"],
)
def test_a_project_fed_gold_labels_picks_what_the_run_picks(tmp_path, strategy):
    config = star.make_config({**SETTINGS, **strategy})
    star.run(config, tmp_path / "run")
    expected = run_picks(tmp_path / "run")

    resolved, task = resolve(config)
    pool = load_splits(resolved, task).pool
    gold = {e.id: e.answer for e in pool}
    pool_file = tmp_path / "pool.jsonl"
    pool_file.write_text(
        "".join(
            json.dumps({"id": e.id, "prompt": e.prompt, "choices": list(task.spec.labels)}) + "\n"
            for e in pool
        )
    )
    star.init_project(tmp_path / "project", pool_file, config, max_new_tokens=32)
    sizes = config.loop.sizes()
    got = []
    with star.open_project(tmp_path / "project") as project:
        wants = [b - a for a, b in zip([0, *sizes[:-1]], sizes, strict=True)]
        for k, want in enumerate(wants):
            batch, _, _ = project.next(want, out=tmp_path / f"batch{k}.jsonl")
            ids = [json.loads(x)["id"] for x in batch.read_text().splitlines()]
            got.append(ids)
            labels = tmp_path / f"labels{k}.jsonl"
            labels.write_text("".join(json.dumps({"id": i, "label": gold[i]}) + "\n" for i in ids))
            project.import_labels(labels)
            if k + 1 < len(sizes):
                project.train()
    assert got == expected
    assert len({i for ids in got for i in ids}) == sizes[-1]
