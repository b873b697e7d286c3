"""``kizuna ingest BAG... --into DATASET``: rosbag2 bags -> dataset episodes (provenance real).

    kizuna ingest recordings/ --into data/real
    kizuna ingest other_robot_bag --into data/real --instruction "stack the cups" \
        --topic camera.front=/cam0/image_raw --topic command=/arm/commands \
        --joint panda_joint1=shoulder_pan ... --gripper-joint finger_left

Every bag is read in full and checked first (a corrupt, truncated or unmappable bag refuses the
whole run, naming the bag, and the dataset is not touched); then episodes are written one at a
time, each atomically. A folder of recorder output (``episode_NNNNNN/`` bags) is expanded; bags
whose recording was cut off (no ``metadata.yaml``) are skipped there and listed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from kizuna.dataset import DatasetError, DatasetWriter, Provenance
from kizuna.dataset.files import read_json
from kizuna.dataset.format import INFO_PATH, STATE, default_action_names, default_state_names
from kizuna.robot import PANDA
from real_robot.bag import BagError, is_complete, open_bag
from real_robot.ingest import (
    BagPlan,
    IngestConfig,
    IngestError,
    TopicMap,
    episode_frames,
    plan_bag,
)
from real_robot.ros.convert import JointLayout

ROLES = ("joint_states", "action", "command", "teleop", "teleop_active", "episode", "label")
RATE_TOLERANCE = 0.05  # ticks may differ this much from the dataset's fps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "bags", nargs="+", metavar="BAG", help="rosbag2 folders, or folders of them"
    )
    parser.add_argument("--into", required=True, metavar="DATASET", help="dataset folder")
    parser.add_argument(
        "--topic",
        action="append",
        default=[],
        metavar="ROLE=TOPIC",
        help=f"bag topic for a role: {', '.join(ROLES)}, camera.<name> (repeatable)",
    )
    parser.add_argument(
        "--joint",
        action="append",
        default=[],
        metavar="KIZUNA=BAG",
        help="JointState name in the bag of a kizuna joint, e.g. panda_joint1=joint_a1",
    )
    parser.add_argument("--gripper-joint", default=None, help="the bag's gripper joint name")
    parser.add_argument("--gripper-max-m", type=float, default=None, help="its fully-open value")
    parser.add_argument("--rate", type=float, default=None, help="tick at HZ, not on actions")
    parser.add_argument("--fps", type=int, default=None, help="fps of a new dataset")
    parser.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"))
    parser.add_argument("--state-tolerance-ms", type=float, default=100.0)
    parser.add_argument("--image-tolerance-ms", type=float, default=200.0)
    parser.add_argument("--intervention-hold-ms", type=float, default=200.0)
    parser.add_argument("--instruction", default=None, help="for episodes that name none")
    parser.add_argument("--task", default=None, help="task name, for episodes that name none")
    parser.add_argument("--robot-id", default=None, help="for episodes that name none")
    parser.add_argument("--policy-version", default=None)
    parser.add_argument("--calibration-id", default=None)
    parser.add_argument(
        "--label", choices=["success", "failure"], default=None, help="for unlabelled episodes"
    )
    parser.add_argument("--dry-run", action="store_true", help="check and report, write nothing")
    parser.add_argument("--report", default=None, help="also write the report as JSON here")


def config_from_args(args: argparse.Namespace) -> IngestConfig:
    roles: dict[str, Any] = {}
    cameras: dict[str, str] = {}
    for item in args.topic:
        role, _, topic = item.partition("=")
        if not topic.startswith("/") or (role not in ROLES and not role.startswith("camera.")):
            raise IngestError(
                f"--topic {item!r}: expected ROLE=/topic with ROLE one of {list(ROLES)} "
                "or camera.<name>"
            )
        if role.startswith("camera."):
            cameras[role[7:]] = topic
        else:
            roles[role] = topic
    layout = JointLayout.for_robot()
    names = dict(zip(layout.joint_names, layout.joint_names, strict=True))
    for item in args.joint:
        ours, _, theirs = item.partition("=")
        if ours not in names or not theirs:
            raise IngestError(
                f"--joint {item!r}: expected KIZUNA=BAG, KIZUNA one of {list(names)}"
            )
        names[ours] = theirs
    layout = JointLayout(
        tuple(names.values()),
        args.gripper_joint or layout.gripper_joint,
        args.gripper_max_m or layout.gripper_max_m,
    )
    defaults = {
        "instruction": args.instruction,
        "task": args.task,
        "robot_id": args.robot_id,
        "policy_version": args.policy_version,
        "calibration_id": args.calibration_id,
        "success": None if args.label is None else args.label == "success",
    }
    return IngestConfig(
        topics=TopicMap(cameras=cameras, **roles),
        layout=layout,
        rate_hz=args.rate,
        state_tolerance_s=args.state_tolerance_ms / 1e3,
        image_tolerance_s=args.image_tolerance_ms / 1e3,
        intervention_hold_s=args.intervention_hold_ms / 1e3,
        image_size=tuple(args.image_size) if args.image_size else None,
        defaults={k: v for k, v in defaults.items() if v is not None},
    )


def expand_bags(paths: list[str]) -> tuple[list[Path], list[Path]]:
    """(bags, incomplete recordings skipped): a folder of bags stands for its bags."""
    bags, skipped = [], []
    for given in map(Path, paths):
        if not given.exists():
            raise IngestError(f"{given}: no such file or folder")
        if is_complete(given) or any(given.glob("*.mcap")) or any(given.glob("*.db3")):
            bags.append(given)  # named explicitly: an incomplete one is refused, not skipped
            continue
        children = sorted(p for p in given.iterdir() if p.is_dir() and any(p.glob("*.mcap")))
        if not children:
            raise IngestError(f"{given}: neither a rosbag2 bag nor a folder of bags")
        bags += [p for p in children if is_complete(p)]
        skipped += [p for p in children if not is_complete(p)]
    return bags, skipped


def dataset_settings(root: Path) -> dict[str, Any] | None:
    """fps and cameras of an existing dataset, read without opening (so without touching) it."""
    if not (root / INFO_PATH).is_file():
        if root.exists() and any(root.iterdir()):
            raise IngestError(f"{root}: exists but is not a dataset (no {INFO_PATH})")
        return None
    info = read_json(root / INFO_PATH)
    features = info["features"]
    if features[STATE]["names"] != default_state_names():
        raise IngestError(f"{root}: its state is {features[STATE]['names']}, not kizuna's")
    cameras = {
        key.rsplit(".", 1)[-1]: tuple(ft["shape"][:2])
        for key, ft in features.items()
        if ft["dtype"] == "video"
    }
    return {"fps": int(info["fps"]), "cameras": cameras}


def plan_all(bags: list[Path], config: IngestConfig, dataset: dict | None) -> list[BagPlan]:
    """Read and check every bag; ``IngestError`` / ``BagError`` before anything is written."""
    plans: list[BagPlan] = []
    cameras = None
    if dataset is not None:
        topics = config.topics.cameras
        cameras = {c: topics.get(c, f"/camera/{c}/image_raw") for c in dataset["cameras"]}
    for path in bags:
        with open_bag(path) as bag:
            plan = plan_bag(bag, config, cameras)
        cameras = cameras or plan.cameras
        plans.append(plan)
        for k, span in enumerate(plan.spans):
            if not span.meta.get("instruction"):
                raise IngestError(
                    f"{path}: episode {k} names no instruction; pass --instruction TEXT"
                )
    if not cameras:
        raise IngestError(f"{bags[0]}: no camera topics found; map one with --topic camera.NAME=")
    return plans


def check_shapes(plans: list[BagPlan], dataset: dict | None, fps: int | None) -> dict[str, Any]:
    """The dataset's fps and camera sizes, checked against every bag."""
    first = plans[0]
    sizes = dataset["cameras"] if dataset else first.image_sizes
    fps = dataset["fps"] if dataset else fps or round(first.rate_hz or 0)
    for plan in plans:
        for camera, size in plan.image_sizes.items():
            if tuple(size) != tuple(sizes[camera]) or min(size) % 2:
                raise IngestError(
                    f"{plan.path}: camera '{camera}' is {size[0]}x{size[1]}; the dataset needs "
                    f"{sizes[camera][0]}x{sizes[camera][1]} (even sizes): pass --image-size H W"
                )
        if not fps or abs((plan.rate_hz or 0) - fps) > RATE_TOLERANCE * fps:
            raise IngestError(
                f"{plan.path}: control ticks at {plan.rate_hz or 0:.2f} Hz, the dataset is at "
                f"{fps} fps; pass --rate {fps} to tick at the dataset's rate (or --fps)"
            )
    return {"fps": fps, "cameras": sizes}


