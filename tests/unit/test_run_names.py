"""A training run's name says what it was trained on, whatever the events file's format."""

from __future__ import annotations

import pandas as pd
import pytest

from training.pipeline import data_name

END = pd.Timestamp("2026-06-29")


@pytest.mark.parametrize("name", ["events.parquet", "events.csv", "events.csv.gz",
                                  "events.tsv.gz", "events.csv.zst", "events.pq"])
def test_an_events_file_is_named_by_its_folder_in_every_format(tmp_path, name):
    path = tmp_path / "shop" / name
    assert data_name(path, END) == "shop to 2026-06-29"


@pytest.mark.parametrize("name", ["shop_log.csv.gz", "shop_log.parquet", "Export.CSV.GZ",
                                  "events_2026.csv.gz"])
def test_another_file_keeps_its_real_name(tmp_path, name):
    assert data_name(tmp_path / name, END) == f"{name} to 2026-06-29"
