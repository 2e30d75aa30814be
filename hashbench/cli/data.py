"""The ``hashbench data build`` command (options only; the work is in :func:`hashbench.data.builders.build`).

It lives outside :mod:`hashbench.data` so that importing the CLI does not import torch: the CLI
starts the fork server before torch loads (``tests/test_parallel.py``).
"""

from __future__ import annotations

from pathlib import Path

import click

NAMES = ("flickr25k", "nuswide21", "mscoco")


@click.command("build")
@click.argument("name", type=click.Choice(NAMES))
@click.option("--from", "source_dir", required=True, type=click.Path(path_type=Path),
              help="Folder of the extracted archives, or of a peer's list files.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write (default: data/NAME, the registry's root); list paths are relative to it.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the drawn split (recorded).")
@click.option("--num-query", type=click.IntRange(min=1), default=None, help="Queries (default: the paper's).")
@click.option("--num-train", type=click.IntRange(min=1), default=None,
              help="Training images, drawn from the database (default: the paper's).")
@click.option("--image-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With a peer's list files: the folder their images are in (default: --from).")
@click.option("--images", type=click.Choice(["link", "copy"]), default="link", show_default=True,
              help="OUT/images: a symbolic link to the source images, or copies (hard links where possible).")
@click.option("--skip-missing", is_flag=True, help="Leave out listed images that are missing instead of refusing.")
@click.option("--force", is_flag=True, help="Replace an existing OUT.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def build(name: str, source_dir: Path, out: Path | None, seed: int, num_query: int | None, num_train: int | None,
          image_root: Path | None, images: str, skip_missing: bool, force: bool, quiet: bool) -> None:
    """Write NAME's list files (train.txt, test.txt, database.txt) from its original archives.

    \b
    flickr25k  DIR/mirflickr/im*.jpg + DIR/mirflickr25k_annotations_v080/
    nuswide21  DIR/ImageList/Imagelist.txt + DIR/Groundtruth/AllLabels/ + DIR/Flickr/
    mscoco     DIR/{train2014,val2014}/ + DIR/annotations/instances_{train,val}2014.json
    A folder of a peer's lists (DeepHash-pytorch {train,test,database}.txt, or CgAT/ProS-GAN
    *_img.txt + *_label.txt) is reused with its split; give --image-root for its images.
    """
    from hashbench.data.builders import build as run_build
    from hashbench.progress import default_reporter

    run_build(name, source_dir, out=out, seed=seed, num_query=num_query, num_train=num_train,
              image_root=image_root, images=images, skip_missing=skip_missing, force=force,
              reporter=default_reporter(quiet))