def provenance(meta: dict[str, Any]) -> Provenance:
    task = str(meta.get("task") or "unknown")
    try:
        from kizuna.task import load_task

        spec_hash = load_task(task).spec_hash()
    except Exception:  # noqa: BLE001 - a real cell's task need not be a kizuna spec
        spec_hash = "unknown"
    return Provenance(
        source="real",
        backend=str(meta.get("backend") or "ros2"),
        task_name=task,
        task_spec_hash=spec_hash,
        robot_id=str(meta.get("robot_id") or "unknown"),
        calibration_id=meta.get("calibration_id") or None,
        policy_version=meta.get("policy_version") or None,
    )


def ingest(
    paths: list[str],
    root: Path,
    config: IngestConfig,
    fps: int | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Check every bag, then write its episodes; returns the report."""
    bags, skipped = expand_bags(paths)
    if not bags:
        raise IngestError(f"no complete bags in {paths} (skipped: {[str(p) for p in skipped]})")
    dataset = dataset_settings(root)
    plans = plan_all(bags, config, dataset)
    settings = check_shapes(plans, dataset, fps)
    if sum(s.ticks for p in plans for s in p.spans) == 0:
        raise IngestError("no frames survive alignment in any bag: see the drop reasons")
    report = build_report(plans, skipped, root)
    if dry_run:
        return report
    writer = (
        DatasetWriter.open(root)
        if dataset
        else DatasetWriter(
            root,
            settings["fps"],
            PANDA.robot_id,
            settings["cameras"],
            default_state_names(),
            default_action_names(),
        )
    )
    with writer:
        for plan, bag_report in zip(plans, report["bags"], strict=True):
            with open_bag(plan.path) as bag:
                for span, episode in zip(plan.spans, bag_report["episodes"], strict=True):
                    if span.ticks == 0:
                        continue
                    frames = episode_frames(bag, plan, span, config)
                    episode["index"] = writer.add_episode(
                        **frames,
                        instruction=str(span.meta["instruction"]),
                        provenance=provenance(span.meta),
                        success=bool(span.success),
                    )
    return report


def build_report(plans: list[BagPlan], skipped: list[Path], root: Path) -> dict[str, Any]:
    bags = []
    for plan in plans:
        episodes = [
            {
                "instruction": s.meta.get("instruction"),
                "label": {True: "success", False: "failure", None: "unlabelled"}[s.success],
                "frames": s.ticks,
                "dropped": dict(s.dropped),
                "unusable_messages": dict(s.unusable),
            }
            for s in plan.spans
        ]
        bags.append(
            {
                "bag": str(plan.path),
                "action_source": plan.action_source,
                "rate_hz": round(plan.rate_hz or 0.0, 3),
                "padded_messages": plan.padded_messages,
                "episodes": episodes,
            }
        )
    return {"dataset": str(root), "bags": bags, "skipped_incomplete": [str(p) for p in skipped]}


def print_report(report: dict[str, Any]) -> None:
    frames = episodes = 0
    for bag in report["bags"]:
        padded = bag["padded_messages"]
        print(
            f"{bag['bag']}: {len(bag['episodes'])} episode(s), ticks on {bag['action_source']} "
            f"at {bag['rate_hz']} Hz"
            + (f", {padded} padded message(s) tolerated" if padded else "")
        )
        for k, ep in enumerate(bag["episodes"]):
            where = f" -> episode {ep['index']}" if "index" in ep else ""
            skipped = "" if ep["frames"] else " (skipped: no frames)"
            print(f"  episode {k}: {ep['frames']} frames, {ep['label']}{where}{skipped}")
            for reason, count in {**ep["dropped"], **ep["unusable_messages"]}.items():
                print(f"    dropped {count}: {reason}")
            frames += ep["frames"]
            episodes += "index" in ep
    for path in report["skipped_incomplete"]:
        print(f"{path}: skipped, incomplete recording (no metadata.yaml)")
    verb = "ingested" if episodes or not frames else "would ingest (dry run)"
    count = (
        episodes
        if episodes or not frames
        else sum(1 for b in report["bags"] for e in b["episodes"] if e["frames"])
    )
    print(f"{verb} {count} episode(s), {frames} frames into {report['dataset']}")


def main(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        report = ingest(args.bags, Path(args.into), config, args.fps, args.dry_run)
    except (IngestError, BagError) as exc:
        print(f"error: {exc}\nnothing was written to {args.into}", file=sys.stderr)
        return 1
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print_report(report)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return 0
