"""The labelling-project commands: init, next, label, push, pull, train, status,
export-adapter."""

from __future__ import annotations

import argparse
from pathlib import Path

from star.cli.options import add_config_options, given
from star.errors import ConfigError
from star.labelling.annotator import SCORINGS
from star.labelling.formats import FORMATS

FIELD_NAMES = ("id", "prompt", "answer", "choices")  # columns of a user's file


def add_commands(sub) -> None:
    """Labelling your own data: init, next, label, train, status, export-adapter."""
    """Labelling your own data: init, next, label, train, status, export-adapter."""
    init = sub.add_parser(
        "init",
        help="start a labelling project on your own pool (JSONL or CSV)",
        description="Copies and checks the pool (and optional seed labels and eval file) into "
        "a new project directory. Items with `choices` are multiple choice.",
    )
    init.add_argument("dir", type=Path, help="new project directory")
    init.add_argument("--pool", type=Path, required=True, help="unlabelled items, .jsonl or .csv")
    init.add_argument("--seed-labels", type=Path, help="already labelled items (need an answer)")
    init.add_argument("--eval", type=Path, help="evaluation items with answers")
    for name in FIELD_NAMES:
        init.add_argument(f"--{name}-field", default=name, help=f"column of the {name}")
    init.add_argument("--max-new-tokens", type=int, default=64, help="answer length to generate")
    init.add_argument("--config", type=Path, help="YAML file of run options")
    add_config_options(init, skip=tuple(f"data.{n}_field" for n in FIELD_NAMES))

    nxt = sub.add_parser("next", help="select the next items to label and write them to a file")
    nxt.add_argument("dir", type=Path)
    nxt.add_argument("--k", type=int, required=True, help="how many items to choose")
    nxt.add_argument("--format", choices=FORMATS, default="jsonl")
    nxt.add_argument("--out", type=Path, help="file to write (default: DIR/exports/batch-NNN.*)")

    label = sub.add_parser("label", help="import labels from a filled-in batch file")
    label.add_argument("dir", type=Path)
    label.add_argument(
        "file",
        type=Path,
        help=".jsonl/.csv with id and label, or Label Studio's JSON export (.json)",
    )
    label.add_argument("--relabel", action="store_true", help="replace labels that differ")
    label.add_argument(
        "--allow-unexported",
        action="store_true",
        help="accept labels for items `star next` never exported",
    )

    push = sub.add_parser("push", help="send a batch to a running Label Studio (SDK)")
    push.add_argument("dir", type=Path)
    push.add_argument("--batch", type=int, help="batch number (default: the last)")
    push.add_argument(
        "--refresh",
        action="store_true",
        help="instead of a batch: replace the pre-annotations of the Label Studio tasks nobody "
        "has labelled yet with the last trained round's answers (run after `star train`)",
    )
    pull = sub.add_parser("pull", help="import the annotations made in Label Studio (SDK)")
    pull.add_argument("dir", type=Path)
    pull.add_argument("--relabel", action="store_true", help="replace labels that differ")
    for p in (push, pull):
        p.add_argument("--ls-url", help="Label Studio URL (default: $LABEL_STUDIO_URL)")
        p.add_argument("--ls-api-key", help="API token (default: $LABEL_STUDIO_API_KEY)")
        p.add_argument(
            "--ls-timeout",
            type=float,
            help="seconds to wait for each answer of the server (default: "
            "$LABEL_STUDIO_TIMEOUT, else 30); 5xx answers are retried twice first",
        )
        p.add_argument(
            "--ls-project",
            type=int,
            help="Label Studio project id (default: the one star created on the first push)",
        )

    annotate = sub.add_parser(
        "annotate",
        help="an LLM labels a batch; its sure answers become labels, the rest go to people",
        description="Asks an OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp, "
        "Ollama, a hosted API) for each waiting item of a batch. Answers at or above "
        "--threshold confidence (read off the reply's log-probabilities) are recorded as "
        "labels with their provenance; the rest are written as a new batch for people, "
        "pre-annotated with the LLM's answer. Each answer is journaled as it arrives: a killed "
        "run, rerun, asks nothing twice. A person's label always replaces the LLM's.",
    )
    annotate.add_argument("dir", type=Path)
    annotate.add_argument("--batch", type=int, help="batch number (default: the last)")
    annotate.add_argument("--base-url", help="endpoint, e.g. http://127.0.0.1:8080/v1 "
                          "(default: $OPENAI_BASE_URL)")  # fmt: skip
    annotate.add_argument("--llm-model", help="model name to ask for (default: $STAR_LLM_MODEL)")
    annotate.add_argument("--api-key", help="default: $OPENAI_API_KEY (local servers need none)")
    annotate.add_argument(
        "--threshold", type=float, default=0.9, help="confidence that makes a label [0.9]"
    )
    annotate.add_argument(
        "--scoring",
        choices=SCORINGS,
        default="auto",
        help="how a label set's confidence is read. auto: from the first answer token's top "
        "log-probabilities, and from one yes/no request per label (P(yes)) where those cannot "
        "tell the labels apart; first-token or per-label: only that way [auto]",
    )
    annotate.add_argument(
        "--max-requests", type=int, help="stop asking once this run has made this many requests"
    )
    annotate.add_argument(
        "--max-tokens",
        type=int,
        help="stop asking once this run has used this many tokens (as the server counts them)",
    )
    annotate.add_argument("--timeout", type=float, default=60.0, help="seconds per request [60]")
    annotate.add_argument(
        "--retries", type=int, default=2, help="retries of a failed request, with backoff [2]"
    )
    annotate.add_argument(
        "--dry-run", action="store_true", help="say how many requests it would make, make none"
    )
    annotate.add_argument("--format", choices=FORMATS, default="jsonl", help="people's batch")

    train = sub.add_parser("train", help="train a fresh adapter on all labels, then evaluate")
    train.add_argument("dir", type=Path)
    status = sub.add_parser("status", help="counts, rounds and metrics of a project")
    status.add_argument("dir", type=Path)
    export = sub.add_parser("export-adapter", help="copy a round's PEFT adapter out")
    export.add_argument("dir", type=Path)
    export.add_argument("out", type=Path, help="new folder for PeftModel.from_pretrained")
    export.add_argument("--round", type=int, help="default: the last round")
    handlers = {
        init: _init,
        nxt: _next,
        label: _label,
        push: _push,
        pull: _pull,
        train: _train,
        status: _status,
        export: _export_adapter,
        annotate: _annotate,
    }
    for parser, handler in handlers.items():
        parser.set_defaults(handler=handler)


