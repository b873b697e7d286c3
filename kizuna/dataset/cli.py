"""``kizuna dataset info | check | merge``: the dataset station's command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from kizuna.dataset.check import check_dataset
from kizuna.dataset.meta import DatasetError, summarize
from kizuna.dataset.reader import DatasetReader


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dataset_command", metavar="{info,check,merge}")
    info = sub.add_parser("info", help="episodes, frames, tasks, sources, success rate, size")
    info.add_argument("path", help="dataset folder (holds meta/info.json)")
    info.add_argument("--json", action="store_true", help="print one JSON object instead")
    check = sub.add_parser("check", help="verify every file; exit 1 on problems")
    check.add_argument("path", help="dataset folder")
    check.add_argument(
        "--decode-images",
        action="store_true",
        help="also decode every video and compare its image stats (slower)",
    )
    check.add_argument(
        "--repair",
        action="store_true",
        help="first remove what an interrupted write left and rebuild info/stats/tasks "
        "(never touches complete episodes)",
    )
    merge = sub.add_parser("merge", help="combine datasets (e.g. sim + real) into a new one")
    merge.add_argument("sources", nargs="+", metavar="SRC", help="dataset folders, in order")
    merge.add_argument("--out", required=True, metavar="DEST", help="destination folder")


def main(args: argparse.Namespace) -> int:
    commands = {"info": _info, "check": _check, "merge": _merge}
    if args.dataset_command not in commands:
        print("usage: kizuna dataset {info,check,merge} ... (see --help)", file=sys.stderr)
        return 2
    try:
        return commands[args.dataset_command](args)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def dataset_info(root: str | Path) -> dict[str, Any]:
    """What ``kizuna dataset info`` prints, as a dict (from the episode rows, not caches)."""
    reader = DatasetReader(root)
    summary = summarize(reader.rows, reader.features)
    size = sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())
    return {
        "path": str(root),
        "codebase_version": reader.info.get("codebase_version"),
        "robot_type": reader.info.get("robot_type"),
        "episodes": summary.episodes,
        "frames": summary.frames,
        "fps": reader.fps,
        "duration_s": round(summary.frames / reader.fps, 2),
        "tasks": summary.counts("instruction"),
        "sources": {"sim": 0, "real": 0, **summary.counts("source")},
        "success_episodes": summary.successes,
        "success_rate": summary.successes / summary.episodes if summary.episodes else None,
        "intervention_frames": summary.intervention_frames,
        "cameras": {key: reader.features[key]["shape"][:2] for key in reader.video_keys},
        "size_bytes": size,
    }


def _info(args: argparse.Namespace) -> int:
    info = dataset_info(args.path)
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    rate = info["success_rate"]
    cameras = ", ".join(f"{k.split('.')[-1]} {h}x{w}" for k, (h, w) in info["cameras"].items())
    lines = [
        f"dataset      {info['path']}  (LeRobot {info['codebase_version']})",
        f"robot        {info['robot_type']}",
        f"episodes     {info['episodes']}  (sim {info['sources']['sim']}, "
        f"real {info['sources']['real']})",
        f"frames       {info['frames']} at {info['fps']} fps ({info['duration_s']} s)",
        f"success      {info['success_episodes']}/{info['episodes']}"
        + (f" ({rate:.1%})" if rate is not None else ""),
        f"intervention {info['intervention_frames']} frames",
        f"cameras      {cameras or 'none'}",
        f"size         {info['size_bytes'] / 1e6:.1f} MB",
        f"tasks        {len(info['tasks'])}",
    ]
    lines += [f"  {count:>6}  {task}" for task, count in info["tasks"].items()]
    print("\n".join(lines))
    return 0


def _check(args: argparse.Namespace) -> int:
    if args.repair:
        from kizuna.dataset.writer import DatasetWriter

        DatasetWriter.open(args.path).close()  # opening cleans up and rebuilds the caches
        print(f"repaired {args.path}: leftovers removed, info/stats/tasks rebuilt")
    report = check_dataset(args.path, decode_images=args.decode_images)
    for line in report.lines():
        print(line)
    status = "ok" if report.ok else f"{len(report.errors)} problem(s)"
    print(f"{status}: {report.episodes} episodes, {report.frames} frames checked in {args.path}")
    return 0 if report.ok else 1


def _merge(args: argparse.Namespace) -> int:
    from kizuna.dataset.merge import merge_datasets

    placed = merge_datasets(args.sources, args.out)
    for source, episodes in placed:
        where = f" -> {episodes.start}..{episodes.stop - 1}" if episodes else ""
        print(f"{source}: {len(episodes)} episodes{where}")
    total = sum(len(e) for _, e in placed)
    print(f"merged {total} episodes from {len(placed)} datasets into {args.out}")
    return 0
