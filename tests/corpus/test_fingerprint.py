from domainlm.corpus.fingerprint import corpus_fingerprint
from domainlm.outputs import fingerprint_files


def test_one_fingerprint_for_files_and_dataset_folders(tmp_path):
    one = tmp_path / "a.jsonl"
    one.write_text('{"text": "a"}\n')
    dataset = tmp_path / "ds"
    (dataset / "train").mkdir(parents=True)
    (dataset / "train" / "data-00000.arrow").write_bytes(b"\x00\x01")
    (dataset / "dataset_dict.json").write_text("{}")
    files = [one, dataset / "dataset_dict.json", dataset / "train" / "data-00000.arrow"]
    assert corpus_fingerprint([one, dataset]) == fingerprint_files(files)  # a folder counts as its files
    assert corpus_fingerprint([dataset, one]) == corpus_fingerprint([one, dataset])  # order-free
    before = corpus_fingerprint([one])
    one.write_text('{"text": "b"}\n')
    assert corpus_fingerprint([one]) != before
