"""Read real public benchmarks from their original file formats, through Hugging Face `datasets`.

A benchmark suite names a loader (`loader: gsm8k` in its suite.yaml) and the user supplies the
data: a local file or folder as the benchmark ships it, or a hub dataset id when the string is
not an existing path. Each loader turns that into `LoadedData`:

- `rows`: the evaluation rows as plain dicts, in a stable order, read lazily from the
  memory-mapped Arrow tables `datasets` builds (re-iterable; nothing is copied into lists);
- `fewshot`: the benchmark's own few-shot pool in the same field format (may be empty);
- `fingerprint`: sha256 over the bytes of every file read plus the loader and its resolved
  options, so the suite hash changes when the data or the selection changes, and not when
  the same files move to another folder or `datasets` rebuilds its cache;
- `count`: the number of rows.

Loaders, one module each (harness/loaders/<name>.py), which registers its function in `LOADERS`
under the name; the shared machinery is in common.py, the hub helpers in hub.py:

humaneval  HumanEval.jsonl.gz (or .jsonl, or a folder holding it). Rows unchanged:
           task_id, prompt, entry_point, canonical_solution, test.
mbpp       mbpp.jsonl (974 tasks). Option `split`: test (task_id 11-510, the default),
           validation (511-600), train (601-974), prompt (1-10) or all. Few-shot pool: tasks
           2, 3, 4 (the MBPP paper's prompt tasks), never also among the rows. Rows unchanged.
gsm8k      test.jsonl, or a folder with test.jsonl and train.jsonl. Option `split`: test|train
           (picks the file in a folder). Few-shot pool: the first `fewshot_pool` (8) rows of
           train.jsonl; when train.jsonl is also the evaluated file, those rows are left out
           of the rows. Fields question, answer.
ceval      a folder with dev/ and val/ (<subject>_<split>.csv) and, optionally,
           subject_mapping.json. Options `split` (val|dev), `subjects`, `categories`.
           Rows: id, question, A, B, C, D, answer, explanation ("" in val) + subject,
           subject_zh, category. Few-shot pool: the dev rows of the selected subjects
           (empty when dev itself is evaluated).
bbh        a folder of <task>.json files, the repo root holding bbh/ and cot-prompts/, or one
           task file. Option `tasks`. Rows: task, id "<task>/<index>", input, target. Few-shot
           pool: the 3 chain-of-thought exemplars of each task's cot-prompts/<task>.txt,
           as {task, input, rationale, target}; option `cot_prompts` points at that folder
           when it is not next to the task files.

mmmu, chartqa, docvqa  image benchmarks from local files (see vision.py): MMMU's parquet rows with
           embedded images, ChartQA's JSON + png/ folder, DocVQA's JSON + images.

Hub datasets (`openai/openai_humaneval`, `google-research-datasets/mbpp`, `openai/gsm8k`,
`ceval/ceval-exam`, `lukaemon/bbh`, or anything with the same fields) load through
`datasets.load_dataset`; option `config` picks the hub config for mbpp (default "full") and
gsm8k (default "main"). With no network this fails with a HarnessError saying so; local files
never touch the network and work with HF_DATASETS_OFFLINE=1.

`datasets` caches its Arrow copy under $HF_DATASETS_CACHE (read at each call, default
~/.cache/huggingface/datasets); a second load of unchanged files reuses it. Progress bars are
switched off while a loader runs.
"""

from __future__ import annotations

from typing import Any, Mapping

from harness.errors import HarnessError
from harness.suite.loaders.bbh import BBH_FIELDS, load_bbh, parse_cot_prompt
from harness.suite.loaders.bfcl import load_bfcl
from harness.suite.loaders.ceval import CEVAL_CATEGORIES, CEVAL_COLUMNS, load_ceval
from harness.suite.loaders.common import (
    FORMAT_VERSION,
    LOADERS,
    LoadedData,
    Rows,
    Shape,
    _quiet_datasets,
    _resolve_options,
    _Source,
)
from harness.suite.loaders.gsm8k import GSM8K_FIELDS, load_gsm8k

# Importing a benchmark module registers its loader; `datasets` is only imported when one runs.
# The order is LOADERS' order.
from harness.suite.loaders.humaneval import HUMANEVAL_FIELDS, load_humaneval
from harness.suite.loaders.mbpp import MBPP_FEWSHOT_IDS, MBPP_FIELDS, MBPP_OPTIONAL, MBPP_SPLITS, load_mbpp
from harness.suite.loaders.vision import load_chartqa, load_docvqa, load_mmmu

__all__ = [
    "FORMAT_VERSION",
    "LOADERS",
    "LoadedData",
    "Rows",
    "Shape",
    "available_loaders",
    "load",
    "parse_cot_prompt",
    "load_humaneval",
    "load_mbpp",
    "load_gsm8k",
    "load_ceval",
    "load_bbh",
    "load_mmmu",
    "load_chartqa",
    "load_docvqa",
    "load_bfcl",
    "HUMANEVAL_FIELDS",
    "MBPP_FIELDS",
    "MBPP_OPTIONAL",
    "MBPP_SPLITS",
    "MBPP_FEWSHOT_IDS",
    "GSM8K_FIELDS",
    "CEVAL_CATEGORIES",
    "CEVAL_COLUMNS",
    "BBH_FIELDS",
]


def available_loaders() -> list[str]:
    return sorted(LOADERS)


def load(
    loader: str, data: str | None, options: Mapping[str, Any] | None = None, *, suite: str | None = None
) -> LoadedData:
    """Load benchmark `data` (a local path, or a hub id when not an existing path) with `loader`.

    `suite` only names the suite in error messages (default: the loader's name).
    """
    if loader not in LOADERS:
        raise HarnessError(
            f"unknown loader '{loader}' (known: {', '.join(available_loaders())}); set loader: in suite.yaml"
        )
    name = suite or loader
    if data is None or not str(data).strip():
        raise HarnessError(
            f"suite '{name}' needs data: give a path to the benchmark files or a hub id in the plan "
            f"(suites: [{{{name}: {{data: PATH}}}}]) or with --data"
        )
    if options is not None and not isinstance(options, Mapping):
        raise HarnessError(f"suite '{name}': options must be a mapping, got {options!r}")
    spec = LOADERS[loader]
    opts = _resolve_options(name, loader, spec.options, dict(options or {}))
    source = _Source.of(name, str(data))
    with _quiet_datasets():
        return spec.fn(source, opts)
