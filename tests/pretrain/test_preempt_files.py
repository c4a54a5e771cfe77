"""RUN/PREEMPTED is domainlm's own file: cleared through outputs.remove_tree, which needs the run dir's marker."""

import pytest

from domainlm.errors import ConfigError
from domainlm.outputs import prepare_run_dir
from domainlm.pretrain import preempt


def test_clear_removes_the_preemption_record_of_a_run_dir(tmp_path):
    run_dir = prepare_run_dir(tmp_path / "run", command="pretrain", overwrite=False)
    preempt.mark(run_dir, rank=0, step=7)
    assert (run_dir / preempt.PREEMPTED_NAME).read_text().count('"step": 7') == 1
    preempt.clear(run_dir)
    assert not (run_dir / preempt.PREEMPTED_NAME).exists()
    preempt.clear(run_dir)  # nothing to clear: no error


def test_clear_refuses_a_folder_domainlm_did_not_write(tmp_path):
    (tmp_path / preempt.PREEMPTED_NAME).write_text("someone's file")
    with pytest.raises(ConfigError, match="not written by domainlm"):
        preempt.clear(tmp_path)
    assert (tmp_path / preempt.PREEMPTED_NAME).read_text() == "someone's file"
