"""image/ext4-set-times: the same tree, made and read at different times, gives the same ext4
image.

This is how image/build.sh makes its root file system (fixed UUID and hash seed,
E2FSPROGS_FAKE_TIME, mtimes clamped to SOURCE_DATE_EPOCH), on a small tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "image" / "ext4-set-times"
EPOCH = "1764806400"
UUID = "6b7e3c1a-1f2d-4c3b-9a8e-0d1c2b3a4f5e"


def make_tree(root: Path) -> None:
    (root / "etc" / "nested").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("buttons-tv\n")
    (root / "etc" / "nested" / "big").write_bytes(bytes(range(256)) * 64)
    (root / "link").symlink_to("etc/hostname")
    for path in [root, *root.rglob("*")]:
        os.utime(path, (int(EPOCH), int(EPOCH)), follow_symlinks=False)
    # As a build reads files after it set their times (the manifest): another atime.
    now = time.time()
    os.utime(root / "etc" / "hostname", (now, int(EPOCH)))


def build(tree: Path, image: Path, *, set_ctimes: bool) -> bytes:
    env = {**os.environ, "E2FSPROGS_FAKE_TIME": EPOCH}
    mkfs = ["mkfs.ext4", "-q", "-U", UUID, "-E", f"hash_seed={UUID}", "-d", tree, image, "4M"]
    subprocess.run([str(arg) for arg in mkfs], check=True, env=env, capture_output=True)
    if set_ctimes:
        result = subprocess.run([SCRIPT, image, EPOCH], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert "ctime and atime of" in result.stdout
    check = subprocess.run(["e2fsck", "-fn", image], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    return image.read_bytes()


def two_builds(tmp_path: Path, *, set_ctimes: bool) -> tuple[bytes, bytes]:
    images = []
    for run in ("first", "second"):
        tree = tmp_path / run
        make_tree(tree)
        images.append(build(tree, tmp_path / f"{run}.ext4", set_ctimes=set_ctimes))
        shutil.rmtree(tree)
        # The second tree's files get another ctime (whole seconds in the inode).
        time.sleep(1.1)
    return images[0], images[1]


@pytest.fixture(autouse=True)
def _e2fsprogs() -> None:
    for tool in ("mkfs.ext4", "debugfs", "dumpe2fs", "e2fsck"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing (Debian package: e2fsprogs)")


def test_same_tree_gives_the_same_image(tmp_path: Path) -> None:
    first, second = two_builds(tmp_path, set_ctimes=True)
    assert first == second


def test_without_it_the_images_differ(tmp_path: Path) -> None:
    # Why the build needs the script: mkfs.ext4 -d copies the source files' ctimes and atimes.
    first, second = two_builds(tmp_path, set_ctimes=False)
    assert first != second


def test_every_inode_in_use_gets_the_epoch(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    make_tree(tree)
    image = tmp_path / "root.ext4"
    build(tree, image, set_ctimes=True)
    for path in ("/", "/etc", "/etc/nested/big", "/link", "/lost+found"):
        stat = subprocess.run(
            ["debugfs", "-R", f"stat {path}", image], capture_output=True, text=True
        ).stdout
        for field in ("ctime:", "atime:"):
            line = next(line for line in stat.splitlines() if line.strip().startswith(field))
            assert line.split()[1].split(":")[0] == hex(int(EPOCH)), f"{path}: {line}"
