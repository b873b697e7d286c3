"""Instruction encoders: does a new phrasing land nearest to the right task?

    .venv/bin/python bench/language.py [--encoders e5,minilm,hash] [--out FILE.json]

For each shipped task, the phrasings in its YAML (``instructions.en`` and ``.ja``) are the
"training" phrasings; their mean embedding is the task's centroid. The held-out phrasings below
(5 English and 5 Japanese per task, none in the YAML) are each assigned to the task whose
centroid is nearest by cosine similarity. Accuracy is reported per encoder and language, plus a
variant with every embedding centred on the mean training embedding (it removes the common
direction that makes all e5 similarities ~0.9). ``hash`` is measured untrained: raw hashed
n-gram overlap, before any training shapes its projection. Writes bench/results/language.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from kizuna.task import load_task, shipped_tasks  # noqa: E402
from policies.vla.language import is_available, make_encoder  # noqa: E402

HELD_OUT: dict[str, dict[str, list[str]]] = {
    "pick_place": {
        "en": [
            "drop the red cube into the blue bin",
            "put the red block in the box",
            "grab the red cube and place it inside the bin",
            "lift the red cube and put it into the blue container",
            "load the red cube into the bin",
        ],
        "ja": [
            "赤いキューブを青い箱に入れてください",
            "赤いブロックを箱の中に置いて",
            "赤いキューブをつかんで箱に入れて",
            "赤い立方体をビンに入れて",
            "赤いキューブを持ち上げて青いコンテナに入れて",
        ],
    },
    "push": {
        "en": [
            "push the red block to the green area",
            "slide the red cube into the green zone",
            "nudge the red cube onto the green patch",
            "shove the red cube over to the green square",
            "push the red box until it is in the green region",
        ],
        "ja": [
            "赤いキューブを緑のゾーンまで押して",
            "赤いブロックを緑のエリアへ押して動かして",
            "赤いキューブを緑の四角に滑らせて",
            "赤い立方体を緑の領域に押し込んで",
            "赤いキューブを押して緑の場所に移動させて",
        ],
    },
    "reach": {
        "en": [
            "move your gripper to the green marker",
            "reach for the green ball",
            "touch the green dot",
            "put the gripper on the green target",
            "go to the green sphere",
        ],
        "ja": [
            "緑のマーカーまでグリッパーを動かして",
            "緑のボールに触れて",
            "緑の点に手を伸ばして",
            "グリッパーを緑のターゲットに移動して",
            "緑の球に触って",
        ],
    },
    "stack": {
        "en": [
            "stack the red block on the blue block",
            "put the red cube on top of the blue cube",
            "place the red cube onto the blue block",
            "set the red cube on the blue one",
            "build a tower with the red cube on the blue cube",
        ],
        "ja": [
            "赤いブロックを青いブロックの上に積んで",
            "赤いキューブを青いキューブに重ねて",
            "青いキューブの上に赤いキューブを置いて",
            "赤い立方体を青い立方体の上に乗せて",
            "赤いキューブを青いブロックの上に積み上げて",
        ],
    },
    "insert": {
        "en": [
            "insert the yellow peg into the hole",
            "put the peg in the hole",
            "push the peg into the socket",
            "fit the yellow peg into the fixture",
            "slide the peg down into the hole",
        ],
        "ja": [
            "黄色いペグを穴に入れて",
            "ペグを穴に差し込んで",
            "ペグをソケットに挿して",
            "黄色いペグを治具に挿入して",
            "ペグを穴に押し込んで",
        ],
    },
}
LANGUAGES = ("en", "ja")


def training_phrasings() -> dict[str, list[str]]:
    """Each shipped task's YAML phrasings, all languages."""
    return {
        name: [s for texts in load_task(name).instructions.values() for s in texts]
        for name in shipped_tasks()
    }


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def evaluate(encoder_name: str, train: dict[str, list[str]]) -> dict:
    start = time.perf_counter()
    encoder = make_encoder(encoder_name)
    load_s = time.perf_counter() - start
    tasks = sorted(train)
    train_vectors = {t: encoder.encode(train[t]) for t in tasks}
    held = [(t, lang, s) for t in tasks for lang in LANGUAGES for s in HELD_OUT[t][lang]]
    start = time.perf_counter()
    queries = encoder.encode([s for _, _, s in held])
    ms_per_sentence = 1000 * (time.perf_counter() - start) / len(held)
    offset = np.concatenate(list(train_vectors.values())).mean(axis=0)
    result: dict = {"dim": encoder.dim, "load_s": round(load_s, 3)}
    result["ms_per_sentence"] = round(ms_per_sentence, 2)
    for variant, shift in (("raw", 0.0), ("centred", offset)):
        centroids = unit(np.stack([unit(train_vectors[t] - shift).mean(axis=0) for t in tasks]))
        predicted = np.argmax(unit(queries - shift) @ centroids.T, axis=1)
        accuracy, misses = {}, []
        for lang in LANGUAGES:
            rows = [i for i, (_, q_lang, _) in enumerate(held) if q_lang == lang]
            right = [tasks[predicted[i]] == held[i][0] for i in rows]
            accuracy[lang] = round(float(np.mean(right)), 3)
            misses += [
                f"{held[i][2]} -> {tasks[predicted[i]]} (is {held[i][0]})"
                for i, ok in zip(rows, right, strict=True)
                if not ok
            ]
        result[variant] = {"accuracy": accuracy, "misses": misses}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoders", default="e5,minilm,hash")
    parser.add_argument("--out", default="bench/results/language.json")
    args = parser.parse_args()
    train = training_phrasings()
    for task, langs in HELD_OUT.items():  # held out means held out
        overlap = {s for texts in langs.values() for s in texts} & set(train[task])
        assert not overlap, f"{task}: held-out phrasings also in the YAML: {overlap}"
    results = {}
    for name in args.encoders.split(","):
        if not is_available(name):
            results[name] = {"available": False}
            print(f"{name:<7} not installed (pip install 'kizuna[vla]')")
            continue
        results[name] = {"available": True, **evaluate(name, train)}
        r = results[name]
        print(
            f"{name:<7} en {r['raw']['accuracy']['en']:.0%}  ja {r['raw']['accuracy']['ja']:.0%}"
            f"   centred: en {r['centred']['accuracy']['en']:.0%}  "
            f"ja {r['centred']['accuracy']['ja']:.0%}   {r['ms_per_sentence']:.1f} ms/sentence"
        )
    report = {
        "what": "nearest-task accuracy of held-out phrasings (cosine to the task's mean "
        "YAML-phrasing embedding)",
        "held_out_per_task": {lang: 5 for lang in LANGUAGES},
        "tasks": sorted(train),
        "machine": platform.processor() or platform.machine(),
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
