"""`python -m images build|show|tools`: the local images from the shell (`make images-local`)."""

from __future__ import annotations

import argparse
import sys

from images import tools
from images.build import ensure_images
from images.buildah import BuildFailed
from images.recipes import default_recipes
from images.store import known


def cmd_build(only: list[str], force: bool, install: bool) -> int:
    """Build (or reuse) the images; 1 with the build's own output when a build fails."""
    recipes = [r for r in default_recipes() if not only or r.name in only]
    try:
        ensure_images(recipes, install_tools=install, force=force)
    except (BuildFailed, tools.ToolsMissing) as error:
        print(f"images: FAILED: {error}", file=sys.stderr)
        return 1
    return 0


def cmd_show() -> int:
    """Print each known image: reference, root file system, command, user, size."""
    for ref, image in sorted(known().items()):
        print(
            f"{ref}\n  rootfs      {image.rootfs}\n"
            f"  entrypoint  {list(image.entrypoint)}  cmd {list(image.cmd)}\n"
            f"  user        {image.user or '(root)'}  workdir {image.working_dir}\n"
            f"  size        {image.size_bytes / 1e6:.0f} MB  digest {image.digest[:12]}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command."""
    parser = argparse.ArgumentParser(prog="python -m images", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the images, or reuse unchanged ones")
    names = [r.name for r in default_recipes()]
    build.add_argument("--only", action="append", choices=names, default=[], help="one image")
    build.add_argument("--force", action="store_true", help="rebuild even when up to date")
    build.add_argument(
        "--no-install", action="store_true", help="fail instead of apt-get installing tools"
    )
    commands.add_parser("show", help="the images known to the local store")
    commands.add_parser("tools", help="install mmdebstrap and buildah when missing (root)")
    args = parser.parse_args(argv)
    if args.command == "build":
        return cmd_build(args.only, args.force, not args.no_install)
    if args.command == "show":
        return cmd_show()
    try:
        tools.ensure(install=True)
    except tools.ToolsMissing as error:
        print(f"images: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
