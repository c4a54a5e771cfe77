"""Tests for domainlm.pretrain."""
