"""Leaderboard result files and the ranked table a hackathon builds from them.

``kizuna eval checkpoint=... task=reach leaderboard=true submitter=team-a`` evaluates on the
fixed seeds (``LEADERBOARD_SEED`` + k, nominal simulator) and writes ``leaderboard.json``
next to ``report.json``: everything needed to check that two results are comparable (task
spec, reality profile and checkpoint hashes, seeds, episode count, kizuna version).

``kizuna leaderboard merge results/*.json --out board.html`` ranks the files of one task by
success rate, then by mean time to success, and refuses files that were not scored on the
same task spec, profile, seeds and episode count, naming the file that differs.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SCHEMA = "kizuna-leaderboard/1"
LEADERBOARD_SEED = 1000  # every submission meets the same cells: seeds 1000, 1001, ...
RESULT_FILE = "leaderboard.json"
# Keys two results must share to be ranked together.
COMPARABLE = ("task", "task_spec_sha256", "episodes", "seeds", "reality_sha256", "randomization")
POLICY_FILES = (
    "config.json",
    "model.safetensors",
    "normalization.json",
    "language_cache.safetensors",
)


class LeaderboardError(ValueError):
    """Result files that cannot be read or ranked together; names the file and the key."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_sha256(path: str | Path | None) -> str | None:
    """One hash over a checkpoint's model files (a VLA's four policy files; else every file at
    the top of the directory), so a re-saved but identical model hashes the same."""
    if path is None or not Path(path).is_dir():
        return None
    root = Path(path)
    files = [root / f for f in POLICY_FILES if (root / f).is_file()]
    if not files:
        files = sorted(p for p in root.iterdir() if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.name}:{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def task_spec_sha256(task: str) -> str:
    """sha256 of the validated spec's canonical JSON (formatting and key order do not count)."""
    from kizuna.task import load_task

    canonical = json.dumps(
        load_task(task).model_dump(mode="json"), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def reality_sha256(reality: str | None) -> str | None:
    """sha256 of the reality profile file (``None``: the nominal simulator)."""
    if not reality:
        return None
    from kizuna.paths import config_dir

    path = Path(reality)
    if path.suffix not in (".yaml", ".yml"):
        path = config_dir() / "reality" / f"{reality}.yaml"
    return sha256_file(path)


def leaderboard_config(cfg: Any) -> Any:
    """An ``EvalConfig`` with the leaderboard's fixed settings: seeds ``LEADERBOARD_SEED`` + k
    and no domain randomization (the episode count and reality profile are the organisers')."""
    import dataclasses

    return dataclasses.replace(cfg, seed=LEADERBOARD_SEED, randomization="none")


def result_record(report: Mapping[str, Any], submitter: str) -> dict[str, Any]:
    """The leaderboard record of one evaluated task (``report``: ``EvalReport.as_dict()``)."""
    times = [e["time_to_success_s"] for e in report["per_episode"] if e["success"]]
    return {
        "schema": SCHEMA,
        "submitter": submitter,
        "task": report["task"],
        "task_spec_sha256": task_spec_sha256(report["task_source"]),
        "reality": report["reality"],
        "reality_sha256": reality_sha256(report["reality"]),
        "randomization": report["randomization"],
        "backend": report["backend"],
        "episodes": report["episodes"],
        "seeds": report["seeds"],
        "kizuna_version": report["kizuna_version"],
        "checkpoint": report["checkpoint"],
        "checkpoint_sha256": checkpoint_sha256(report["checkpoint"]),
        "policy": report["policy"],
        "successes": report["successes"],
        "success_rate": report["success_rate"],
        "ci95": report["ci95"],
        "mean_time_to_success_s": round(sum(times) / len(times), 4) if times else None,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_result(report: Mapping[str, Any], submitter: str, out_dir: str | Path) -> Path:
    path = Path(out_dir) / RESULT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result_record(report, submitter), indent=2) + "\n")
    return path


# ---- merging ----------------------------------------------------------------------------------


def read_result(path: str | Path) -> dict[str, Any]:
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LeaderboardError(f"{path}: cannot read a result file: {exc}") from None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise LeaderboardError(
            f"{path}: not a {SCHEMA} result (schema {record.get('schema')!r}); write one with "
            "kizuna eval ... leaderboard=true"
        )
    return record | {"file": str(path)}


def check_comparable(records: Sequence[Mapping[str, Any]]) -> None:
    """Refuse results scored differently from the first one, naming file and key."""
    first = records[0]
    for record in records[1:]:
        for key in COMPARABLE:
            if record.get(key) != first.get(key):
                mine, theirs = _short(record.get(key)), _short(first.get(key))
                raise LeaderboardError(
                    f"{record['file']}: {key} is {mine} but {first['file']} has {theirs}; a "
                    "leaderboard ranks results of one task spec, reality profile, seed list and "
                    "episode count (re-run kizuna eval leaderboard=true with the organisers' "
                    "settings)"
                )


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def rank(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Best first: success rate, then mean time to success (none counts as slowest)."""

    def key(r: Mapping[str, Any]) -> tuple[float, float]:
        t = r.get("mean_time_to_success_s")
        return (-r["success_rate"], t if t is not None else float("inf"))

    return sorted(records, key=key)


def board_html(records: Sequence[Mapping[str, Any]]) -> str:
    """A ranked HTML table of comparable results (``check_comparable`` first)."""
    ranked = rank(records)
    first = ranked[0]
    rows = []
    for i, r in enumerate(ranked, 1):
        t = r.get("mean_time_to_success_s")
        cells = [
            str(i),
            r["submitter"],
            f"{r['success_rate']:.0%} ({r['successes']}/{r['episodes']})",
            f"[{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]",
            f"{t:.2f} s" if t is not None else "—",
            (r.get("checkpoint_sha256") or "—")[:12],
            r["kizuna_version"],
            Path(r["file"]).name,
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = ["#", "submitter", "success", "95 % CI", "mean time to success", "model", "kizuna"]
    reality = first.get("reality") or "nominal"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>kizuna leaderboard: {html.escape(first['task'])}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:60em}"
        "td,th{border:1px solid #ddd;padding:.3em .7em}table{border-collapse:collapse}"
        "</style></head><body>"
        f"<h1>Leaderboard: {html.escape(first['task'])}</h1>"
        f"<p>{first['episodes']} episodes, seeds {first['seeds'][0]}..{first['seeds'][-1]}, "
        f"{html.escape(reality)} simulator, task spec sha256 "
        f"<code>{first['task_spec_sha256'][:16]}</code>. Ranked by success rate, then by mean "
        "time to success.</p><table><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in [*head, "file"])
        + "</tr>"
        + "".join(rows)
        + "</table></body></html>\n"
    )


def merge(paths: Sequence[str | Path], out: str | Path) -> list[Mapping[str, Any]]:
    """Read, check and rank result files; write the HTML table; returns the ranking."""
    if not paths:
        raise LeaderboardError("no result files given")
    records = [read_result(p) for p in paths]
    check_comparable(records)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(board_html(records), encoding="utf-8")
    return rank(records)


# ---- command line -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="leaderboard_command", metavar="{merge}", required=True)
    merge_parser = sub.add_parser("merge", help="rank result files into an HTML table")
    merge_parser.add_argument("files", nargs="+", metavar="RESULT.json")
    merge_parser.add_argument("--out", default="leaderboard.html", help="the HTML table to write")


def main(args: argparse.Namespace) -> int:
    try:
        ranked = merge(args.files, args.out)
    except LeaderboardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for i, r in enumerate(ranked, 1):
        t = r.get("mean_time_to_success_s")
        timing = f", {t:.2f} s to success" if t is not None else ""
        print(f"{i:3d}. {r['submitter']:<24} {r['success_rate']:.0%}{timing}")
    print(f"leaderboard {args.out}")
    return 0
