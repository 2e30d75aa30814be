"""Issue 18: ``hashbench plan --grid full --json`` shows the released codes' value of every item
(2, 4, 5a–5e) in every cell, CgAT's in the CgAT grids and SAAT's in the ``saat`` grids."""

import json

from click.testing import CliRunner

from hashbench.cli.main import main


def test_full_plan_shows_each_papers_released_code(tmp_path):
    result = CliRunner().invoke(main, ["plan", "--grid", "full", "--json", "--device", "h100",
                                       "--results-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    cells = json.loads(result.output)["cell_params"]
    seen = set()
    for cell in cells:
        saat = all(g.startswith("saat") for g in cell["grids"])
        assert saat or not any(g.startswith("saat") for g in cell["grids"]), cell["id"]  # no cell in both papers
        params = cell["params"]
        # item 4: the target rule of the split
        assert params["split"].get("targets") == (None if saat else {"min_count": 10, "zero_label": True}), cell["id"]
        # item 5a: the lr decays after the epoch; 5c: HashNet's label bank fills as it visits
        assert params["method"]["lr_decay_at"] == "epoch_end"
        if cell["method"] == "hashnet":
            assert params["method"]["label_bank"] == "visited"
        # items 2 and 5b: the guide codes of each defense
        defense = params["defense"]
        if cell["defense"] == "cgat":
            assert (defense["guide_bank"], defense["one_sided"]) == ("cgat", "zero")
            # CgAT's float MultiStepLR milestones, as its code (every CgAT cell of cgat is a CgAT grid's)
            assert defense["faithful_scheduler"] is True
        elif cell["defense"] == "saat":
            assert (defense["guide_bank"], defense["one_sided"]) == ("saat", "other")
        elif cell["defense"] == "atrdh":
            assert defense["proto_zero_label"] is True
        # item 5d: HAG and SDHA keep the last forward's image; 5e: THA's prototype net
        attack = params["attack"]
        if cell["attack"] in ("hag", "sdha"):
            assert attack["output_image"] == "last_forward"
        elif cell["attack"] == "tha":
            assert (attack["proto_batch_size"], attack["circle_softplus"], attack["proto_zero_label"]) == (
                (128, True, True) if saat else (32, False, True)), cell["id"]
        seen.add((saat, cell["defense"], cell["attack"]))
    assert {(False, "cgat", "tha"), (True, "none", "tha"), (True, "saat", "hag"), (False, "atrdh", "sdha")} <= seen


def test_faithful_milestones_drop_the_decay_that_cgat_never_reaches():
    from hashbench.retrieval.adversarial_training import milestones

    # FLICKR-25K: 5,000 training images in batches of 32 → 157 per epoch, 30 epochs (cgat_spec §1.8)
    assert milestones(30 * 157, faithful=True) == [2355]
    assert milestones(30 * 157, faithful=False) == [2355, 3532]