def _init(args: argparse.Namespace) -> int:
    from star import api

    if args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    fields = api.Fields(args.id_field, args.prompt_field, args.answer_field, args.choices_field)
    config = api.make_config(given(args), args.config)
    api.init_project(
        args.dir, args.pool, config, args.seed_labels, args.eval, fields, args.max_new_tokens
    )
    with api.open_project(args.dir) as project:
        _print_status(project.status())
    return 0


def _next(args: argparse.Namespace) -> int:
    from star import api

    if args.k < 1:
        raise ConfigError(f"--k must be at least 1, got {args.k}")
    with api.open_project(args.dir) as project:
        out, n, left = project.next(args.k, args.format, args.out)
    if n < args.k:
        print(f"only {left} unlabelled item(s) were left; all of them are in this batch")
    print(f"wrote {n} item(s) to label to {out}")
    return 0


def _label(args: argparse.Namespace) -> int:
    from star.labelling.project import Project

    with Project.open(args.dir) as project:
        counts = project.import_labels(args.file, args.relabel, args.allow_unexported)
        print(
            f"imported {counts['imported']} label(s), {counts['unchanged']} already recorded; "
            f"{len(project.labels())} labelled in all"
        )
    return 0


def _push(args: argparse.Namespace) -> int:
    from star.labelling.labelstudio import Server, push, refresh
    from star.labelling.project import Project

    server = Server.from_options(args.ls_url, args.ls_api_key, args.ls_timeout)
    with Project.open(args.dir) as project:
        if args.refresh:
            pid = args.ls_project or project.label_studio_project(server.url)
            if pid is None:
                raise ConfigError(
                    "no Label Studio project: push a batch first or pass --ls-project"
                )
            count, version = refresh(server, pid, project.preannotate)
            print(
                f"refreshed {count} unlabelled task(s) in {server.url}/projects/{pid}"
                + (f" with {version}'s answers" if version else "")
            )
            return 0
        batch = project.batch(args.batch)
        if not batch["file"].endswith(".json"):
            raise ConfigError(
                f"batch {batch['batch']} was written as {batch['file']}; push needs one written "
                "with `star next --format label-studio`"
            )
        linked = args.ls_project or project.label_studio_project(server.url)
        pid, new, held = push(server, Path(batch["file"]), linked, f"star: {project.path.name}")
        project.link_label_studio(server.url, pid)
    print(
        f"pushed batch {batch['batch']} to {server.url}/projects/{pid}: {new} new task(s)"
        + (f", {held} already there" if held else "")
    )
    return 0


