"""`harness suites list|show|validate` and `harness grade`: suites and grading outside a run."""

from __future__ import annotations

import json
import sys
import time

import click


@click.group()
def suites():
    """List, inspect and validate suites."""


@suites.command("list")
def suites_list():
    """List the suites that can be named in a plan."""
    from harness.suite import REPO_ROOT, list_suites, load_suite

    bundled = (REPO_ROOT / "suites").resolve()
    for name in list_suites():
        s = load_suite(name)
        # A suite of the user's own (./suites, $HARNESS_SUITES_PATH) is theirs, not "bundled".
        mine = s.dir.resolve().parent != bundled
        if s.loader:
            kind = f"benchmark ({s.loader}; needs data)"
        else:
            kind = f"yours: {s.dir}" if mine else "bundled"
        click.echo(
            f"{name:<16} {s.family:<10} {s.grader.name:<8} {kind:<28} {s.description.splitlines()[0] if s.description else ''}"
        )


@suites.command("show")
@click.argument("name")
@click.option("--data", metavar="PATH", help="Benchmark files or hub id (benchmark suites).")
@click.option("--fewshot", type=click.IntRange(min=0), help="Number of few-shot examples.")
def suites_show(name, data, fewshot):
    """Show a suite: item count, content hash and its first rendered prompt."""
    from harness.plan import SuiteRef
    from harness.suite import load_suite
    from harness.suite.prompt import PromptBuilder

    s = load_suite(SuiteRef(name=name, fewshot=fewshot), data=data)
    builder = PromptBuilder(s)
    click.echo(f"suite {s.name}  ({s.family}, grader {s.grader.name}) in {s.dir}")
    if s.description:
        click.echo(s.description)
    click.echo(f"items: {s.count()}  hash: {s.content_hash}  few-shot: {s.fewshot.k}")
    first = next(iter(s.items()), None)
    if first is None:
        return
    click.echo(f"\nfirst item: {first.id}")
    for m in builder.build(first).messages:
        click.echo(f"--- {m.role}\n{m.text}")
        for image in m.images:
            click.echo(
                f"[image {image.source} {image.width}x{image.height} {image.media_type} sha256 {image.sha256[:12]}]"
            )


@suites.command("validate")
@click.argument("name")
@click.option("--data", metavar="PATH", help="Benchmark files or hub id (benchmark suites).")
@click.option("--limit", type=click.IntRange(min=1))
def suites_validate(name, data, limit):
    """Grade each item's reference answer with the suite's grader; anything below 100% exits 1."""
    from harness.graders.grading import validate_suite
    from harness.plan import SuiteRef
    from harness.suite import load_suite

    s = load_suite(SuiteRef(name=name, limit=limit), data=data)
    started = time.perf_counter()
    result = validate_suite(s)
    elapsed = time.perf_counter() - started
    click.echo(
        f"{s.name}: {result.passed}/{result.total} reference answers graded correct "
        f"({100 * result.passed / max(1, result.total):.1f}%) in {elapsed:.1f} s"
    )
    for item_id, reason in result.failures[:20]:
        click.echo(f"  FAIL {item_id}: {reason}")
    if result.passed != result.total or result.total == 0:
        sys.exit(1)


@click.command()
@click.argument("suite")
@click.option(
    "--samples",
    "samples_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="JSONL with task_id and completion per row (human-eval's samples format).",
)
@click.option("--data", metavar="PATH", help="Benchmark files or hub id (benchmark suites).")
@click.option("--json", "as_json", is_flag=True, help="Print pass@k as one JSON object.")
def grade(suite, samples_path, data, as_json):
    """Grade pre-generated completions; writes SAMPLES_results.jsonl and prints pass@k."""
    from harness.graders.grading import grade_samples_file
    from harness.suite import load_suite

    s = load_suite(suite, data=data)
    result = grade_samples_file(s, samples_path)
    if as_json:
        click.echo(json.dumps(result.summary, sort_keys=True))
    else:
        for k, v in result.summary["pass_at_k"].items():
            click.echo(f"pass@{k}: {v:.4f}")
        click.echo(
            f"{result.summary['samples']} samples over {result.summary['tasks']} tasks; "
            f"results in {result.results_path}"
        )


@suites.group("make")
def suites_make():
    """Write a generated suite folder."""


@suites_make.command("needle")
@click.option("--lengths", required=True, help="Prompt lengths in tokens: 1k,2k,4k (k = 1024) or 1000,2000.")
@click.option("--depths", required=True, help="Needle depths in percent: 0,50,100 or 0,10,...,100.")
@click.option("--out", "out", required=True, type=click.Path(), help="The suite folder to write (new or empty).")
@click.option(
    "--tokenizer",
    metavar="MODEL",
    help="Count tokens with 'embedded' (the embedded model), a .gguf file or a server URL (its /tokenize); "
    "default: the estimate.",
)
@click.option("--needles", default="1", show_default=True, help="Needles per item, e.g. 1,3 (each a variant).")
@click.option("--lang", default="en", show_default=True, help="Haystack and question language: en, zh or en,zh.")
@click.option("--haystack", type=click.Path(), help="Your own text (UTF-8; paragraphs split by blank lines).")
@click.option(
    "--distractors", type=click.IntRange(0, 10), default=0, show_default=True, help="Near-miss facts per item."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Which codes, keys and prose are drawn.")
def suites_make_needle(lengths, depths, out, tokenizer, needles, lang, haystack, distractors, seed):
    """A needle-in-a-haystack suite: codes hidden at known depths in prompts of known token length."""
    from harness.suite.needle import NeedleOptions, make_needle_suite, parse_counts, parse_depths, parse_lengths
    from harness.suite.token_counter import counter_for

    options = NeedleOptions(
        lengths=parse_lengths(lengths),
        depths=parse_depths(depths),
        needles=parse_counts(needles, "--needles"),
        langs=tuple(dict.fromkeys(p.strip() for p in lang.split(",") if p.strip())),
        distractors=distractors,
        haystack=haystack,
        seed=seed,
    )
    counter = counter_for(tokenizer)
    made = make_needle_suite(out, options, counter)
    click.echo(f"wrote {made.items} items to {made.path} ({made.bytes_on_disk / 1e6:.2f} MB)")
    how = "" if made.exact else " (an estimate: pass --tokenizer for the model's own counts)"
    click.echo(f"token counts: {made.counted_by}{how}; largest miss of a length: {made.worst_miss:.2%}")
    for lang_name, times in made.repeated.items():
        if haystack and times > 1:
            click.echo(f"your haystack was repeated {times} times to fill {lang_name} prompts")
    click.echo(f"name it in a plan by its path: suites: [{made.path}]")
