"""`harness suites make needle`: write a needle-in-a-haystack suite folder of known token lengths and depths.

The folder is an ordinary suite (suite.yaml, prompt.j2, items.jsonl) plus one haystack file per language,
stored once: each item only says where its haystack ends and where its needles go (character offsets),
and prompt.j2 splices them in. Lengths are whole prompts (template, question and needles included) in the
tokens of the counter given (harness/suite/token_counter.py); each item records the count it reached.
"""

from __future__ import annotations

import json
import random
import re
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.errors import HarnessError
from harness.suite import haystack as hay
from harness.suite.token_counter import TokenCounter

LANGS = ("en", "zh")
LONG_CONTEXT_FAMILY = "long-context"  # the family of generated suites: the report draws their grid
_COLOURS = {
    "en": ("red", "blue", "green", "yellow", "purple", "orange", "silver", "black", "white", "brown", "grey", "pink"),
    "zh": ("红色", "蓝色", "绿色", "黄色", "紫色", "橙色", "银色", "黑色", "白色", "棕色", "灰色", "粉色"),
}
_ANIMALS = {
    "en": ("fox", "heron", "otter", "badger", "falcon", "lynx", "tortoise", "owl", "beaver", "salmon", "moth", "crane"),
    "zh": ("狐狸", "苍鹭", "水獭", "獾", "猎鹰", "猞猁", "乌龟", "猫头鹰", "河狸", "鲑鱼", "飞蛾", "仙鹤"),
}
_INTRO = {
    "en": "Below is a long document. Hidden in it are facts about locker codes. Read it, then answer the "
    "question after it.",
    "zh": "下面是一篇很长的文档，其中藏有关于储物柜密码的信息。请阅读后回答文末的问题。",
}
TEMPLATE = """{% set hay %}{% include haystack %}{% endset -%}
{{ intro }}

{% for a, b, text in pieces %}{{ hay[a:b] }}{{ text }}{% endfor %}

{{ question }}
"""


@dataclass(frozen=True)
class NeedleOptions:
    lengths: tuple[int, ...]  # whole-prompt tokens
    depths: tuple[float, ...]  # percent of the haystack before the (first) needle
    needles: tuple[int, ...] = (1,)  # needles per item (several: all must be recalled)
    langs: tuple[str, ...] = ("en",)
    distractors: int = 0  # near-miss facts (same animal, another colour, another code) per item
    haystack: str | None = None  # the user's own text instead of generated prose
    seed: int = 0


@dataclass(frozen=True)
class NeedleSuite:
    path: Path
    items: int
    counted_by: str
    exact: bool
    bytes_on_disk: int
    worst_miss: float  # the largest |tokens - length| / length over the items
    repeated: dict  # lang -> times the user's haystack was repeated to reach the longest length


def parse_lengths(text: str) -> tuple[int, ...]:
    """ "1k,2k,4k" -> (1024, 2048, 4096): k is 1024 (a "128K window" is 131072 tokens), m is 1024²."""
    out = []
    for part in _expand(text, "--lengths"):
        m = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmM]?)", part)
        if not m:
            raise HarnessError(f"--lengths: {part!r} is not a token count (write 4096, 4k or 1m)")
        value = float(m.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2).lower()]
        if value < 64:
            raise HarnessError(f"--lengths: {part!r} is too short for a needle item (at least 64 tokens)")
        out.append(int(value))
    return tuple(sorted(set(out)))


def parse_depths(text: str) -> tuple[float, ...]:
    """ "0,50,100" or "0,10,...,100" -> percent depths."""
    try:
        values = [float(p) for p in _expand(text, "--depths")]
    except ValueError:
        raise HarnessError(f"--depths: {text!r}: write percentages, e.g. 0,50,100 or 0,10,...,100") from None
    if any(not 0 <= v <= 100 for v in values):
        raise HarnessError(f"--depths: {text!r}: every depth is a percentage from 0 to 100")
    return tuple(sorted(set(values)))


