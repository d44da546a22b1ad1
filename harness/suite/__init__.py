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

from harness.errors import HarnessError, yaml_error
from harness.plan import SuiteRef, check_generation
from harness.records import Generation, GraderSpec, Item
from harness.suite.config import check_suite_file
from harness.suite.images import ImageProblem, ImageSettings, check_raw, digest_raw, image_refs, read_raw
from harness.suite.jsonl import read_jsonl
from harness.untrusted import bounded_lines, file_digest, inside, load_yaml, read_text, regular_file

REPO_ROOT = Path(__file__).resolve().parents[2]

# suite.yaml `tools:` keys: which item fields carry the offered tools and the conversation.
_TOOLS_KEYS = {"field", "messages_field", "choice"}


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
    import difflib

    names = list_suites()
    near = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f"did you mean '{near[0]}'? " if near else ""
    known = ", ".join(names) or "none found"
    raise HarnessError(
        f"unknown suite '{name}': {hint}(known: {known}); a suite is a folder suites/<name>/ with a suite.yaml"
    )


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
    images_field: str | None = None  # the item field naming its images (suite.yaml `images_field`)
    image_settings: ImageSettings = ImageSettings()
    tools: Mapping[str, Any] = field(default_factory=dict)  # suite.yaml `tools:` (see _TOOLS_KEYS)
    agent: Mapping[str, Any] = field(default_factory=dict)  # suite.yaml `agent:` (harness.engine.agent)
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
            path = regular_file(self._data_path(), "data file")
            with open(path, "rb") as fh:
                n = sum(1 for line in bounded_lines(fh, str(path)) if line.strip())
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

    # -- images -------------------------------------------------------------------------

    def image_root(self) -> Path:
        """Where an item's relative image paths start: the data folder of a benchmark, else the suite folder."""
        if self.loader and self.data:
            data = Path(self.data).expanduser().resolve()
            return data if data.is_dir() else data.parent
        if self.data and Path(self.data).is_absolute():
            return Path(self.data).parent
        return self.dir

    def item_images(self, item: Item) -> list:
        """The raw image references of an item (paths, URLs, embedded bytes), in order."""
        if not self.images_field:
            return []
        try:
            return image_refs(item.fields.get(self.images_field))
        except ImageProblem as exc:
            raise HarnessError(f"suite '{self.name}', item {item.id}: {exc}") from None

    def check_images(self) -> None:
        """Read and decode every image of the chosen items once, before anything is sent.

        The first unusable image is one HarnessError naming the suite, the item and what to do.
        """
        if not self.images_field or self.__dict__.get("_images_checked"):
            return
        root = self.image_root()
        for item in self.items():
            for ref in self.item_images(item):
                try:
                    check_raw(read_raw(ref, root, self.image_settings), self.image_settings)
                except ImageProblem as exc:
                    raise HarnessError(f"suite '{self.name}', item {item.id}: {exc}") from None
        object.__setattr__(self, "_images_checked", True)

    def _images_digest(self) -> str:
        """sha256 over the bytes of every image of a bundled suite (all rows, whatever the limit).

        A benchmark's images are covered by its loader's fingerprint instead (embedded bytes are in
        its files; ChartQA/DocVQA loaders hash the image files they name).
        """
        h = hashlib.sha256()
        root = self.image_root()
        for index, row in enumerate(self._rows()):
            item = self.make_item(row, index)
            for ref in self.item_images(item):
                if isinstance(ref, str) and ref.startswith(("http://", "https://")):
                    h.update(f"{item.id}\0{ref}\0".encode())  # never fetched just to hash it
                    continue
                try:
                    raw = read_raw(ref, root, self.image_settings)
                except ImageProblem as exc:
                    raise HarnessError(f"suite '{self.name}', item {item.id}: {exc}") from None
                h.update(f"{item.id}\0{digest_raw(raw)}\0".encode())
        return h.hexdigest()

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
                inside(path, self.dir, f"suite '{self.name}':")
                h.update(path.name.encode() + b"\0" + file_digest(path, f"suite '{self.name}': file"))
        if self.loader:
            h.update(self._loaded().fingerprint.encode())
        else:
            h.update(file_digest(self._data_path(), "data file"))
        if self.images_field:  # the images' bytes decide what is asked too (settings are in raw_config)
            if not self.loader:
                h.update(self._images_digest().encode())
            h.update(json.dumps(self.image_settings.__dict__, sort_keys=True).encode())
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
        raw = load_yaml(read_text(config_path, "suite file"), str(config_path)) or {}
    except yaml.YAMLError as exc:
        raise yaml_error(str(config_path), exc) from None
    where = str(config_path)
    check_suite_file(raw, where)  # keys, types, required ones: one line naming the file and the field
    if not raw.get("request_field") and "template" not in raw:
        raise HarnessError(f"{where}: template: is required (or request_field, for items that are whole requests)")
    for tpl_key in ("template", "system"):
        if raw.get(tpl_key) and not (folder / str(raw[tpl_key])).is_file():
            raise HarnessError(f"{where}: {tpl_key} file {raw[tpl_key]} not found in {folder}")
        if raw.get(tpl_key):
            inside(folder / str(raw[tpl_key]), folder, f"{where}: {tpl_key}")
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
    tools = raw.get("tools") or {}
    if not isinstance(tools, dict) or set(tools) - _TOOLS_KEYS:
        raise HarnessError(
            f"{where}: tools must be a mapping with keys among {', '.join(sorted(_TOOLS_KEYS))}, got {tools!r}"
        )
    agent = raw.get("agent") or {}
    if not isinstance(agent, dict):
        raise HarnessError(f"{where}: agent must be a mapping (environment, max_turns, token_budget), got {agent!r}")
    loader = raw.get("loader")
    bundled_data = raw.get("data")
    chosen_data = data or ref.data
    if chosen_data and not loader:
        bundled_data = str(Path(chosen_data).expanduser().resolve())
    elif not loader:  # the suite's own items: inside its folder, symlinks included
        inside(folder / str(bundled_data or "items.jsonl"), folder, f"{where}: data")
    if fewshot_raw.get("data"):
        inside(folder / str(fewshot_raw["data"]), folder, f"{where}: fewshot data")
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
        images_field=_images_field(raw.get("images_field"), where),
        image_settings=ImageSettings.parse(raw.get("images"), where).merged(
            getattr(ref, "images", None), f"plan suite '{ref.name}'"
        ),
        tools=tools,
        agent=agent,
        request_field=raw.get("request_field"),
    )


def _images_field(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise HarnessError(f"{where}: images_field must name an item field (e.g. images_field: images)")
    return value
