"""Find a suite folder, read its suite.yaml into a typed `Suite`, and stream its items.

A suite is data (see suites/README.md); this module knows where suites live, turns raw rows
into `Item`s with stable ids, and computes the content hash stored with every result.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

from harness.errors import HarnessError
from harness.plan import SuiteRef, check_generation
from harness.records import Generation, GraderSpec, Item
from harness.suite.jsonl import read_jsonl

REPO_ROOT = Path(__file__).resolve().parents[2]

_SUITE_KEYS = {
    "name",
    "description",
    "family",
    "version",
    "data",
    "loader",
    "options",
    "id_field",
    "id_format",
    "group_field",
    "reference_field",
    "reference_response",
    "template",
    "system",
    "fewshot",
    "grader",
    "generation",
    "sandbox",
    "request_field",
}


def suite_dirs() -> list[Path]:
    """Where suites are looked up, first match wins: $HARNESS_SUITES_PATH, ./suites, the bundled ones."""
    dirs = [Path(p) for p in os.environ.get("HARNESS_SUITES_PATH", "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "suites", REPO_ROOT / "suites"]
    seen, out = set(), []
    for d in dirs:
        r = d.resolve()
        if r not in seen and r.is_dir():
            seen.add(r)
            out.append(r)
    return out


def list_suites() -> list[str]:
    names: set[str] = set()
    for d in suite_dirs():
        names.update(p.parent.name for p in d.glob("*/suite.yaml"))
    return sorted(names)


def find_suite_dir(name: str) -> Path:
    direct = Path(name)
    if (direct / "suite.yaml").is_file():
        return direct.resolve()
    for d in suite_dirs():
        if (d / name / "suite.yaml").is_file():
            return d / name
    known = ", ".join(list_suites()) or "none found"
    raise HarnessError(f"unknown suite '{name}' (known: {known}); a suite is a folder suites/<name>/ with a suite.yaml")


@dataclass(frozen=True)
class FewShot:
    k: int = 0
    data: str | None = None
    answer_template: str | None = None
    match_field: str | None = None  # choose shots whose field equals the item's (e.g. C-Eval subject)


@dataclass(frozen=True)
class Suite:
    name: str
    dir: Path
    family: str
    description: str
    template: str
    system: str | None
    grader: GraderSpec
    generation: Generation
    fewshot: FewShot
    reference_field: str | None
    reference_response: str | None
    id_field: str | None
    id_format: str | None
    group_field: str | None
    data: str | None
    loader: str | None
    loader_options: Mapping[str, Any]
    sandbox: Mapping[str, Any]
    limit: int | None  # at most N items: a fair sample across groups (harness.suite.sample)
    raw_config: Mapping[str, Any] = field(repr=False, default_factory=dict)
    first: int | None = None  # the first N items of the file instead
    sample_seed: int = 0
    request_field: str | None = None  # items hold a whole logged chat request: replayed as is, no template

    # -- data ---------------------------------------------------------------------------

    def _loaded(self):
        """The loader's LoadedData for benchmark suites (cached: opening a dataset is slow)."""
        cached = self.__dict__.get("_loaded_cache")
        if cached is None:
            from harness.suite import loaders  # imports `datasets` lazily: only benchmark suites pay for it

            if not self.data:
                raise HarnessError(
                    f"suite '{self.name}' needs data: give a path to the benchmark files or a hub id in the "
                    f"plan (suites: [{{{self.name}: {{data: PATH}}}}]) or with --data"
                )
            cached = loaders.load(self.loader, self.data, self.loader_options, suite=self.name)
            object.__setattr__(self, "_loaded_cache", cached)
        return cached

    def _rows(self) -> Iterator[dict]:
        if self.loader:
            yield from self._loaded().rows
            return
        yield from read_jsonl(self._data_path())

    def _data_path(self) -> Path:
        path = Path(self.data or "items.jsonl")
        return path if path.is_absolute() else self.dir / path

    def items(self) -> Iterator[Item]:
        """Items in file order, streamed (never all built at once): the first N, or `limit`'s fair sample."""
        rows = enumerate(self._rows())
        if self.first is not None:
            head = self.first if self.limit is None else min(self.first, self.limit)
            for index, row in islice(rows, head):
                yield self.make_item(row, index)
            return
        keep = self._sample() if self.limit is not None else None
        for index, row in rows:
            if keep is None or index in keep:
                yield self.make_item(row, index)

    def _sample(self) -> set[int]:
        """A first pass over the rows (ids and groups only) to choose which `limit` items to take."""
        from harness.suite.sample import sample_indices

        entries = (
            (self._item_id(row, index), str(row.get(self.group_field, "")) if self.group_field else "")
            for index, row in enumerate(self._rows())
        )
        return sample_indices(entries, self.limit, suite=self.name, seed=self.sample_seed)

    def make_item(self, row: Mapping[str, Any], index: int) -> Item:
        return Item(
            id=self._item_id(row, index),
            fields=row,
            reference=row.get(self.reference_field) if self.reference_field else None,
            group=str(row.get(self.group_field, "")) if self.group_field else "",
        )

    def count(self) -> int | None:
        """Number of items the suite will yield, or None when it cannot be known cheaply."""
        if self.loader:
            n = self._loaded().count
        else:
            with open(self._data_path(), "rb") as fh:
                n = sum(1 for line in fh if line.strip())
        if n is None:
            return None
        cap = min(x for x in (self.limit, self.first) if x is not None) if (self.limit or self.first) else None
        return min(n, cap) if cap is not None else n

    def fewshot_pool(self) -> list[dict]:
        if self.fewshot.data:
            return list(read_jsonl(self.dir / self.fewshot.data))
        if self.loader:
            return list(self._loaded().fewshot)
        return []

    def _item_id(self, row: Mapping[str, Any], index: int) -> str:
        if self.id_field and row.get(self.id_field) not in (None, ""):
            return str(row[self.id_field])
        if self.id_format:
            try:
                return self.id_format.format(**row)
            except (KeyError, IndexError, ValueError) as exc:
                raise HarnessError(
                    f"suite '{self.name}': id_format {self.id_format!r} needs field {exc} in row {index}"
                ) from None
        return f"{self.name}/{index}"

    # -- identity -----------------------------------------------------------------------

    @property
    def content_hash(self) -> str:
        """sha256 over everything that decides what is asked and how it is graded.

        suite.yaml, every template file, the items (bundled file bytes, or the loader's
        fingerprint of the benchmark files), the shots used and the grader settings.
        The item limit is not part of it: comparisons match items by id.
        """
        cached = self.__dict__.get("_hash_cache")
        if cached:
            return cached
        h = hashlib.sha256()
        h.update(json.dumps(self.raw_config, sort_keys=True, default=str).encode())
        h.update(
            json.dumps(
                [self.fewshot.k, dict(self.loader_options), dict(self.grader.options)], sort_keys=True, default=str
            ).encode()
        )
        for path in sorted(self.dir.iterdir()):
            if path.suffix == ".j2" or path.name == "fewshot.jsonl":
                h.update(path.name.encode() + b"\0" + path.read_bytes())
        if self.loader:
            h.update(self._loaded().fingerprint.encode())
        else:
            h.update(self._data_path().read_bytes())
        digest = h.hexdigest()[:16]
        object.__setattr__(self, "_hash_cache", digest)
        return digest