def parse_counts(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(sorted({int(p) for p in text.split(",") if p.strip()}))
    except ValueError:
        raise HarnessError(f"{what}: {text!r}: write whole numbers, e.g. 1,3") from None
    if not values or any(v < 1 or v > 10 for v in values):
        raise HarnessError(f"{what}: {text!r}: between 1 and 10 needles per item")
    return values


def _expand(text: str, what: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if "..." in parts:
        i = parts.index("...")
        if i < 2 or i != len(parts) - 2:
            raise HarnessError(f"{what}: {text!r}: '...' needs two values before it and one after (0,10,...,100)")
        first, second, last = float(parts[i - 2]), float(parts[i - 1]), float(parts[-1])
        step = second - first
        if step <= 0:
            raise HarnessError(f"{what}: {text!r}: the values before '...' must rise")
        values, x = [], first
        while x <= last + 1e-9:
            values.append(f"{x:g}")
            x += step
        return parts[: i - 2] + values
    if not parts:
        raise HarnessError(f"{what}: give at least one value")
    return parts


@dataclass
class _Haystack:
    """One language's haystack: its text and, after each sentence, the character offset and tokens so far."""

    lang: str
    text: str
    ends: list[int]
    tokens: list[int]
    repeated: int = 1

    def cut_at(self, budget: int) -> int:
        """The index of the last sentence end whose tokens so far fit `budget` (-1: none fits)."""
        return bisect_right(self.tokens, budget) - 1


def _build_haystack(lang: str, options: NeedleOptions, counter: TokenCounter, need: int) -> _Haystack:
    """Sentences until the haystack holds `need` tokens (generated prose, or the user's text repeated)."""
    user = hay.read_user_haystack(options.haystack) if options.haystack else None
    ends: list[int] = []
    tokens: list[int] = []
    parts: list[str] = []
    chars = total = 0
    separator = counter.text("\n\n") if counter.exact else 0
    rounds = 0
    index = 0
    while total < need:
        if user is not None:
            if index == len(user):
                index, rounds = 0, rounds + 1
                if rounds > 10_000:
                    raise HarnessError(f"--haystack {options.haystack}: too little text to fill {need} tokens")
            paragraph = user[index]
        else:
            paragraph = hay.generate(lang, 1, seed=options.seed * 1_000_003 + index)[0]
        index += 1
        paragraph = re.sub(r"\{%(-?\s*endraw)", r"{ %\1", paragraph)  # the file is one raw block
        if parts:
            parts.append("\n\n")
            chars += 2
            total += separator
        for sentence in hay.sentences(paragraph):
            parts.append(sentence)
            chars += len(sentence)
            total += counter.text(sentence)
            ends.append(chars)
            tokens.append(total)
    return _Haystack(lang, "".join(parts), ends, tokens, rounds + 1)


def _facts(rng: random.Random, lang: str, n: int, distractors: int):
    """n needles and their distractors: (key, value) pairs; a distractor shares its needle's animal."""
    colours, animals = list(_COLOURS[lang]), list(_ANIMALS[lang])
    chosen_animals = rng.sample(animals, n)
    needles, traps = [], []
    used_codes: set[str] = set()

    def code() -> str:
        while True:
            c = str(rng.randrange(1_000_000, 10_000_000))
            if c not in used_codes:
                used_codes.add(c)
                return c

    for animal in chosen_animals:
        colour, *others = rng.sample(colours, 1 + min(distractors, len(colours) - 1))
        needles.append(((colour, animal), code()))
        for other in others:
            traps.append(((other, animal), code()))
    return needles, traps[:distractors]


def _fact_text(lang: str, key: tuple[str, str], value: str) -> str:
    colour, animal = key
    if lang == "zh":
        return f"{colour}{animal}的储物柜密码是{value}。"
    return f"The locker of the {colour} {animal} opens with the code {value}. "


def _question(lang: str, keys: list[tuple[str, str]]) -> str:
    if lang == "zh":
        names = "、".join(f"{c}{a}" for c, a in keys)
        if len(keys) == 1:
            return f"问题：{names}的储物柜密码是多少？只回答密码数字。"
        return f"问题：{names}的储物柜密码分别是多少？按这个顺序每行写一个密码，只写数字。"
    names = [f"the {c} {a}" for c, a in keys]
    if len(keys) == 1:
        return f"Question: what code opens the locker of {names[0]}? Answer with the code only."
    listed = ", ".join(names[:-1]) + f" and {names[-1]}"
    return (
        f"Question: what codes open the lockers of {listed}? Answer with the codes only, one per line, in that order."
    )


def render_user(intro: str, text: str, pieces: list, question: str) -> str:
    """What prompt.j2 renders for an item (the generator counts this; a test checks the two agree)."""
    body = "".join(text[a:b] + t for a, b, t in pieces)
    return f"{intro}\n\n{body}\n\n{question}".strip()


def _place(stack: _Haystack, cut_index: int, depth: float) -> int:
    """The character offset, among the start and the sentence ends up to the cut, nearest `depth` percent
    of the cut haystack's tokens."""
    if depth <= 0 or cut_index < 0:
        return 0
    target = stack.tokens[cut_index] * depth / 100
    i = bisect_right(stack.tokens, target, 0, cut_index + 1)  # the first sentence end past the target
    spots = [(0, 0)] + [(stack.tokens[j], stack.ends[j]) for j in (i - 1, i) if 0 <= j <= cut_index]
    return min(spots, key=lambda spot: abs(spot[0] - target))[1]


def _item(stack: _Haystack, counter: TokenCounter, options: NeedleOptions, length: int, depth: float, n: int) -> dict:
    lang = stack.lang
    rng = random.Random(f"needle-{options.seed}-{lang}-{length}-{depth}-{n}")
    needles, traps = _facts(rng, lang, n, options.distractors)
    question = _question(lang, [k for k, _ in needles])
    intro = _INTRO[lang]
    facts = [_fact_text(lang, k, v) for k, v in needles]
    trap_texts = [_fact_text(lang, k, v) for k, v in traps]
    bare = counter.prompt(render_user(intro, "", [(0, 0, "".join(facts + trap_texts))], question))
    cut = stack.cut_at(length - bare)
    if cut < 0:
        raise HarnessError(
            f"--lengths: {length} tokens cannot hold the question and {n} needle(s) ({bare} tokens); ask for more"
        )

    def build(end: int):
        last = bisect_right(stack.ends, end) - 1  # the last whole sentence before the haystack's end
        spots = [depth + i * (100 - depth) / n for i in range(n)] if n > 1 else [depth]
        inserts = [(min(_place(stack, last, d), end), i, t) for i, (d, t) in enumerate(zip(spots, facts))]
        for j, t in enumerate(trap_texts):
            inserts.append((stack.ends[rng.randrange(0, last + 1)] if last >= 0 else 0, n + j, t))
        inserts.sort()
        pieces, at = [], 0
        for pos, _, t in inserts:
            pieces.append([at, pos, t])
            at = pos
        pieces.append([at, end, ""])
        return pieces, counter.prompt(render_user(intro, stack.text, pieces, question))

    end = stack.ends[cut]
    pieces, tokens = build(end)
    tried = {end}
    for _ in range(4):
        # Sentences counted one by one add up to nearly, not exactly, the whole; and a length rarely falls
        # on a sentence's end: move the end by the missing tokens' worth of characters (whole words).
        miss = length - tokens
        if miss == 0:
            break
        i = min(bisect_right(stack.ends, end), len(stack.ends) - 1)
        start_of = stack.ends[i - 1] if i > 0 else 0
        per_token = (stack.ends[i] - start_of) / max(1, stack.tokens[i] - (stack.tokens[i - 1] if i > 0 else 0))
        moved = min(len(stack.text), max(0, end + round(miss * per_token)))
        if lang == "en":  # end after a space: no word cut in two
            back = fwd = moved
            while back > 0 and not stack.text[back - 1].isspace():
                back -= 1
            while fwd < len(stack.text) and not stack.text[fwd - 1].isspace():
                fwd += 1
            moved = back if miss < 0 or back > end else fwd
        if moved in tried:
            break
        tried.add(moved)
        candidate = build(moved)
        if abs(candidate[1] - length) < abs(tokens - length):
            end, (pieces, tokens) = moved, candidate
        else:
            break
    depth_id = f"{depth:g}"
    item_id = f"{lang}-len{length}-depth{depth_id}-n{n}" + (f"-x{options.distractors}" if options.distractors else "")
    return {
        "id": item_id,
        "group": f"{lang}-{length}",
        "lang": lang,
        "length": length,
        "depth": depth,
        "needles": n,
        "distractors": len(traps),
        "tokens": tokens,
        "haystack": f"haystack-{lang}.j2",
        "intro": intro,
        "pieces": pieces,
        "question": question,
        "values": [v for _, v in needles],
        "distractor_values": [v for _, v in traps],
        "answer": "\n".join(v for _, v in needles),
    }


def make_needle_suite(out: Path, options: NeedleOptions, counter: TokenCounter) -> NeedleSuite:
    """Write the suite folder at `out` (a new or empty folder) and describe what was written."""
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HarnessError(f"--out {out}: exists and is not an empty folder; name a new folder")
    for lang in options.langs:
        if lang not in LANGS:
            raise HarnessError(f"--lang {lang}: write en, zh or en,zh")
    need = int(max(options.lengths) * 1.1) + 256  # sentences counted alone add up to a little more than the whole
    stacks = {lang: _build_haystack(lang, options, counter, need) for lang in options.langs}
    items = [
        _item(stacks[lang], counter, options, length, depth, n)
        for lang in options.langs
        for length in options.lengths
        for depth in options.depths
        for n in options.needles
    ]
    out.mkdir(parents=True, exist_ok=True)
    for lang, stack in stacks.items():
        (out / f"haystack-{lang}.j2").write_text("{% raw %}" + stack.text + "{% endraw %}", encoding="utf-8")
    (out / "prompt.j2").write_text(TEMPLATE, encoding="utf-8")
    with open(out / "items.jsonl", "w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")
    source = f"your text ({Path(options.haystack).name})" if options.haystack else "generated prose"
    config = {
        "name": out.name,
        "description": (
            f"Needle in a haystack ({', '.join(options.langs)}; {source}): codes hidden at known depths in "
            f"prompts of known length, graded by exact recall. Token counts: {counter.name}."
        ),
        "family": LONG_CONTEXT_FAMILY,
        "version": 1,
        "data": "items.jsonl",
        "id_field": "id",
        "group_field": "group",
        "reference_field": "answer",
        "reference_response": "{{ answer }}",
        "template": "prompt.j2",
        "grader": {"name": "needle", "options": {}},
        "generation": {"max_tokens": 16 + 16 * max(options.needles), "temperature": 0.0},
    }
    (out / "suite.yaml").write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    size = sum(p.stat().st_size for p in out.iterdir())
    worst = max(abs(i["tokens"] - i["length"]) / i["length"] for i in items)
    return NeedleSuite(
        out, len(items), counter.name, counter.exact, size, worst, {k: s.repeated for k, s in stacks.items()}
    )
