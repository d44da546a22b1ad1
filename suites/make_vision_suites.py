"""Write the bundled vision suites' images and items (chart-read, doc-read, diagram-mcq), deterministically.

Run from the repository root: `python suites/make_vision_suites.py`. The PNGs it writes are committed
(small palette PNGs, about 1-2 MB for all three suites), so tests and users never need matplotlib's
fonts or a Chinese font; rerunning it with the same Pillow/matplotlib and fonts rewrites the same
files. doc-read's Chinese documents need a CJK font (Debian: fonts-wqy-microhei).

Each PNG carries its answer in a PNG text chunk named "answer": servers decode pixels and never see
it; the test suite's fake server reads it to "see" the image, which proves the bytes arrived intact.
"""

from __future__ import annotations

import io
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUARTERS = ["Q1", "Q2", "Q3", "Q4"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun"]
EN_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
ZH_FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"


def _save_png(image, path: Path, answer: str) -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("answer", answer)
    # 64 colours: charts and documents are flat colours and text; a palette keeps each file ~10-20 KB.
    small = image.convert("RGB").quantize(colors=64, method=2, dither=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    small.save(path, format="PNG", pnginfo=info, optimize=True)


def _figure_png(fig) -> "object":
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, metadata={"Software": None})
    buf.seek(0)
    return Image.open(buf).copy()


def _write_items(folder: Path, rows: list[dict]) -> None:
    with open(folder / "items.jsonl", "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


# -- chart-read --------------------------------------------------------------------------


def make_charts(folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "harness"
    rng = random.Random(2025)
    metrics = [
        ("revenue", "Revenue", "$M"),
        ("users", "Active users", "thousand"),
        ("orders", "Orders", "thousand"),
        ("costs", "Cloud costs", "$K"),
        ("tickets", "Support tickets", "hundred"),
    ]
    rows = []
    for index in range(40):
        key, label, unit = metrics[index % len(metrics)]
        kind = "bar" if index % 2 == 0 else "line"
        year = 2019 + index % 6
        periods = QUARTERS if kind == "bar" else MONTHS
        values = [round(rng.uniform(12, 95), 1) for _ in periods]
        asked = rng.randrange(len(periods))
        fig, ax = plt.subplots(figsize=(6, 4))
        if kind == "bar":
            bars = ax.bar(periods, values, color=["#4C72B0", "#55A868", "#C44E52", "#8172B2"])
            ax.bar_label(bars, labels=[f"{v:g}" for v in values], padding=2)
        else:
            ax.plot(periods, values, marker="o", color="#C44E52")
            for x, v in zip(periods, values):
                ax.annotate(f"{v:g}", (x, v), textcoords="offset points", xytext=(0, 6), ha="center")
        ax.set_ylim(0, 110)
        ax.set_title(f"{label} {year} ({unit})")
        ax.set_ylabel(unit)
        fig.tight_layout()
        name = f"images/{index:02d}-{kind}-{key}.png"
        answer = f"{values[asked]:g}"
        _save_png(_figure_png(fig), folder / name, answer)
        plt.close(fig)
        period_word = "quarter" if kind == "bar" else "month"
        rows.append(
            {
                "id": f"chart-read/{index:02d}",
                "kind": kind,
                "question": f"What was the {label.lower()} in {periods[asked]} {year}, in {unit}? ({period_word}ly chart)",
                "answer": answer,
                "images": [name],
            }
        )
    _write_items(folder, rows)


# -- doc-read ----------------------------------------------------------------------------

EN_SHOPS = ["Bluebird Cafe", "Northwind Market", "Harbor Hardware", "Maple Books", "Cedar Pharmacy"]
ZH_SHOPS = ["青山便利店", "东方书店", "阳光超市", "长江药房", "明月茶馆"]
EN_ITEMS = ["Coffee", "Bagel", "Notebook", "Batteries", "Tea", "Soap", "Pencils", "Milk"]
ZH_ITEMS = ["咖啡", "面包", "笔记本", "电池", "绿茶", "香皂", "铅笔", "牛奶"]
ZH_NAMES = ["张伟", "李娜", "王芳", "刘洋", "陈静", "杨磊"]
EN_NAMES = ["Alice Morgan", "Ben Carter", "Chloe Diaz", "David Evans", "Emma Fischer", "Frank Green"]
ZH_CITIES = ["北京市", "上海市", "广州市", "成都市", "杭州市"]
EN_CITIES = ["Springfield", "Riverton", "Lakeside", "Fairview", "Oakdale"]


def _font(path: str, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


def _receipt(rng: random.Random, zh: bool):
    from PIL import Image, ImageDraw

    font_path = ZH_FONT if zh else EN_FONT
    big, small = _font(font_path, 22), _font(font_path, 17)
    shop = rng.choice(ZH_SHOPS if zh else EN_SHOPS)
    names = ZH_ITEMS if zh else EN_ITEMS
    lines = [(rng.choice(names), rng.randint(1, 4), round(rng.uniform(1.5, 30), 2)) for _ in range(rng.randint(3, 5))]
    total = sum(q * p for _, q, p in lines)
    number = f"{rng.randint(10000, 99999)}"
    date = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    image = Image.new("RGB", (420, 150 + 30 * len(lines) + 110), "white")
    draw = ImageDraw.Draw(image)
    draw.text((20, 15), shop, font=big, fill="black")
    draw.text((20, 50), (f"小票号：{number}" if zh else f"Receipt No. {number}"), font=small, fill="black")
    draw.text((20, 75), (f"日期：{date}" if zh else f"Date: {date}"), font=small, fill="black")
    y = 115
    for name, qty, price in lines:
        draw.text((20, y), f"{name} x{qty}", font=small, fill="black")
        draw.text((300, y), f"{qty * price:.2f}", font=small, fill="black")
        y += 30
    draw.line((20, y + 5, 400, y + 5), fill="black", width=2)
    draw.text((20, y + 15), ("合计" if zh else "TOTAL"), font=big, fill="black")
    draw.text((290, y + 15), f"{total:.2f}", font=big, fill="black")
    fields = {"total": f"{total:.2f}", "number": number, "date": date, "shop": shop}
    return image, fields


def _form(rng: random.Random, zh: bool):
    from PIL import Image, ImageDraw

    font_path = ZH_FONT if zh else EN_FONT
    big, small = _font(font_path, 22), _font(font_path, 18)
    name = rng.choice(ZH_NAMES if zh else EN_NAMES)
    city = rng.choice(ZH_CITIES if zh else EN_CITIES)
    phone = f"1{rng.randint(30, 89)}{rng.randint(1000, 9999)}{rng.randint(1000, 9999)}"
    member = f"M-{rng.randint(1000, 9999)}"
    labels = (
        ["会员登记表", "姓名", "城市", "电话", "会员号"]
        if zh
        else ["Membership Form", "Name", "City", "Phone", "Member ID"]
    )
    image = Image.new("RGB", (460, 260), "white")
    draw = ImageDraw.Draw(image)
    draw.text((20, 15), labels[0], font=big, fill="black")
    y = 65
    for label, value in zip(labels[1:], (name, city, phone, member)):
        draw.rectangle((20, y - 4, 440, y + 30), outline="gray")
        draw.text((30, y), f"{label}:", font=small, fill="black")
        draw.text((170, y), value, font=small, fill="black")
        y += 45
    return image, {"name": name, "city": city, "phone": phone, "member": member}


def make_documents(folder: Path) -> None:
    rng = random.Random(4242)
    questions = {
        ("receipt", False): [
            ("total", "What is the total amount on this receipt?"),
            ("number", "What is the receipt number?"),
            ("date", "What date is printed on this receipt (YYYY-MM-DD)?"),
            ("shop", "What is the name of the shop on this receipt?"),
        ],
        ("receipt", True): [
            ("total", "这张小票的合计金额是多少？"),
            ("number", "这张小票的小票号是多少？"),
            ("date", "这张小票上的日期是哪天（YYYY-MM-DD）？"),
            ("shop", "这张小票是哪家店开的？"),
        ],
        ("form", False): [
            ("name", "What name is written on this form?"),
            ("city", "Which city is written on this form?"),
            ("phone", "What phone number is on this form?"),
            ("member", "What is the member ID on this form?"),
        ],
        ("form", True): [
            ("name", "这张表上填写的姓名是什么？"),
            ("city", "这张表上填写的城市是哪里？"),
            ("phone", "这张表上的电话号码是多少？"),
            ("member", "这张表上的会员号是什么？"),
        ],
    }
    rows = []
    for index in range(40):
        zh = index >= 20
        kind = "receipt" if index % 2 == 0 else "form"
        image, fields = _receipt(rng, zh) if kind == "receipt" else _form(rng, zh)
        field, question = questions[(kind, zh)][(index // 2) % 4]
        lang = "zh" if zh else "en"
        name = f"images/{lang}-{index:02d}-{kind}.png"
        _save_png(image, folder / name, fields[field])
        rows.append(
            {
                "id": f"doc-read/{lang}/{index:02d}",
                "lang": lang,
                "kind": kind,
                "question": question,
                "answer": fields[field],
                "images": [name],
            }
        )
    _write_items(folder, rows)


# -- diagram-mcq -------------------------------------------------------------------------

COMPONENTS = [
    "Load Balancer",
    "API Gateway",
    "Auth Service",
    "Order Service",
    "Payment Service",
    "Cache",
    "Database",
    "Queue",
    "Worker",
    "Search Index",
    "CDN",
    "Object Store",
]


def make_diagrams(folder: Path) -> None:
    from PIL import Image, ImageDraw

    rng = random.Random(77)
    font = _font(EN_FONT, 16)
    rows = []
    for index in range(40):
        chain = rng.sample(COMPONENTS, 5)
        # A chain of four boxes left to right, with a fifth box branching off the second.
        image = Image.new("RGB", (760, 300), "white")
        draw = ImageDraw.Draw(image)
        boxes = [(20 + i * 190, 60, 170 + i * 190, 120) for i in range(4)]
        boxes.append((210, 200, 360, 260))
        for (x0, y0, x1, y1), name in zip(boxes, chain):
            draw.rounded_rectangle((x0, y0, x1, y1), radius=10, outline="#1f4e79", width=3, fill="#eaf1fb")
            w = draw.textlength(name, font=font)
            draw.text(((x0 + x1 - w) / 2, (y0 + y1) / 2 - 9), name, font=font, fill="black")
        edges = [(0, 1), (1, 2), (2, 3), (1, 4)]
        for a, b in edges:
            ax0, ay0, ax1, ay1 = boxes[a]
            bx0, by0, bx1, by1 = boxes[b]
            if b == 4:
                start, end = ((ax0 + ax1) / 2, ay1), ((bx0 + bx1) / 2, by0)
            else:
                start, end = (ax1, (ay0 + ay1) / 2), (bx0, (by0 + by1) / 2)
            draw.line((*start, *end), fill="black", width=3)
            ex, ey = end
            if b == 4:
                draw.polygon([(ex, ey), (ex - 7, ey - 12), (ex + 7, ey - 12)], fill="black")
            else:
                draw.polygon([(ex, ey), (ex - 12, ey - 7), (ex - 12, ey + 7)], fill="black")
        kind = index % 4
        if kind == 0:
            question, answer = f"Which component receives requests directly from the {chain[0]}?", chain[1]
        elif kind == 1:
            question, answer = f"Which component sends requests directly to the {chain[3]}?", chain[2]
        elif kind == 2:
            question, answer = "Which component is the entry point (has no incoming arrow)?", chain[0]
        else:
            question, answer = f"Besides the {chain[2]}, which component does the {chain[1]} send to?", chain[4]
        distractors = [c for c in chain if c != answer]
        rng.shuffle(distractors)
        options = [answer] + distractors[:3]
        rng.shuffle(options)
        letter = "ABCD"[options.index(answer)]
        name = f"images/{index:02d}-flow.png"
        _save_png(image, folder / name, letter)
        rows.append(
            {
                "id": f"diagram-mcq/{index:02d}",
                "question": question,
                "A": options[0],
                "B": options[1],
                "C": options[2],
                "D": options[3],
                "answer": letter,
                "images": [name],
            }
        )
    _write_items(folder, rows)


def main() -> None:
    which = sys.argv[1:] or ["chart-read", "doc-read", "diagram-mcq"]
    makers = {"chart-read": make_charts, "doc-read": make_documents, "diagram-mcq": make_diagrams}
    for name in which:
        makers[name](HERE / name)
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
