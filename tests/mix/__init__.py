from pathlib import Path

DATA_MIXES = Path(__file__).resolve().parents[2] / "data_mixes"
