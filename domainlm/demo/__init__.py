"""The end-to-end demo: shipped samples -> tokenizer, coverage, mix, plan, pretrain, eval -> one report.html."""
