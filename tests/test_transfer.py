"""Black-box transfer as a grid axis: the craft and transfer stages, transfer cells and records,
the surrogate column, the report's surrogate × victim tables, and the grid key's validation."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from report_records import RUN, XSS, make_record, write_run

from hashbench.cli.main import main
from hashbench.errors import ConfigError
from hashbench.harness.config import apply_overrides, load_config, load_grid_file
from hashbench.harness.plan import model_id, plan_members
from hashbench.harness.runner import Runner
from hashbench.harness.stages.context import StageContext, load_model, split_of
from hashbench.harness.store import ArtifactStore
from hashbench.models.purifier import PurifiedModel
from hashbench.progress import Reporter
from hashbench.report import build_report, render_html
from hashbench.report.export import to_csv, to_json, to_markdown
from hashbench.report.leaderboard import leaderboards
from hashbench.results import load, read_records
from hashbench.results.schema import CLEAN
from hashbench.retrieval.codes import to_binary

#: two seeds, three models (method × defense), two attacks: enough to count everything twice
PLAN_SET = ["methods=[dpsh,csq]", "defenses=[none,cgat,comdefend]", "attacks=[p2p,mainstay]", "seeds=[0,1]"]
#: the end-to-end run: an undefended, an adversarially trained and a purified model
RUN_SET = ["methods=[dpsh]", "defenses=[none,cgat,comdefend]", "attacks=[center,p2p]", "transfer=true"]


def _plan(config, overrides: list[str]):
    return plan_members(config, "smoke", apply_overrides(config, config.members("smoke"), overrides))


# --- planning --------------------------------------------------------------------------------------

def test_transfer_plans_one_craft_per_surrogate_and_attack_shared_by_its_victims(config) -> None:
    plain = _plan(config, PLAN_SET)
    plan = _plan(config, PLAN_SET + ["transfer=true"])
    models, attacks, seeds = 6, 2, 2
    counts, before = plan.counts(), plain.counts()
    assert "craft" not in before and "transfer" not in before
    assert all(c.surrogate is None for c in plain.cells)
    assert counts["craft"] == seeds * models * attacks
    assert counts["transfer"] == seeds * models * (models - 1) * attacks  # ordered pairs, never a model on itself
    assert counts["evaluate"] == before["evaluate"] + counts["transfer"]
    assert {k: v for k, v in counts.items() if k not in ("craft", "transfer", "evaluate")} == \
        {k: v for k, v in before.items() if k != "evaluate"}
    # the white-box cells are untouched: same ids, same keys
    assert {c.cell_id: c.evaluate.key for c in plan.cells if c.surrogate is None} == \
        {c.cell_id: c.evaluate.key for c in plain.cells}

    transfer_cells = [c for c in plan.cells if c.surrogate is not None]
    assert len(transfer_cells) == counts["transfer"]
    victims_of_craft = Counter(c.stages["craft"].key for c in transfer_cells)
    assert set(victims_of_craft.values()) == {models - 1}  # one craft, every other model of its seed
    white_box = {(c.dataset, model_id(c.method, c.backbone, c.bits, c.defense), c.attack, c.seed): c
                 for c in plan.cells if c.surrogate is None and c.attack != CLEAN}
    for cell in transfer_cells:
        assert cell.surrogate != model_id(cell.method, cell.backbone, cell.bits, cell.defense)
        assert cell.cell_id.endswith(f"-{cell.attack}-from-{cell.surrogate}-s{cell.seed}")
        own = white_box[(cell.dataset, cell.surrogate, cell.attack, cell.seed)].stages["attack"]
        craft = cell.stages["craft"]
        assert craft.spec.to_json() == own.spec.to_json() and {k: s.key for k, s in craft.inputs.items()} == \
            {k: s.key for k, s in own.inputs.items()}  # exactly the surrogate's white-box attack
        victim = white_box[(cell.dataset, model_id(cell.method, cell.backbone, cell.bits, cell.defense),
                            cell.attack, cell.seed)]
        transfer = cell.stages["transfer"]
        assert transfer.inputs["model"].key == victim.stages["attack"].inputs["model"].key
        assert transfer.inputs["split"].key == craft.inputs["split"].key == victim.stages["split"].key
        assert cell.evaluate.inputs["codes"] is transfer
        assert cell.evaluate.inputs["encode"].key == victim.stages["encode"].key
        assert cell.coords["surrogate"] == cell.surrogate
        assert cell.resolved_params()["attack"] == own.spec.attack.params


def test_a_bad_transfer_value_names_the_grid(tmp_path: Path, config) -> None:
    grid = tmp_path / "mine.yaml"
    grid.write_text("profile: smoke\ndatasets: [shapes-tiny]\nmethods: [dpsh]\nbackbones: [smallcnn]\n"
                    "bits: [16]\ndefenses: [none]\ntransfer: maybe\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml: transfer: Input should be a valid boolean"):
        load_grid_file(grid, config)
    result = CliRunner().invoke(main, ["plan", "--grid", str(grid)])
    assert result.exit_code == 2
    assert "transfer" in result.output and "mine.yaml" in result.output

    registry = tmp_path / "registry.yaml"
    text = Path(config.path).read_text().replace("    profile: quick\n    transfer: true", "    profile: quick\n    transfer: 3")
    assert "transfer: 3" in text
    registry.write_text(text)
    with pytest.raises(ConfigError, match=r"grids\.transfer\.transfer: Input should be a valid boolean"):
        load_config(registry)
    with pytest.raises(ConfigError, match=r"--set transfer: Input should be a valid boolean"):
        apply_overrides(config, config.members("smoke"), ["transfer=sometimes"])


# --- a real run ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def transfer_run(tmp_path_factory: pytest.TempPathFactory, config):
    root = tmp_path_factory.mktemp("transfer")
    plan = _plan(config, RUN_SET)
    threads = torch.get_num_threads()
    try:
        summary = Runner(root, "cpu").run(plan, "t")
    finally:
        torch.set_num_threads(threads)
    assert not summary.failed
    store = ArtifactStore(root / "store")
    ctx = StageContext(torch.device("cpu"), Reporter(), lambda stage: store.load(stage.kind, stage.key))
    return root, plan, store, ctx


def _cells(plan, **where):
    return [c for c in plan.cells if all(getattr(c, k) == v for k, v in where.items())]


def test_craft_keeps_the_surrogates_adversarial_queries_within_its_budget(transfer_run) -> None:
    _, plan, store, ctx = transfer_run
    crafts = {c.stages["craft"].key: c.stages["craft"] for c in plan.cells if "craft" in c.stages}
    assert len(crafts) == 3 * 2
    for craft in crafts.values():
        art = store.load("craft", craft.key)
        dataset, split = split_of(ctx, craft.inputs["split"])
        clean = dataset.images(split.query)
        images = art.tensors["images"]
        assert images.dtype == torch.float32 and images.shape == clean.shape
        assert 0 <= float(images.min()) and float(images.max()) <= 1
        epsilon = art.meta["epsilon"]
        linf = (images - clean).flatten(1).abs().amax(1)
        assert float(linf.max()) <= epsilon + 1e-5
        assert float(linf.min()) > 0  # every query moved (smoke: 3 steps of 1/255)
        assert torch.allclose(linf, art.tensors["linf"], atol=1e-6)


def test_same_seed_gives_the_same_images_as_the_white_box_attack(transfer_run) -> None:
    """The surrogate's own codes of its crafted images are its white-box attack's query codes."""
    _, plan, store, ctx = transfer_run
    checked = 0
    for cell in _cells(plan, surrogate=None):
        if cell.attack == CLEAN:
            continue
        attack = cell.stages["attack"]
        craft = next(c.stages["craft"] for c in plan.cells if c.surrogate is not None
                     and c.stages["craft"].inputs["model"].key == attack.inputs["model"].key and c.attack == cell.attack)
        model = load_model(ctx, attack.inputs["model"])
        with torch.no_grad():
            codes = to_binary(model(store.load("craft", craft.key).tensors["images"]))
        assert torch.equal(codes, store.load("attack", attack.key).tensors["query_codes"])
        checked += 1
    assert checked == 3 * 2


def test_transfer_codes_are_the_victims_codes_of_the_crafted_images(transfer_run) -> None:
    _, plan, store, ctx = transfer_run
    purified = 0
    for cell in [c for c in plan.cells if c.surrogate is not None]:
        transfer = cell.stages["transfer"]
        images = store.load("craft", cell.stages["craft"].key).tensors["images"]
        victim = load_model(ctx, transfer.inputs["model"])
        with torch.no_grad():
            if cell.defense == "comdefend":  # the victim's purifier is in front of its hash model
                assert isinstance(victim, PurifiedModel)
                expected = to_binary(victim.hash_model(victim.purifier(images)))
                purified += 1
            else:
                expected = to_binary(victim(images))
        art = store.load("transfer", transfer.key)
        assert torch.equal(art.tensors["query_codes"], expected)
        craft = store.load("craft", cell.stages["craft"].key)
        assert torch.equal(art.tensors["linf"], craft.tensors["linf"])
        assert art.meta["perturbation"] == craft.meta["perturbation"]
    assert purified == 2 * 2  # two surrogates × two attacks against the purified model


def test_records_and_results_carry_the_surrogate(transfer_run) -> None:
    root, plan, _, _ = transfer_run
    records = {r["cell_id"]: r for r in read_records("t", root)}
    assert set(records) == {c.cell_id for c in plan.cells}
    for cell in plan.cells:
        record = records[cell.cell_id]
        assert record["cell"]["surrogate"] == cell.surrogate
        if cell.surrogate is not None:
            assert record["provenance"]["artifact_keys"]["craft"] == cell.stages["craft"].key
            assert record["perturbation"]["linf_max"] <= record["perturbation"]["epsilon"] + 1e-5
            assert record["timing"]["attack_wall_s"] > 0  # the surrogate's crafting
            assert record["params"]["attack"] == cell.stages["craft"].spec.attack.params
    frame = load("t", root)
    transfer = frame[frame["surrogate"].notna()]
    assert len(transfer) == 3 * 2 * 2 and frame["surrogate"].isna().sum() == 3 * 3
    assert set(transfer["surrogate"]) == {f"dpsh-smallcnn-16-{d}" for d in ("none", "cgat", "comdefend")}
    own = transfer.apply(lambda r: model_id(r["method"], r["backbone"], r["bits"], r["defense"]), axis=1)
    assert (own != transfer["surrogate"]).all()


def test_report_has_a_surrogate_by_victim_table_per_attack(transfer_run) -> None:
    root, _, _, _ = transfer_run
    report = build_report("t", root)
    assert [t.title for t in report.transfer] == ["shapes-tiny · P2P: surrogate × victim (t-MAP)",
                                                  "shapes-tiny · Center: surrogate × victim (MAP)"]
    frame = load("t", root)
    for table in report.transfer:
        attack = "p2p" if "P2P" in table.title else "center"
        metric = "t_map" if attack == "p2p" else "map"
        surrogates, references = table.groups
        assert [c.label for c in table.columns] == ["DPSH (undefended)", "DPSH + CgAT", "DPSH + ComDefend",
                                                    f"Surrogate clean ({'t-MAP' if metric == 't_map' else 'MAP'})"]
        assert [r.label for r in surrogates.rows] == [c.label for c in table.columns[:3]]
        for i, row in enumerate(surrogates.rows):
            for j, cell in enumerate(row.cells[:3]):
                victim = table.columns[j].label
                defense = ("none", "cgat", "comdefend")[j]
                rows = frame[(frame["defense"] == defense) & (frame["attack"] == attack)]
                if i == j:  # the diagonal: the white-box cell
                    expected = rows[rows["surrogate"].isna()][metric].iloc[0]
                else:
                    expected = rows[rows["surrogate"] == f"dpsh-smallcnn-16-{('none', 'cgat', 'comdefend')[i]}"][
                        metric].iloc[0]
                assert cell.value == pytest.approx(100 * expected), (row.label, victim)
        clean = [frame[(frame["defense"] == d) & (frame["attack"] == CLEAN)][metric].iloc[0]
                 for d in ("none", "cgat", "comdefend")]
        assert [c.value for c in references.rows[0].cells[:3]] == pytest.approx([100 * v for v in clean])
        assert [row.cells[3].value for row in surrogates.rows] == pytest.approx([100 * v for v in clean])
        chance = references.rows[1]
        assert chance.kind == "chance" and all(c.value is not None for c in chance.cells[:3])
    page = render_html("t", root)
    assert "Transfer (black-box): surrogate × victim" in page and 'href="#transfer"' in page
    markdown = to_markdown(report)
    assert "## Transfer (black-box): surrogate × victim" in markdown
    assert "| Surrogate ↓ / victim → | DPSH (undefended) | DPSH + CgAT | DPSH + ComDefend |" in markdown
    document = json.loads(to_json(report))
    assert [t["kind"] for t in document["transfer"]] == ["transfer", "transfer"]
    assert document["transfer"][0]["groups"][0]["rows"][1]["cells"][0]["setting"]["surrogate"] == \
        "dpsh-smallcnn-16-cgat"
    csv = to_csv(report).splitlines()
    assert "surrogate" in csv[0].split(",") and sum("-from-" in line for line in csv[1:]) == 12


def test_white_box_tables_ignore_transfer_cells(transfer_run, tmp_path: Path) -> None:
    """The leaderboard, paper layouts and All results are those of the same run without its transfer cells."""
    root, _, _, _ = transfer_run
    only = tmp_path / "results"
    shutil.copytree(root / "t", only / "t", ignore=shutil.ignore_patterns("*-from-*"))
    assert len(list((only / "t" / "records").glob("*.json"))) == 9
    with_transfer, without = build_report("t", root), build_report("t", only)
    assert with_transfer.boards == without.boards and with_transfer.boards
    assert with_transfer.layouts == without.layouts
    assert list(with_transfer.stats) == list(without.stats)
    assert without.transfer == []
    assert leaderboards(load("t", root)) == without.boards  # results.load's frame, transfer rows and all


def test_transfer_tables_escape_what_records_say(tmp_path: Path) -> None:
    records = [make_record(defense=d, attack=a, map_=m, cell_id=f"{d}-{a}", chance=0.2)
               for d, a, m in (("none", "clean", 0.9), ("cgat", "clean", 0.85), ("none", "mainstay", 0.3),
                               ("cgat", "mainstay", 0.6))]
    for victim, surrogate, value in (("none", "dpsh-smallcnn-32-cgat", 0.7), ("cgat", "dpsh-smallcnn-32-none", 0.8),
                                     ("none", XSS, 0.75)):
        record = make_record(defense=victim, attack="mainstay", map_=value, cell_id=f"{victim}-from-{len(records)}")
        record["cell"]["surrogate"] = surrogate
        records.append(record)
    write_run(tmp_path, records)
    report = build_report(RUN, tmp_path)
    (table,) = report.transfer
    rows = table.groups[0].rows
    assert [r.label for r in rows] == ["DPSH (undefended)", "DPSH + CgAT", XSS]  # an unknown surrogate: its name, last
    assert [c.value for c in rows[0].cells] == pytest.approx([30.0, 80.0, 90.0])
    assert [c.value for c in rows[1].cells] == pytest.approx([70.0, 60.0, 85.0])
    assert rows[2].cells[0].value == pytest.approx(75.0) and rows[2].cells[1].value is None
    assert rows[0].cells[0].best is False and rows[1].cells[0].best is True  # lowest of the other surrogates
    page = render_html(RUN, results_dir=tmp_path)
    assert page.lower().count("<script") == 1 and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;script&gt;" in to_markdown(report) and XSS not in to_markdown(report)
