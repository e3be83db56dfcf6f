"""The two report PDFs, from the committed results, with one command.

    python3 -m report build [--student-id ID] [--name NAME] [--strict]
                            [--make [--data hw2_data] [--unet PATH] [--sd-ckpt PATH]
                                    [--clip DIR] [--evaluator PATH]]
    python3 -m report package-lab6 [--student-id ID] [--name NAME] [--out report]

``build`` writes ``hw2_<ID>.pdf`` at the repository root and ``report/DL_LAB6_<ID>_<NAME>.pdf``.
Every number and figure is read from the tools' JSON and PNG outputs under ``report/results``
and ``report/figures``; a missing one becomes a framed "pending" box naming the command that
makes it, and the build lists them at the end (``--strict``: any pending item is an error).
``--make`` first runs the commands whose inputs are present (Problem 1 always; Problem 2 with
UNet.pt and the noises; Problem 3 with sd-v1-4.ckpt and the CLIP weights; Lab 6 with an
evaluator) and skips the rest. ``package-lab6`` builds, then writes the Lab 6 zip and weights.
"""
import argparse
import os
import time

from report.build import HERE, PLACEHOLDER_ID, PLACEHOLDER_NAME, REPO, build, output_paths
from report.errors import run_cli
from report.make import make


def add_identity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--student-id", default=PLACEHOLDER_ID,
                        help=f"e.g. r13900000 (default: the placeholder {PLACEHOLDER_ID})")
    parser.add_argument("--name", default=PLACEHOLDER_NAME,
                        help=f"as in the Lab 6 file names (default: {PLACEHOLDER_NAME})")
    parser.add_argument("--strict", action="store_true",
                        help="any pending item is an error (the final build)")
    parser.add_argument("--results", default=HERE, help=argparse.SUPPRESS)  # tests: fixtures
    parser.add_argument("--output-dir", default=None, help=argparse.SUPPRESS)  # tests: PDFs


def build_and_report(args) -> None:
    start = time.time()
    pending = build(args.student_id, args.name, report_dir=args.results, strict=args.strict,
                    output_dir=args.output_dir)
    hw2_pdf, lab6_pdf = output_paths(args.student_id, args.name, args.output_dir)
    if pending:
        print(f"pending ({len(pending)}; each is a framed box in its PDF):")
        for item in pending:
            where = os.path.relpath(os.path.join(args.results, item.path))
            print(f"  [{item.report}] {item.title}: {where}\n      make it with: {item.command}")
    print(f"built {os.path.relpath(hw2_pdf)} and {os.path.relpath(lab6_pdf)} in "
          f"{time.time() - start:.1f} s; {len(pending)} pending item(s)"
          + (" (--strict makes them errors)" if pending else ""))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m report",
                                     description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="both PDFs")
    add_identity(build_parser)
    build_parser.add_argument("--make", action="store_true",
                              help="first run the result commands whose inputs are present")
    build_parser.add_argument("--data", default="hw2_data", help="--make: the course data")
    build_parser.add_argument("--unet", default=None,
                              help="--make: P2 UNet.pt (default: DATA/face/UNet.pt or ./UNet.pt)")
    build_parser.add_argument("--sd-ckpt", default=None,
                              help="--make: P3 sd-v1-4.ckpt (default: ./sd-v1-4.ckpt)")
    build_parser.add_argument("--clip", default=None,
                              help="--make: folder of CLIP ViT-B/32 (openai/clip-vit-base-patch32)")
    build_parser.add_argument("--evaluator", default=None,
                              help="--make: Lab 6 evaluator (default: ./checkpoint.pth)")
    package_parser = commands.add_parser("package-lab6", help="the Lab 6 zip and weights")
    add_identity(package_parser)
    package_parser.add_argument("--out", default=HERE, help="folder for the zip and the .pth")
    args = parser.parse_args(argv)
    for key in ("results", "output_dir", "out", "data", "unet", "sd_ckpt", "clip", "evaluator"):
        if getattr(args, key, None):  # paths are the caller's; the commands run at the root
            setattr(args, key, os.path.abspath(getattr(args, key)))
    os.chdir(REPO)
    if args.command == "build":
        if args.make:
            make(args)
        build_and_report(args)
        return
    from report.package import package

    build_and_report(args)
    package(args.student_id, args.name,
            output_paths(args.student_id, args.name, args.output_dir)[1], args.out)


if __name__ == "__main__":
    run_cli(main)
