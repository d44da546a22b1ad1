"""Filler prose for needle suites, generated here from word lists (English and Chinese), or a user's own text.

The generated text is plain, varied and dull on purpose: sentences about towns, crafts and weather,
none of which states a code, a number to remember or anything a needle question could be answered from.
Deterministic for a seed, so a suite rebuilt with the same options is byte-identical.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from harness.errors import HarnessError

_EN_SUBJECTS = (
    "the old harbour",
    "a quiet valley",
    "the river town",
    "the hill farms",
    "a mountain village",
    "the market square",
    "the northern forest",
    "a small bakery",
    "the village school",
    "the stone bridge",
    "a weaver's workshop",
    "the railway station",
    "the orchard",
    "the lighthouse",
    "a potter's yard",
    "the coastal road",
    "the town library",
    "a fishing crew",
    "the salt marsh",
    "the copper mine",
)
_EN_VERBS = (
    "changes slowly with the seasons",
    "is busiest in the early morning",
    "was rebuilt after a long winter",
    "draws visitors from the nearby towns",
    "keeps its own quiet routines",
    "smells of rain and cut grass",
    "has stories that older people still tell",
    "is shaped by the wind from the sea",
    "depends on work done carefully by hand",
    "looks different under a grey sky",
    "is remembered for a festival each autumn",
    "follows the rhythm of the tides",
)
_EN_DETAILS = (
    "Bread is baked before dawn and sold warm.",
    "Children walk along the path to school in pairs.",
    "Fishermen mend their nets while the gulls wait.",
    "A cart carries apples down to the square.",
    "The clock on the hall strikes every hour.",
    "Smoke rises from chimneys on cold evenings.",
    "Wool is dyed in large pots behind the workshop.",
    "Travellers stop to rest beside the well.",
    "Lanterns are lit along the lane at dusk.",
    "Rain gathers in the furrows of the fields.",
    "Swallows nest under the eaves each spring.",
    "Shopkeepers sweep the steps before opening.",
    "The ferry crosses twice a day when the water is calm.",
    "Farmers trade seeds and advice at the fair.",
    "An old map of the coast hangs in the inn.",
    "Tea is served in thick cups at the station.",
)
_EN_LINKS = ("In the afternoon,", "Over the years,", "On most days,", "Later in the year,", "Even so,", "By evening,")
_EN_OBSERVATIONS = (
    "people speak of {s} as a place where little hurries",
    "the light on {s} turns gold and then blue",
    "new families settle near {s} and learn its habits",
    "the paths around {s} fill with fallen leaves",
    "music can be heard drifting from {s}",
    "everyone agrees that {s} is worth the walk",
)

_ZH_SUBJECTS = (
    "老港口",
    "安静的山谷",
    "河边小镇",
    "山坡上的农田",
    "高山村庄",
    "集市广场",
    "北边的森林",
    "街角的面包店",
    "村里的学校",
    "石拱桥",
    "织布作坊",
    "火车站",
    "果园",
    "灯塔",
    "陶器院子",
    "沿海公路",
    "镇图书馆",
    "渔船队",
    "盐沼地",
    "铜矿",
)
_ZH_VERBS = (
    "随着季节慢慢变化",
    "在清晨最为热闹",
    "在一个漫长的冬天之后重建",
    "吸引着附近城镇的来客",
    "保持着自己安静的习惯",
    "带着雨水和青草的气味",
    "有许多老人仍在讲述的故事",
    "被海上吹来的风塑造",
    "依靠细心的手工劳动",
    "在阴天里显得格外不同",
    "因每年秋天的节日而被人记住",
    "跟随潮水的节奏",
)
_ZH_DETAILS = (
    "面包在天亮之前烤好，趁热出售。",
    "孩子们两两结伴沿小路去上学。",
    "渔民修补渔网，海鸥在一旁等候。",
    "一辆马车把苹果运到广场上。",
    "礼堂上的钟每个整点都会敲响。",
    "寒冷的傍晚，烟从烟囱里升起。",
    "羊毛在作坊后面的大锅里染色。",
    "旅人在井边停下来休息。",
    "黄昏时小巷里的灯笼一盏盏亮起。",
    "雨水积在田垄之间。",
    "每年春天燕子都在屋檐下筑巢。",
    "店主们开门前先把台阶扫干净。",
    "水面平静时渡船一天往返两次。",
    "农民在集市上交换种子和经验。",
    "客栈里挂着一张海岸的旧地图。",
    "车站里的茶装在厚厚的杯子里。",
)
_ZH_LINKS = ("到了下午，", "多年以来，", "大多数日子里，", "到了年底，", "即便如此，", "到了傍晚，")
_ZH_OBSERVATIONS = (
    "人们说{s}是一个不急不忙的地方",
    "{s}上的光先变成金色又变成蓝色",
    "新来的人家在{s}附近安顿下来",
    "{s}周围的小路铺满了落叶",
    "从{s}传来隐约的音乐",
    "大家都觉得{s}值得走一趟",
)


def generate(lang: str, min_chars: int, seed: int = 0) -> list[str]:
    """Paragraphs of generated prose in `lang` ("en" or "zh"), together at least `min_chars` long."""
    rng = random.Random(f"haystack-{lang}-{seed}")
    paragraphs: list[str] = []
    total = 0
    while total < min_chars:
        para = _paragraph(rng, lang)
        paragraphs.append(para)
        total += len(para) + 2
    return paragraphs


def _paragraph(rng: random.Random, lang: str) -> str:
    if lang == "zh":
        subject = rng.choice(_ZH_SUBJECTS)
        parts = [f"{subject}{rng.choice(_ZH_VERBS)}。"]
        for _ in range(rng.randint(3, 6)):
            if rng.random() < 0.5:
                parts.append(rng.choice(_ZH_DETAILS))
            else:
                other = rng.choice(_ZH_SUBJECTS)
                parts.append(rng.choice(_ZH_LINKS) + rng.choice(_ZH_OBSERVATIONS).format(s=other) + "。")
        return "".join(parts)
    subject = rng.choice(_EN_SUBJECTS)
    parts = [f"{subject[0].upper()}{subject[1:]} {rng.choice(_EN_VERBS)}."]
    for _ in range(rng.randint(3, 6)):
        if rng.random() < 0.5:
            parts.append(rng.choice(_EN_DETAILS))
        else:
            other = rng.choice(_EN_SUBJECTS)
            parts.append(f"{rng.choice(_EN_LINKS)} {rng.choice(_EN_OBSERVATIONS).format(s=other)}.")
    return " ".join(parts)


_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*")


def sentences(paragraph: str) -> list[str]:
    """A paragraph cut after each sentence's end mark; the pieces joined give the paragraph back."""
    pieces, start = [], 0
    for m in _SENTENCE_END.finditer(paragraph):
        if m.end() > start and m.start() > start:
            pieces.append(paragraph[start : m.end()])
            start = m.end()
    if start < len(paragraph):
        pieces.append(paragraph[start:])
    return pieces


def read_user_haystack(path: str | Path) -> list[str]:
    """A user's own documents as paragraphs (blank-line separated); one line naming the file if unusable."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HarnessError(f"--haystack {p}: file not found; give a UTF-8 text file of your own documents") from None
    except UnicodeDecodeError:
        raise HarnessError(f"--haystack {p}: not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise HarnessError(f"--haystack {p}: cannot read it ({exc.strerror})") from None
    paragraphs = [" ".join(block.split()) for block in re.split(r"\n\s*\n", text)]
    paragraphs = [para for para in paragraphs if para]
    if not paragraphs:
        raise HarnessError(f"--haystack {p}: the file holds no text")
    return paragraphs