def load_suite(ref: SuiteRef | str, *, data: str | None = None) -> Suite:
    """Read suites/<name>/suite.yaml; the plan's SuiteRef (or --data) supplies data, limit and shots."""
    if isinstance(ref, str):
        ref = SuiteRef(name=ref)
    folder = find_suite_dir(ref.name)
    config_path = folder / "suite.yaml"
    try:
        raw = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise HarnessError(f"{config_path}: invalid YAML: {str(exc).splitlines()[0]}") from None
    where = str(config_path)
    unknown = sorted(set(raw) - _SUITE_KEYS)
    if unknown:
        raise HarnessError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_SUITE_KEYS))})")
    for required in ("grader",) if raw.get("request_field") else ("template", "grader"):
        if required not in raw:
            raise HarnessError(f"{where}: missing '{required}'")
    for tpl_key in ("template", "system"):
        if raw.get(tpl_key) and not (folder / raw[tpl_key]).is_file():
            raise HarnessError(f"{where}: {tpl_key} file {raw[tpl_key]} not found in {folder}")
    grader_raw = raw["grader"]
    if isinstance(grader_raw, str):
        grader_raw = {"name": grader_raw}
    fewshot_raw = dict(raw.get("fewshot") or {})
    gen = {**check_generation(raw.get("generation"), where), **ref.generation}
    generation = Generation(
        max_tokens=int(gen.get("max_tokens", 512)),
        temperature=float(gen.get("temperature", 0.0)),
        top_p=gen.get("top_p"),
        stop=tuple(gen.get("stop") or ()),
        seed=gen.get("seed"),
    )
    loader = raw.get("loader")
    bundled_data = raw.get("data")
    chosen_data = data or ref.data
    if chosen_data and not loader:
        bundled_data = str(Path(chosen_data).expanduser().resolve())
    return Suite(
        name=ref.name if "/" not in ref.name else folder.name,
        dir=folder,
        family=str(raw.get("family", "")),
        description=str(raw.get("description", "")).strip(),
        template=raw.get("template", ""),
        system=raw.get("system"),
        grader=GraderSpec(grader_raw["name"], dict(grader_raw.get("options") or {})),
        generation=generation,
        fewshot=FewShot(
            k=int(ref.fewshot if ref.fewshot is not None else fewshot_raw.get("k", 0)),
            data=fewshot_raw.get("data"),
            answer_template=fewshot_raw.get("answer_template"),
            match_field=fewshot_raw.get("match_field"),
        ),
        reference_field=raw.get("reference_field"),
        reference_response=raw.get("reference_response"),
        id_field=raw.get("id_field"),
        id_format=raw.get("id_format"),
        group_field=raw.get("group_field"),
        data=chosen_data if loader else bundled_data,
        loader=loader,
        loader_options={**(raw.get("options") or {}), **ref.options},
        sandbox=dict(raw.get("sandbox") or {}),
        limit=ref.limit,
        raw_config=raw,
        first=ref.first,
        sample_seed=ref.sample_seed,
        request_field=raw.get("request_field"),
    )
