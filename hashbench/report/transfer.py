"""Black-box transfer tables: per dataset and attack, surrogate models × victim models.

A transfer cell attacks a victim model with the adversarial queries an attack crafted on another
model of the grid, its surrogate (``transfer: true`` grids, :mod:`hashbench.harness.plan`).  One
:class:`~.layouts.Layout` per dataset and attack: rows are surrogates, columns victims, each cell
the victim's MAP (t-MAP for a targeted attack) under the surrogate's queries, mean ± std over
seeds.  The diagonal (surrogate = victim) is the white-box number of the ordinary cell.  Under
the surrogates, each victim's clean MAP and the random-codes MAP of its split; beside them, each
surrogate's own clean MAP.  Bold: the most damaging surrogate of each victim other than itself
(lowest MAP; highest t-MAP for a targeted attack).
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from hashbench.harness.plan import model_id
from hashbench.report.layouts import CHANCE, Column, Layout, Row, RowGroup, TableCell, rounded
from hashbench.report.names import CLEAN, label, model_label, sort_key
from hashbench.report.tables import Stats, mean_std

#: A model of a grid on a dataset: (method, backbone, bits, defense).
ModelKey = tuple[str, str, int, str]
MODEL_COLUMNS = ["method", "backbone", "bits", "defense"]
#: Row header of a transfer table.
ROW_HEADER = "Surrogate ↓ / victim →"


def _key(values: Iterable) -> ModelKey:
    method, backbone, bits, defense = values
    return str(method), str(backbone), int(bits), str(defense)


def _order(key: ModelKey) -> tuple:
    return (sort_key("method", key[0]), sort_key("backbone", key[1]), key[2], sort_key("defense", key[3]))


def _names(frames: Iterable[pd.DataFrame]) -> dict[str, ModelKey]:
    """:func:`~hashbench.harness.plan.model_id` → model, for every model with a row in ``frames``."""
    found: dict[str, ModelKey] = {}
    for frame in frames:
        for values in frame[MODEL_COLUMNS].drop_duplicates().itertuples(index=False):
            key = _key(values)
            found[model_id(*key)] = key
    return found


def _labeller(keys: Iterable[ModelKey]):
    """Model labels as the leaderboard writes them, with backbone and bits where the table mixes them."""
    mixed = len({(k[1], k[2]) for k in keys}) > 1

    def name(key: ModelKey) -> str:
        text = model_label(key[0], key[3], with_method=True)
        return f"{text} · {label('backbone', key[1])} · {key[2]} bits" if mixed else text

    return name


def _stat_cell(stats: Stats, dataset: str, key: ModelKey, attack: str, metric: str,
               setting: dict) -> TableCell:
    stat = stats.get(dataset, *key, attack)
    return TableCell(value=stat.value(metric) if stat else None, std=stat.std(metric) if stat else None,
                n=stat.n if stat else 0, metric=metric, setting=setting)


def transfer_tables(transfer: pd.DataFrame, stats: Stats, white_box: pd.DataFrame) -> list[Layout]:
    """The surrogate × victim tables of a run's transfer rows (``results.load`` columns with a
    ``surrogate``); ``stats`` (of the white-box rows ``white_box``) gives the diagonal, the clean
    and the random-codes references.  Empty without transfer rows."""
    if transfer.empty:
        return []
    names = _names([white_box, transfer])
    layouts: list[Layout] = []
    for dataset in sorted(transfer["dataset"].unique(), key=lambda d: sort_key("dataset", d)):
        of_dataset = transfer[transfer["dataset"] == dataset]
        for attack in sorted(of_dataset["attack"].unique(), key=lambda a: sort_key("attack", a)):
            rows = of_dataset[of_dataset["attack"] == attack]
            layouts.append(_table(len(layouts) + 1, str(dataset), str(attack), rows, stats, names))
    return layouts


def _table(number: int, dataset: str, attack: str, rows: pd.DataFrame, stats: Stats,
           names: dict[str, ModelKey]) -> Layout:
    targeted = bool(rows["targeted"].fillna(False).astype(bool).any())
    metric = "t_map" if targeted else "map"
    shown = "t-MAP" if targeted else "MAP"
    victims = sorted({_key(v) for v in rows[MODEL_COLUMNS].itertuples(index=False)}, key=_order)
    surrogate_ids = sorted(set(rows["surrogate"]), key=lambda s: (0, _order(names[s])) if s in names else (1, s))
    name = _labeller([*victims, *(names[s] for s in surrogate_ids if s in names)])
    by_pair = {(str(s), _key(v)): part for (s, *v), part in rows.groupby(["surrogate", *MODEL_COLUMNS], sort=False)}

    def setting(key: ModelKey, surrogate: str | None, what: str = attack) -> dict:
        return {"dataset": dataset, "method": key[0], "backbone": key[1], "bits": key[2], "defense": key[3],
                "attack": what, "surrogate": surrogate, "metric": metric}

    surrogate_rows = []
    for sid in surrogate_ids:
        skey = names.get(sid)
        cells = []
        for victim in victims:
            if skey == victim:  # white-box: the ordinary cell
                cells.append(_stat_cell(stats, dataset, victim, attack, metric, setting(victim, None)))
                continue
            part = by_pair.get((sid, victim))
            values = pd.to_numeric(part[metric], errors="coerce") * 100.0 if part is not None else []
            mean, std = mean_std(values)
            cells.append(TableCell(value=mean, std=std, n=0 if part is None else int(part[metric].notna().sum()),
                              metric=metric, setting=setting(victim, sid)))
        own = (_stat_cell(stats, dataset, skey, CLEAN, metric, setting(skey, None, CLEAN)) if skey
               else TableCell(value=None, metric=metric))
        surrogate_rows.append(Row(name(skey) if skey else sid, [*cells, own],
                                  note=None if skey else "not a model of this run's white-box cells"))
    _mark_strongest(surrogate_rows, [names.get(s) for s in surrogate_ids], victims, targeted)
    clean = [_stat_cell(stats, dataset, v, CLEAN, metric, setting(v, None, CLEAN)) for v in victims]
    chance = []
    for victim in victims:
        stat = stats.get(dataset, *victim, CLEAN)
        value = stat.chance(metric) if stat else None
        chance.append(TableCell(value=value, n=1 if value is not None else 0, metric=metric,
                           setting={**setting(victim, None), "attack": None}))
    references = [Row(f"Clean (no attack, {shown})", [*clean, TableCell(value=None, metric=metric)], kind="reference",
                      note=f"the victim's {shown} on clean queries")]
    if any(c.value is not None for c in chance):
        references.append(Row(CHANCE, [*chance, TableCell(value=None, metric=metric)], kind="chance",
                              note=f"{shown} of random balanced codes on the same split and cut-off (mean over draws)"))
    columns = [Column(name(v)) for v in victims] + [Column(f"Surrogate clean ({shown})",
                                                           note=f"the surrogate's own {shown} on clean queries")]
    caption = (f"{shown} (%) of the victim (column) under {label('attack', attack)} queries crafted on the surrogate "
               "(row), mean ± std over seeds; the diagonal (surrogate = victim) is the white-box attack. Bold: the "
               f"most damaging other surrogate of each victim ({'highest' if targeted else 'lowest'} {shown}). Below: each victim's clean "
               f"{shown} and the {shown} of random balanced codes on the same split; right: the surrogate's own clean "
               f"{shown}.")
    title = f"{label('dataset', dataset)} · {label('attack', attack)}: surrogate × victim ({shown})"
    return Layout(id=f"transfer-{number}", kind="transfer", title=title, caption=caption, row_header=ROW_HEADER,
                  columns=columns, groups=[RowGroup(None, surrogate_rows), RowGroup(None, references)])


def _mark_strongest(rows: list[Row], keys: list[ModelKey | None], victims: list[ModelKey], targeted: bool) -> None:
    """Bold, per victim column, the strongest attack among the other surrogates: the lowest MAP, or the
    highest t-MAP of a targeted attack (at display precision; a column with fewer than two of them
    has nothing to compare)."""
    for j, victim in enumerate(victims):
        shown = [(rounded(r.cells[j].value), r.cells[j]) for r, k in zip(rows, keys)
                 if k != victim and r.cells[j].value is not None]
        if len(shown) < 2:
            continue
        strongest = max(v for v, _ in shown) if targeted else min(v for v, _ in shown)
        for v, cell in shown:
            cell.best = v == strongest