def _pull(args: argparse.Namespace) -> int:
    from star.labelling.labelstudio import Server, pull
    from star.labelling.project import Project

    server = Server.from_options(args.ls_url, args.ls_api_key, args.ls_timeout)
    with Project.open(args.dir) as project:
        pid = args.ls_project or project.label_studio_project(server.url)
        if pid is None:
            raise ConfigError("no Label Studio project: push a batch first or pass --ls-project")
        saved = pull(server, pid, project.path / "imports" / f"label-studio-{pid}.json")
        counts = project.import_labels(saved, args.relabel)
        print(
            f"pulled {saved}: imported {counts['imported']} label(s), {counts['unchanged']} "
            f"already recorded; {len(project.labels())} labelled in all"
        )
    return 0


def _train(args: argparse.Namespace) -> int:
    from star import api

    with api.open_project(args.dir) as project:
        _print_project_round(project.train())
    return 0


def _status(args: argparse.Namespace) -> int:
    from star.labelling.project import Project

    with Project.open(args.dir) as project:
        _print_status(project.status())
    return 0


def _annotate(args: argparse.Namespace) -> int:
    from star.labelling.annotator import Endpoint
    from star.labelling.project import Project

    for flag in ("max_requests", "max_tokens"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    endpoint = Endpoint.from_options(
        args.base_url, args.llm_model, args.api_key, args.timeout, args.retries, args.scoring
    )
    with Project.open(args.dir) as project:
        done = project.annotate(
            endpoint,
            args.batch,
            args.threshold,
            args.max_requests,
            args.format,
            args.dry_run,
            args.max_tokens,
        )
    if done.get("dry_run"):
        most = done["most_requests"]
        span = f"{done['requests']}" + (f" to {most}" if most > done["requests"] else "")
        print(
            f"would make {span} request(s) to {endpoint.base_url} "
            f"({done['prompt_chars']:,} characters of item prompts, about "
            f"{done['prompt_chars'] // 4:,} tokens, each sent with every request for its item)"
        )
        return 0
    print(
        f"asked {done['asked']} item(s) in {done['requests']} request(s), {done['tokens']:,} tokens"
        + (f" ({done['answered_before']} answered before)" if done["answered_before"] else "")
    )
    if done["left"]:
        print(f"{done['left']} item(s) still to ask: run the same command again")
        return 0
    print(f"{done['accepted']} label(s) accepted at confidence >= {args.threshold}")
    if done["to_people"]:
        print(f"{done['to_people']} item(s) for people, with the LLM's answer: {done['file']}")
    return 0


def _print_status(status: dict) -> None:
    by = status["labelled_by"]
    source = f" ({by['people']} by people, {by['llm']} by an LLM)" if by["llm"] else ""
    print(
        f"pool {status['pool']}: {status['labelled']} labelled{source}, {status['waiting']} "
        f"waiting for labels in {status['batches']} batch(es), {status['unlabelled']} unlabelled"
    )
    for row in status["rounds"]:
        _print_project_round(row)
    for line in status["stop"]:
        print(line)


def _print_project_round(row: dict) -> None:
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if isinstance(v, float))
    print(f"round {row['round']}: {row['n_labeled']} labels; {metrics}")


def _export_adapter(args: argparse.Namespace) -> int:
    from star.labelling.project import Project

    with Project.open(args.dir) as project:
        out = project.export_adapter(args.out, args.round)
    print(f"adapter written to {out} (load with PeftModel.from_pretrained(base, '{out}'))")
    return 0
